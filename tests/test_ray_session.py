"""Which Ray cluster a run uses with no RAY_ADDRESS: a live cluster started on this machine (as ``ray.init()``
finds it), a private instance with ``--local`` or when the recorded cluster is dead, and a one-line refusal when the
run cannot fit. Real ``ray start --head`` processes, each in its own Ray temp directory (never the machine's
/tmp/ray), stopped by their own pid."""

from __future__ import annotations

import shutil
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from densenet_ray.ray_session import answers
from tests.cluster_helpers import LOOPBACK, free_port, recorded_local_head
from tests.train.run_helpers import small_run, stderr_lines, train, train_env

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def ray_tmpdir() -> Iterator[Path]:
    """A short RAY_TMPDIR root (Ray's temp directory is ``<root>/ray``; unix socket paths have a length limit)."""
    root = Path(tempfile.mkdtemp(prefix="rs", dir="/tmp"))
    yield root
    shutil.rmtree(root, ignore_errors=True)


def _alive(address: str) -> bool:
    try:
        with urllib.request.urlopen(f"{address}/api/version", timeout=5):
            return True
    except urllib.error.HTTPError:  # 401 under token auth: the server answers
        return True
    except OSError:
        return False


def test_a_live_local_cluster_is_used_and_left_running(cifar_shards, tmp_path) -> None:
    with recorded_local_head(tmp_path, num_cpus=2) as (head, cluster_env):
        env = train_env(**cluster_env)
        recorded = Path(cluster_env["RAY_TMPDIR"]) / "ray" / "ray_current_cluster"
        assert recorded.read_text().strip() == head.gcs_address
        used = train(
            *small_run(cifar_shards, tmp_path / "runs", name="on-head", epochs=1, limit_train_batches=2), env=env
        )
        assert used.returncode == 0, used.stderr[-3000:]
        assert f"using the Ray cluster at {head.gcs_address} started on this machine" in used.stdout
        assert head.process.poll() is None and _alive(head.address)  # not shut down by the run

        private = train(
            *small_run(cifar_shards, tmp_path / "runs", name="private", epochs=1, limit_train_batches=2),
            "--local",
            env=env,
        )
        assert private.returncode == 0, private.stderr[-3000:]
        assert "using the Ray cluster" not in private.stdout and "densenet-ray run summary" in private.stdout

        too_big = train(*small_run(cifar_shards, tmp_path / "runs", name="big", workers=3, batch_size=48), env=env)
        assert too_big.returncode == 1
        assert stderr_lines(too_big) == [
            f"error: the job needs 3 CPUs (3 workers x 1 CPU) but the Ray cluster at {head.gcs_address} has 2; ask "
            "for fewer, or pass --local for a private instance sized for the job"
        ]
        assert not (tmp_path / "runs" / "big").exists()  # refused before any worker started
        assert head.process.poll() is None and _alive(head.address)


def test_a_dead_recorded_cluster_gets_a_private_instance(cifar_shards, tmp_path, ray_tmpdir) -> None:
    dead = f"127.0.0.1:{free_port()}"  # a head that crashed without `ray stop`: its address file stays
    assert not answers(dead)
    (ray_tmpdir / "ray").mkdir()
    (ray_tmpdir / "ray" / "ray_current_cluster").write_text(dead)
    completed = train(
        *small_run(cifar_shards, tmp_path, name="stale", epochs=1, limit_train_batches=2),
        env=train_env(RAY_TMPDIR=str(ray_tmpdir), **LOOPBACK),
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert f"the Ray cluster recorded at {dead} does not answer; starting a private local instance" in completed.stdout
    assert (ray_tmpdir / "ray" / "ray_current_cluster").read_text() == dead  # not ours to touch
