"""Suite-wide fixtures: RNG isolation, GPU auto-skip, a Ray token and a Ray temp directory of the suite's own, the
committed CIFAR-10 slice, S3 on 127.0.0.1, and one tiny run of the modern recipe.

S3 goes through a real HTTP server (moto's ThreadedMotoServer, port 0), never the in-process mock, because Ray
workers and DataLoader workers are other processes.
"""

from __future__ import annotations

import os
import random
import secrets
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

# Two test processes share the machine's cores (`make test` runs `pytest -n 2`) and most tests start more (Ray workers,
# CLI runs). PyTorch's intra-op threads, one a core by default, spin while they wait for a core another process holds:
# on a loaded 2-core machine a DenseNet-BC (L=40) step took 5.8x the CPU time with 2 threads that it took with 1. One
# thread a process, as Ray gives its 1-CPU workers; the tests' subprocesses inherit it. An explicit setting is kept.
os.environ.setdefault("OMP_NUM_THREADS", "1")
torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

# Session fixtures whose tests all run in one xdist process (`make test` runs pytest-xdist, `--dist loadgroup`), so
# each is built once per run: a training run, not worth doing twice.
SHARED_ACROSS_MODULES = ("modern_run",)
# Module fixtures that cost nothing more in another process: the Ray head behind module_cluster is one a process.
ONE_A_PROCESS = ("module_cluster",)


def _module_fixtures(item: pytest.Item) -> set[str]:
    """The module-scoped fixtures ``item`` uses, but those each process has once anyway."""
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return set()
    scoped = {name for name, defs in info.name2fixturedefs.items() if defs and defs[-1].scope == "module"}
    return scoped - set(ONE_A_PROCESS)


def _xdist_groups(items: list[pytest.Item]) -> dict[str, str | None]:
    """Each module's xdist group: the first shared session fixture any of its tests uses; else the module itself
    where a test uses a module fixture (made once, in one process); else None, each test on its own."""
    groups: dict[str, str | None] = {}
    for item in items:
        module = item.nodeid.split("::")[0]
        shared = [name for name in SHARED_ACROSS_MODULES if name in getattr(item, "fixturenames", ())]
        if shared:
            groups[module] = shared[0]
        elif groups.get(module) in SHARED_ACROSS_MODULES:
            continue
        elif _module_fixtures(item):
            groups[module] = module
        else:
            groups.setdefault(module, None)
    return groups


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook, which reads the groups into the tests' ids
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip ``gpu`` tests without a CUDA device; group tests for xdist (:func:`_xdist_groups`), the integration
    tests first, so the two processes' long tests start early and the quick ones even out their ends (xdist hands
    tests out in this order with --no-loadscope-reorder)."""
    groups = _xdist_groups(items)
    for item in items:
        group = groups[item.nodeid.split("::")[0]]
        if group is not None:
            item.add_marker(pytest.mark.xdist_group(group))
    slow = {
        groups[item.nodeid.split("::")[0]] or item.nodeid for item in items if item.get_closest_marker("integration")
    }
    items.sort(key=lambda item: (groups[item.nodeid.split("::")[0]] or item.nodeid) not in slow)
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if item.get_closest_marker("gpu") is not None:  # the marker, not a parameter that happens to be named gpu
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def restore_rng_state():
    """Save the torch, CUDA and Python RNG states before each test and restore them after it."""
    python_state = random.getstate()
    torch_state = torch.random.get_rng_state()
    cuda_states = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    try:
        import numpy

        numpy_state = numpy.random.get_state()
    except ImportError:  # numpy is optional for the suite
        numpy = None
        numpy_state = None
    yield
    random.setstate(python_state)
    torch.random.set_rng_state(torch_state)
    if cuda_states is not None:
        torch.cuda.set_rng_state_all(cuda_states)
    if numpy is not None:
        numpy.random.set_state(numpy_state)


@pytest.fixture(scope="session", autouse=True)
def ray_auth_token(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One token file for every Ray head and client the suite starts (``RAY_AUTH_TOKEN_PATH``, inherited by every
    subprocess), so no test reads or writes this machine's ``~/.ray/auth_token``: a fresh machine has none, and a
    ``ray start --head`` with token auth refuses to start without one. Ray's own tokens are 32 random bytes in hex."""
    path = tmp_path_factory.mktemp("ray-auth") / "auth_token"
    path.write_text(secrets.token_hex(32))
    path.chmod(0o600)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RAY_AUTH_TOKEN_PATH", str(path))
        yield path


@pytest.fixture(scope="session", autouse=True)
def ray_tmpdir_of_the_suite() -> Iterator[Path]:
    """A Ray temp directory of the suite's own (``RAY_TMPDIR``, inherited by every subprocess), so no test reads
    this machine's ``/tmp/ray``: where Ray records the last ``ray start`` (``ray_current_cluster``), a machine that
    ever ran Ray may hold a stale record of a stopped head or a live cluster of someone else's, and a run with no
    address would report or use it. Tests of those states build them in a directory of their own; a module's
    recorded head (``module_cluster``) sets its own for the module. Short, because Ray's unix sockets live under
    it and their paths have a length limit."""
    import shutil
    import tempfile

    root = Path(tempfile.mkdtemp(prefix="rt", dir="/tmp"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RAY_TMPDIR", str(root))
        yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session", autouse=True)
def suite_train_settings() -> Iterator[None]:
    """Ray Train's controller polls every 0.5 s instead of 2 s, and starts no preemption watcher, in every run, head
    and job the suite starts (tests.cluster_helpers.SUITE_TRAIN_SETTINGS says why); set before any Ray head, which
    passes them to its workers."""
    from tests.cluster_helpers import SUITE_TRAIN_SETTINGS

    with pytest.MonkeyPatch.context() as patch:
        for name, value in SUITE_TRAIN_SETTINGS.items():
            patch.setenv(name, value)
        yield


FIXTURE_TAR = Path(__file__).resolve().parent / "fixtures" / "cifar10-train-slice.tar"


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    """A moto S3 server for the whole session; yields its endpoint URL."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, moto_server: str) -> str:
    """Dummy credentials and the moto endpoint in the environment (inherited by subprocesses); returns the URL."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing-key-id")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing-secret-key")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", moto_server)
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    return moto_server


@pytest.fixture
def bucket(aws_env: str) -> str:
    """A fresh, empty bucket; returns its name."""
    from densenet_ray.data.storage import s3_client

    name = f"test-{uuid.uuid4().hex[:12]}"
    s3_client().create_bucket(Bucket=name)
    return name


@pytest.fixture(scope="session")
def fixture_tar() -> str:
    return str(FIXTURE_TAR)


@pytest.fixture(scope="session")
def cifar_shards(tmp_path_factory: pytest.TempPathFactory, fixture_tar: str) -> str:
    """Shards of the committed slice: 'train' (500 real CIFAR-10 JPEGs) and 'test' (the same images), 50 a shard."""
    from densenet_ray.data.building.build import build_dataset
    from densenet_ray.data.building.sources import imagefolder_source

    out = tmp_path_factory.mktemp("cifar-shards")
    build_dataset(imagefolder_source(fixture_tar), str(out), shard_size=50)
    build_dataset(imagefolder_source(fixture_tar, split="test"), str(out), shard_size=50)
    return str(out)


@pytest.fixture(scope="session")
def suite_head(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """One live 2-CPU local cluster for every module of training runs (per xdist worker), recorded as this machine's
    in a Ray temp directory of its own. The head starts once (6-11 s on 2 cores, measured) and is stopped by its pid
    at the session's end; yields the environment under which a run with no RAY_ADDRESS uses it. Only
    :func:`module_cluster` sets that environment, so the other tests never see this head as the machine's."""
    from tests.cluster_helpers import recorded_local_head

    with recorded_local_head(tmp_path_factory.mktemp("suite-head"), num_cpus=2) as (_, env):
        yield env


@pytest.fixture(scope="module")
def module_cluster(suite_head: dict[str, str]) -> Iterator[dict[str, str]]:
    """The suite's live local cluster (:func:`suite_head`) recorded as this machine's for a module of training runs:
    every run with no RAY_ADDRESS uses it, as it would a cluster started on this machine, and skips starting a
    private instance (8-12 s a run on 2 cores, measured). The environment is set for the module only."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in suite_head.items():
            patch.setenv(name, value)
        yield suite_head


@pytest.fixture(scope="session")
def stale_ray_tmpdir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    """A ``RAY_TMPDIR`` root as a machine is left where ``ray start --head`` ran and its head was stopped without
    ``ray stop``: ``<root>/ray/ray_current_cluster`` names a real head's GCS that no longer answers. Yields the root
    and that address; tests read it and must leave it as it is."""
    import shutil
    import tempfile

    from tests.cluster_helpers import leave_stale_record

    root = Path(tempfile.mkdtemp(prefix="rs", dir="/tmp"))  # short: unix socket paths have a length limit
    try:
        yield root, leave_stale_record(root, tmp_path_factory.mktemp("stale-head") / "ray-start.log")
    finally:
        shutil.rmtree(root, ignore_errors=True)


MODERN_RECIPE = ["--label-smoothing", "0.1", "--mixup", "0.2", "--cutmix", "1.0", "--randaugment", "--ema", "0.9998"]
MODERN_RECIPE += ["--warmup", "1"]


@pytest.fixture(scope="session")
def modern_run(tmp_path_factory: pytest.TempPathFactory, cifar_shards: str) -> Iterator[dict[str, Any]]:
    """One tiny 2-worker run of the modern recipe (the issue's acceptance flags), logging to TensorBoard, W&B offline
    and an MLflow server that asks for the password in ``MLFLOW_TRACKING_URI`` (tests.train.mlflow_server, its
    database in the storage root); shared by the tracking, export and secrets tests. Its environment holds
    distinctive secrets (that password, an AWS secret key, a W&B key) that must end up in no file; its private Ray
    instance has a temp directory of its own, so its logs can be read. Yields the run directory, the command's
    result, the MLflow database's URI, the secrets and that Ray temp directory."""
    import shutil
    import tempfile

    from tests.train.mlflow_server import mlflow_server
    from tests.train.run_helpers import small_run, train, train_env

    storage = tmp_path_factory.mktemp("modern-runs")
    uri = f"sqlite:///{storage}/mlflow.db"
    args = small_run(cifar_shards, storage, name="modern", epochs=2, limit_train_batches=4, log_every_steps=2)
    password = f"mlflow-password-{secrets.token_hex(8)}"
    hidden = {"AWS_SECRET_ACCESS_KEY": f"aws-secret-{secrets.token_hex(8)}", "WANDB_API_KEY": secrets.token_hex(20)}
    ray_tmpdir = Path(tempfile.mkdtemp(prefix="rm", dir="/tmp"))  # short: Ray's unix socket paths have a limit
    try:
        with mlflow_server(uri, str(storage / "mlflow-artifacts"), "tracker", password) as server:
            # --local: a private instance whose workers inherit this environment (W&B offline needs no account).
            env = train_env(WANDB_MODE="offline", WANDB_SILENT="true", RAY_TMPDIR=str(ray_tmpdir), **hidden)
            env["MLFLOW_TRACKING_URI"] = server
            completed = train(*args, *MODERN_RECIPE, "--log", "mlflow,wandb", "--local", env=env)
        assert completed.returncode == 0, completed.stderr[-3000:]
        secret_values = [password, *hidden.values()]
        yield {
            "run": storage / "modern",
            "completed": completed,
            "uri": uri,
            "secrets": secret_values,
            "ray_tmpdir": ray_tmpdir,
        }
    finally:
        shutil.rmtree(ray_tmpdir, ignore_errors=True)
