"""Which Ray cluster a run uses with no RAY_ADDRESS: a live cluster started on this machine (as ``ray.init()``
finds it), a private instance with ``--local`` or when the recorded cluster is a stopped head's, never another
cluster merely running on the machine, and a one-line refusal when the run cannot fit. Inside a private instance, Ray's
own lookups with no address (Ray Train's placement-group cleaner) find the instance, whatever the machine records.
Real ``ray start --head`` processes, each in its own Ray temp directory (never the machine's /tmp/ray), stopped by
their own pid."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from densenet_ray.data.storage.s3client import checksum_environment
from densenet_ray.ray_session import ClusterNeeds, RayOptions, answers, ray_session
from tests.cluster_helpers import LOOPBACK, Head, recorded_local_head
from tests.train.run_helpers import small_run, stderr_lines, train, train_env

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def live_head(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Head, dict[str, str]]]:
    """A live 2-CPU head recorded in a Ray temp directory of its own: this machine's cluster for a run with its
    ``RAY_TMPDIR``, another cluster merely running for any other."""
    with recorded_local_head(tmp_path_factory.mktemp("live-head"), num_cpus=2) as running:
        yield running


def _tiny_run(shards: str, storage: Path, name: str) -> list[str]:
    """A one-worker run of one training and one evaluation batch of BC-10: which cluster a run uses does not depend
    on its size."""
    args = small_run(shards, storage, name=name, epochs=1, depth=10, limit_train_batches=1, limit_eval_batches=1)
    args[args.index("--workers") + 1] = "1"
    return args


def _alive(address: str) -> bool:
    try:
        with urllib.request.urlopen(f"{address}/api/version", timeout=5):
            return True
    except urllib.error.HTTPError:  # 401 under token auth: the server answers
        return True
    except OSError:
        return False


def test_a_live_local_cluster_is_used_and_left_running(cifar_shards, tmp_path, live_head) -> None:
    head, cluster_env = live_head
    env = train_env(**cluster_env)
    recorded = Path(cluster_env["RAY_TMPDIR"]) / "ray" / "ray_current_cluster"
    assert recorded.read_text().strip() == head.gcs_address
    used = train(*_tiny_run(cifar_shards, tmp_path / "runs", "on-head"), env=env)
    assert used.returncode == 0, used.stderr[-3000:]
    assert f"using the Ray cluster at {head.gcs_address} started on this machine" in used.stdout
    assert head.process.poll() is None and _alive(head.address)  # not shut down by the run

    private = train(*_tiny_run(cifar_shards, tmp_path / "runs", "private"), "--local", env=env)
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


def test_a_stopped_heads_record_and_another_running_cluster_get_a_private_instance(
    cifar_shards, tmp_path, stale_ray_tmpdir, live_head
) -> None:
    head, _ = live_head  # running on this machine, recorded elsewhere: another user's, another tool's
    root, stopped = stale_ray_tmpdir
    assert not answers(stopped)
    completed = train(
        *_tiny_run(cifar_shards, tmp_path, "stale"),
        env=train_env(RAY_TMPDIR=str(root), **LOOPBACK),
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert (
        f"the Ray cluster recorded at {stopped} does not answer; starting a private local instance" in completed.stdout
    )
    assert "using the Ray cluster" not in completed.stdout and head.gcs_address not in completed.stdout
    assert (root / "ray" / "ray_current_cluster").read_text().strip() == stopped  # not ours to touch


def _probe_state_api(actor_id: str) -> tuple[str, str | None]:
    """In a Ray worker: the dashboard Ray's state API finds with no address, and the state it reports for
    ``actor_id``, as Ray Train's placement-group cleaner asks whether its controller still lives."""
    from ray.dashboard.utils import get_address_for_submission_client
    from ray.util.state import get_actor

    found = get_actor(actor_id, timeout=30)
    return get_address_for_submission_client(None), None if found is None else found.state


@pytest.mark.parametrize("machine", ["live", "stopped"])
def test_rays_lookups_inside_a_private_instance_find_the_instance(
    machine, live_head, stale_ray_tmpdir, monkeypatch
) -> None:
    """Before, the state API in the instance's workers looked up the cluster the machine's record names: a live
    one's dashboard does not know the run's controller ("dead": the cleaner removes a live run's placement group);
    a GCS that does not answer there (a stopped head; this live head listens on 127.0.0.1 only) took 40 s to fail
    (the cleaner stops checking, and the placement groups of trials a sweep stops early stay: the sweep waits for
    CPUs forever). Both cases failed here before the fix with that 40 s RpcError."""
    import ray

    monkeypatch.setenv("RAY_TMPDIR", live_head[1]["RAY_TMPDIR"] if machine == "live" else str(stale_ray_tmpdir[0]))
    for name in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS"):
        monkeypatch.delenv(name, raising=False)
    lines: list[str] = []
    with ray_session(ClusterNeeds(cpus=1, dashboard=True), RayOptions(local=True), lines.append) as session:
        assert session.kind == "private" and lines == []
        assert "RAY_ADDRESS" not in os.environ  # set for the instance's processes only
        own = ray._private.worker.global_worker.node.address_info["webui_url"]
        keeper = ray.remote(num_cpus=0)(_Alive).remote()
        ray.get(keeper.ping.remote())
        started = time.monotonic()
        found, state = ray.get(ray.remote(num_cpus=0)(_probe_state_api).remote(keeper._actor_id.hex()))
        assert (found, state) == (f"http://{own}", "ALIVE") and time.monotonic() - started < 30


class _Alive:
    def ping(self) -> bool:
        return True


# What a job's driver and one of its tasks see of the checksum settings, through ray_session on this machine's
# recorded cluster; the user set one of the two variables.
CHECKSUM_PROBE = """
import os, ray
from densenet_ray.ray_session import ClusterNeeds, RayOptions, ray_session
names = ("AWS_REQUEST_CHECKSUM_CALCULATION", "AWS_RESPONSE_CHECKSUM_VALIDATION")
def seen():
    return [os.environ.get(name) for name in names]
with ray_session(ClusterNeeds(cpus=0.1), RayOptions(), lambda line: None) as session:
    print(session.kind, *seen(), *ray.get(ray.remote(num_cpus=0)(seen).remote()))
print(*seen())
"""


CHECKSUM_NAMES = tuple(checksum_environment())


@pytest.mark.integration
def test_every_process_of_a_job_gets_the_s3_checksum_settings_the_user_left_unset(suite_head) -> None:
    """pyarrow's S3 client in Ray's processes is configured by their environment only, and a running cluster's
    workers do not inherit the driver's: the job carries the settings. A value the user set is theirs, not sent."""
    env = {key: value for key, value in train_env().items() if key not in ("RAY_ADDRESS", *CHECKSUM_NAMES)}
    env.update(suite_head, AWS_RESPONSE_CHECKSUM_VALIDATION="when_supported")
    probe = subprocess.run([sys.executable, "-c", CHECKSUM_PROBE], capture_output=True, text=True, env=env, timeout=120)
    assert probe.returncode == 0, probe.stderr[-3000:]
    during, after = probe.stdout.splitlines()[-2:]
    # the driver's own pyarrow clients, then the task on the cluster
    assert during.split() == ["machine", "when_required", "when_supported", "when_required", "None"], probe.stdout
    assert after.split() == ["None", "when_supported"]  # the driver's environment as it was
