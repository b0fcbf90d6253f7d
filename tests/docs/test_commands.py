"""Every command the documentation shows in a ``bash`` block and that needs no cluster, GPU or download runs, as
written, in a shell; training commands too, on one local Ray head shared by the module.

The pages' placeholders stand for real things here: ``DIR`` (and ``~/data/cifar10``, the dataset cache) for shards of
the committed CIFAR-10 slice, ``RUN`` and ``NAME`` for a real 2-epoch run of the modern recipe (the suite's shared
``modern_run``), ``demo-20261206-051518`` for a run that ``make demo``'s command trained, ``photos/``, ``new/`` and
``more/`` for folders of the slice's photographs. ``HOME`` is a fresh directory, so ``~/densenet-ray`` and
``~/.cache/densenet-ray`` are the pages' default locations. A training command gets :data:`LIMITS` appended (and
``--limit-epochs 1`` where it would train more than 2 epochs), so it runs as shown for a batch. A command
that needs a cluster, an S3 store, a GPU, a download or data the repository does not ship is named by one of the
rules below with its reason; a new command that no rule names and that fails fails this test.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.cluster_helpers import BIN

REPOSITORY = Path(__file__).resolve().parents[2]
PAGES = [*sorted((REPOSITORY / "docs" / "content").rglob("*.md")), REPOSITORY / "README.md"]

# (pattern, why the test does not run a command that matches it)
NOT_HERE = [
    (r"^(make|pip|ray|export|tensorboard) ", "sets up, or is another tool's command (CI runs make itself)"),
    (r"densenet-ray tune (wide|deep|growth|custom)\b", "a sweep of several trainings (tests/tune runs the wide study)"),
    (r"--gpu\b", "needs a GPU"),
    (r"--parallel|--out s3://bucket/predictions", "runs Ray tasks or actors (the data and inference tests run these)"),
    (r"s3://", "needs an S3 store (the tests run these against a local S3 server)"),
    (r"densenet-ray dashboard( --address .*)?$|dashboard --address", "the live view of a cluster"),
    (r"data build (cifar10|svhn)|ILSVRC|val\.csv|labels\.csv|test\.csv", "downloads, or data the repository lacks"),
    (r"--dataset cifar100|densenet_ray\.imagenet|train imagenet", "CIFAR-100 or ImageNet, data the repository lacks"),
    (r"densenet121\.pth", "torchvision's ImageNet weights, a download"),
    (r"--tracking-uri http", "an MLflow tracking server"),
    (r"tune show", "reads a sweep's results, which only a sweep writes (tests/tune run one)"),
]
TRAINS = r"densenet-ray train |python -m densenet_ray\.(cifar|images)\b"
LIMITS = "--limit-train-batches 1 --limit-eval-batches 1 --loader-workers 0"  # a step, an evaluation batch, in-process
DEMO = "demo-20261206-051518"  # what `make demo` names its runs
DEMO_COMMAND = (
    "densenet-ray train cifar --model densenet_bc100_k12 --depth 40 --epochs 1 --lr-schedule cosine --workers 2"
)


def doc_commands() -> list[tuple[str, str]]:
    """(page, command) for every line of every ``bash`` block, continuation lines joined, comments dropped."""
    found = []
    for page in PAGES:
        for block in re.findall(r"```bash\n(.*?)```", page.read_text(), re.DOTALL):
            for line in block.replace("\\\n", " ").splitlines():
                command = re.sub(r"\s+#\s.*$", "", line).strip()
                if command and not command.startswith("#"):
                    found.append((str(page.relative_to(REPOSITORY)), command))
    return found


def reason_not_run(command: str) -> str | None:
    return next((why for pattern, why in NOT_HERE if re.search(pattern, command)), None)


def limited(command: str) -> str:
    """A training command as the test runs it: a few batches, and one epoch of a longer run."""
    if not re.search(TRAINS, command):
        return command
    epochs = re.search(r"--epochs (\d+)", command)
    return f"{command} {LIMITS}" + ("" if epochs and int(epochs.group(1)) <= 2 else " --limit-epochs 1")


def test_the_pages_show_commands_and_most_need_a_cluster_or_s3_but_some_run_here() -> None:
    commands = doc_commands()
    runnable = [command for _, command in commands if reason_not_run(command) is None]
    assert len(commands) > 60 and len(runnable) >= 12, runnable
    assert sum(bool(re.search(TRAINS, command)) for command in runnable) >= 6, runnable


def test_the_demo_command_is_the_makefiles() -> None:
    """The workspace's demo run is trained by the command ``make demo`` runs."""
    makefile = (REPOSITORY / "Makefile").read_text().replace("\\\n", " ")
    assert re.sub(r"\s+", " ", DEMO_COMMAND.replace("densenet-ray", "$(BIN)/densenet-ray")) in re.sub(
        r"\s+", " ", makefile
    )


@pytest.fixture(scope="module")
def workspace(
    tmp_path_factory: pytest.TempPathFactory, cifar_shards: str, modern_run: dict, module_cluster: dict
) -> dict[str, str]:
    """A home and a working directory laid out as the pages assume, holding real data and real runs."""
    from PIL import Image

    home, work = tmp_path_factory.mktemp("home"), tmp_path_factory.mktemp("work")
    runs = home / "densenet-ray" / "runs"
    shutil.copytree(modern_run["run"], runs / "modern")
    shutil.copytree(cifar_shards, home / ".cache" / "densenet-ray" / "cifar10")
    shutil.copytree(cifar_shards, home / "data" / "cifar10")
    images = _slice_images(work / "slice")
    for folder, count in (("photos", 6), ("new", 3)):
        (work / folder).mkdir()
        for image in images[:count]:
            shutil.copy(image, work / folder / image.name)
    (work / "more").mkdir()
    Image.open(images[-1]).save(work / "more" / "a.png")
    for name in ("cluster.yaml", "jobs"):
        os.symlink(REPOSITORY / name, work / name)
    env = {**os.environ, "HOME": str(home), "PATH": f"{BIN}:{os.environ['PATH']}"}
    env.pop("RAY_ADDRESS", None)
    demo = subprocess.run(
        ["bash", "-c", f"{DEMO_COMMAND} --name {DEMO} {LIMITS}"], cwd=work, env=env, capture_output=True, text=True
    )
    assert demo.returncode == 0, demo.stderr[-3000:]
    # what the pages' S3 commands before `predict photos.safetensors` write, written here from the local run
    export = [f"{BIN}/densenet-ray", "export", str(runs / "modern"), "--out", "photos.safetensors"]
    subprocess.run(export, cwd=work, env=env, check=True, capture_output=True)
    return {"home": str(home), "work": str(work), "run": str(runs / "modern"), "env": env}


def _slice_images(out: Path) -> list[Path]:
    import tarfile

    from tests.conftest import FIXTURE_TAR

    with tarfile.open(FIXTURE_TAR) as archive:
        members = [member for member in archive.getmembers() if member.name.endswith(".jpg")][:10]
        archive.extractall(out, members=members, filter="data")
    return sorted(out.rglob("*.jpg"))


def placed(command: str, workspace: dict[str, str]) -> str:
    """The command with the pages' placeholders replaced by the workspace's real things."""
    run, home = workspace["run"], workspace["home"]
    checkpoint = sorted(path.name for path in Path(run).glob("checkpoint_2*"))[-1]
    command = command.replace("checkpoint_...", checkpoint)
    command = re.sub(r"\bRUN\d?\b", run, command)
    command = re.sub(r"\bNAME\b", Path(run).name, command)
    command = re.sub(r"\bDIR2\b", f"{home}/runs2", command)
    return re.sub(r"\bDIR\b", f"{home}/data/cifar10", command)


@pytest.mark.slow
@pytest.mark.integration
def test_every_command_the_pages_show_that_needs_no_cluster_runs(workspace: dict[str, str]) -> None:
    failures, ran = [], set()
    for page, command in doc_commands():
        shell = limited(placed(command, workspace))
        if reason_not_run(command) is not None or shell in ran:  # several pages show some commands
            continue
        ran.add(shell)
        started = time.monotonic()
        done = subprocess.run(
            ["bash", "-o", "pipefail", "-c", shell],
            cwd=workspace["work"],
            env=workspace["env"],
            capture_output=True,
            text=True,
            timeout=300,
        )
        print(f"{time.monotonic() - started:5.1f} s  {page}: {command}")  # with -s: where the test's time goes
        if done.returncode != 0:
            failures.append(f"{page}: {command}\n  exit {done.returncode}: {(done.stderr or done.stdout)[-600:]}")
    assert not failures, "\n".join(failures)
