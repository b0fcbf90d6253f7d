"""``densenet-ray dashboard`` with no address on a machine as a Ray user leaves it: a stale record of a head stopped
without ``ray stop``, another cluster running, and a live cluster recorded as this machine's. Real ``ray start
--head`` processes, each state in a Ray temp directory of its own (``RAY_TMPDIR``, never the machine's /tmp/ray),
stopped by their own pids."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator

import pytest

from densenet_ray.ray_session import answers
from tests.cluster_helpers import Head, recorded_local_head
from tests.dashboard.helpers import run_dashboard, write_run

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def live_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Head, dict[str, str]]]:
    """A live head recorded in a Ray temp directory of its own: this machine's cluster under its ``RAY_TMPDIR``,
    another cluster running under any other."""
    with recorded_local_head(tmp_path_factory.mktemp("live-head"), num_cpus=1) as running:
        yield running


def _dashboard(*args: str, **env: str) -> subprocess.CompletedProcess:
    """The command with no Ray address or settings from the suite but its token; ``env`` sets RAY_TMPDIR."""
    return run_dashboard(*args, keep=("RAY_AUTH_TOKEN_PATH",), **env)


def test_a_stale_record_with_another_cluster_running_is_no_cluster_here(
    stale_ray_tmpdir, live_cluster, tmp_path
) -> None:
    root, stopped = stale_ray_tmpdir
    assert not answers(stopped) and (root / "ray" / "ray_current_cluster").read_text().strip() == stopped
    nothing = _dashboard("--once", RAY_TMPDIR=str(root), HOME=str(tmp_path))
    assert (nothing.returncode, nothing.stdout) == (1, "")
    assert nothing.stderr.count("\n") == 1, nothing.stderr
    assert nothing.stderr.startswith("error: no Ray cluster runs on this machine and no --storage was given")

    write_run(tmp_path / "runs", "bc40", epochs=2, errors=[0.6, 0.5], last_time=time.time() - 60)
    storage = _dashboard("--once", "--storage", str(tmp_path / "runs"), RAY_TMPDIR=str(root))
    assert storage.returncode == 0, storage.stderr
    assert "no Ray cluster on this machine: showing storage only" in storage.stdout and "bc40" in storage.stdout
    assert (root / "ray" / "ray_current_cluster").read_text().strip() == stopped  # not ours to remove


def test_the_live_recorded_cluster_is_shown(live_cluster) -> None:
    head, env = live_cluster
    shown = _dashboard("--once", **env)
    assert shown.returncode == 0, shown.stderr
    assert f"cluster {head.address}" in shown.stdout and "1 node alive" in shown.stdout
