"""Saved runs read back typed: every form of ``config.yaml`` (today's groups, the groups of the committed run from
9912cdd, the flat options of runs before groups) becomes the resolved configuration, a run directory its
configuration and typed records; and an option renamed in its declaration is a type error where the dashboard,
the sweeps, the API and the trained-model loader read it."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from densenet_ray.dashboard.runs import StorageScanner, run_row
from densenet_ray.errors import UserError
from densenet_ray.train.config.options import TrainConfig
from densenet_ray.train.config.resolved import resolve
from densenet_ray.train.run.directory import EpochRecord, RunDirectory, read_config_document

ROOT = Path(__file__).resolve().parents[3]
SAVED = ROOT / "tests" / "fixtures" / "runs"
NAME = "run-from-9912cdd"


def test_every_saved_form_reads_back_as_the_resolved_configuration(tmp_path: Path) -> None:
    config = resolve(TrainConfig(depth=10, epochs=2, storage=str(tmp_path), name="now"), check_weights=False)
    assert read_config_document(config.to_document()) == config
    old = read_config_document(yaml.safe_load((SAVED / NAME / "config.yaml").read_text()))
    assert old is not None
    assert (old.options.model, old.options.depth, old.options.epochs, old.options.precision) == (
        "densenet_bc100_k12",
        10,
        1,
        "fp32",
    )
    assert (old.num_classes, old.run_url) == (10, "/tmp/fx/runs/run-from-9912cdd")
    # as TrainConfig.to_dict() wrote it before config.yaml had groups: --amp, unset options as null
    flat = {"dataset": "svhn", "model": "densenet40_k12", "epochs": 3, "amp": "off", "storage": "/r", "name": "n"}
    before_groups = read_config_document({**flat, "channels_last": None, "lr": 0.05})
    assert before_groups is not None
    assert (before_groups.options.precision, before_groups.options.lr, before_groups.options.storage) == (
        "fp32",
        0.05,
        "/r",
    )
    assert (before_groups.options.channels_last, before_groups.num_classes) == (None, 10)  # svhn's classes
    assert read_config_document({"name": "not a training run"}) is None and read_config_document([1]) is None


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"model": "densenet40_k12", "epochs": 3, "learning_rate": 0.1}, "unknown option 'learning_rate'"),
        ({"model": "densenet40_k12", "epochs": "3"}, "epochs: '3' in TrainConfig(...) must be an integer"),
        ({"model": None, "epochs": 3}, "its model or epochs are not set"),
    ],
)
def test_a_saved_configuration_without_its_shape_is_one_line(document: dict, message: str) -> None:
    with pytest.raises(UserError) as info:
        read_config_document(document)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_the_run_from_9912cdd_reads_back_typed_and_shows_on_the_dashboard() -> None:
    saved = RunDirectory(str(SAVED / NAME)).read()
    assert saved is not None and saved.config.options.depth == 10
    assert [(type(record), record.epoch, record.test_error) for record in saved.epochs] == [(EpochRecord, 1, 0.98)]
    scanner = StorageScanner(str(SAVED))
    row = run_row(scanner.read_run(NAME, scanner.layout().sizes), NAME)
    assert (row.model, row.epoch, row.epochs, row.status, row.test_error) == ("BC L=10 k=12", 1, 1, "FINISHED", 0.98)


# Options renamed in a scratch copy of their declarations, and where each is read (module, what is read there).
RENAMED = {"optim.py": "epochs", "data.py": "eval_split", "model.py": "growth_rate"}
READERS = [
    ("densenet_ray/dashboard/runs.py", "epochs"),
    ("densenet_ray/dashboard/poll.py", "epochs"),
    ("densenet_ray/dashboard/sweep_state.py", "epochs"),
    ("densenet_ray/tune/report.py", "epochs"),
    ("densenet_ray/tune/sweeps.py", "growth_rate"),
    ("densenet_ray/api/evaluation.py", "eval_split"),
    ("densenet_ray/train/checkpoint/trained.py", "eval_split"),
]
GROUPS = ROOT / "densenet_ray" / "train" / "config" / "groups"


def _checked() -> list[str]:
    """The modules mypy checks: the readers and the declarations their types come from. Everything else they import
    is skipped (its names are Any), which keeps the check to seconds."""
    modules = {path.removesuffix(".py").replace("/", ".") for path, _ in READERS}
    modules |= {f"densenet_ray.train.config.{name}" for name in ("options", "resolved", "declaration", "choices")}
    modules |= {f"densenet_ray.train.config.groups.{path.stem}" for path in GROUPS.glob("[!_]*.py")}
    return sorted({*modules, "densenet_ray.train.run.directory", "densenet_ray.train.run.record_shapes"})


def test_a_renamed_option_is_a_type_error_where_it_is_read(tmp_path: Path) -> None:
    shadows = []
    for file, option in RENAMED.items():
        declarations = GROUPS / file
        renamed, count = re.subn(rf"^    {option}:", f"    {option}_renamed:", declarations.read_text(), flags=re.M)
        assert count == 1, f"{option} is not declared in {file}"
        (tmp_path / file).write_text(renamed)
        shadows += ["--shadow-file", str(declarations.relative_to(ROOT)), str(tmp_path / file)]
    modules = [argument for module in _checked() for argument in ("-m", module)]
    command = [sys.executable, "-m", "mypy", "--cache-dir", str(tmp_path / "cache"), "--follow-imports", "skip"]
    checked = subprocess.run(
        [*command, *shadows, *modules], cwd=ROOT, capture_output=True, text=True, timeout=300, check=False
    )
    errors = [line for line in checked.stdout.splitlines() if ": error:" in line]
    for path, option in READERS:
        assert any(line.startswith(f"{path}:") and f'has no attribute "{option}"' in line for line in errors), (
            f"no type error where {path} reads {option}:\n" + "\n".join(errors)
        )
