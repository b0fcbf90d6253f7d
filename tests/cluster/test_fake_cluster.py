"""Ray's autoscaler on this machine (cluster/fake-cluster.yaml): a 2-worker run brings up 2 GPU-type fake nodes,
trains on them, and the idle nodes are removed afterwards."""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from tests.cluster_helpers import BIN, free_port, ray_env, ray_head

pytestmark = [pytest.mark.integration, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]


def _fake_nodes(gcs_address: str) -> int:
    status = subprocess.run(
        [str(BIN / "ray"), "status", "--address", gcs_address],
        capture_output=True,
        text=True,
        env=ray_env(RAY_AUTH_MODE="token"),
        timeout=60,
    )
    active = status.stdout.split("Active:", 1)[-1].split("Pending:", 1)[0]
    return sum(int(count) for count in re.findall(r"(\d+) gpu_a10g_sim", active))


def _monitor_log(ray_tmpdir: Path) -> str:
    return (ray_tmpdir / "ray" / "session_latest" / "logs" / "monitor.log").read_text()


def _launched(ray_tmpdir: Path) -> int:
    """How many fake GPU nodes the head's autoscaler launched, from its monitor log."""
    launches = re.findall(r"Launching (\d+) nodes, type gpu_a10g_sim\.", _monitor_log(ray_tmpdir))
    return sum(int(count) for count in launches)


def _terminated(ray_tmpdir: Path) -> int:
    """How many nodes the head's autoscaler has terminated, from its monitor log."""
    return _monitor_log(ray_tmpdir).count("StandardAutoscaler: Terminating the node with id")


def test_fake_gpu_nodes_scale_up_for_a_two_worker_run_and_down_after(cifar_shards, tmp_path) -> None:
    import ray._private.services

    # The committed config assumes the default GCS port (6379); this head gets a free port, so tell the provider.
    gcs_port = free_port()
    config = yaml.safe_load((ROOT / "cluster" / "fake-cluster.yaml").read_text())
    config["provider"]["gcs_address"] = f"{ray._private.services.get_node_ip_address()}:{gcs_port}"
    config["idle_timeout_minutes"] = 0.2  # 12 s instead of the committed 30 s: the same scale-down, sooner
    (tmp_path / "fake-cluster.yaml").write_text(yaml.safe_dump(config))
    extra = (f"--autoscaling-config={tmp_path / 'fake-cluster.yaml'}", '--resources={"TRAIN_DRIVER": 4}')
    # The autoscaler looks at the cluster every second instead of every 5: the same launches and removals, sooner.
    env = {"RAY_FAKE_CLUSTER": "1", "RAY_AUTH_MODE": "token", "AUTOSCALER_UPDATE_INTERVAL_S": "1"}
    with ray_head(tmp_path, num_cpus=0, extra_args=extra, gcs_port=gcs_port, **env) as head:
        assert _fake_nodes(head.gcs_address) == 0
        run = subprocess.run(
            [str(BIN / "python"), "-m", "densenet_ray.cifar", "--data", cifar_shards, "--workers", "2"]
            + ["--worker-resources", '{"fake_gpu": 1}', "--batch-size", "50", "--depth", "10", "--epochs", "1"]
            + ["--limit-train-batches", "1", "--limit-eval-batches", "1", "--loader-workers", "0"]
            + ["--storage", str(tmp_path), "--name", "fake"],
            capture_output=True,
            text=True,
            env=ray_env(RAY_ADDRESS=head.gcs_address, RAY_AUTH_MODE="token"),
            timeout=300,
        )
        assert run.returncode == 0, run.stderr[-3000:]
        # The run's two workers each held a fake GPU, which only the autoscaler's nodes have: it launched them (its
        # log says so; it may queue one more while the first two register). Read from its log, not `ray status`: on
        # a busy machine the nodes can be idle for idle_timeout_minutes, and gone, before `ray status` answers.
        assert _launched(head.ray_tmpdir) >= 2
        record = json.loads((tmp_path / "fake" / "metrics.jsonl").read_text().splitlines()[-1])
        assert record["step"] == 1
        deadline = time.monotonic() + 180
        # Until the autoscaler has terminated the run's two nodes, read from its log (each `ray status` is a Ray
        # client process of 1-2 CPU-seconds); then `ray status` until no fake node is left (one more it launched too).
        while _terminated(head.ray_tmpdir) < 2 and time.monotonic() < deadline:
            time.sleep(0.5)
        while _fake_nodes(head.gcs_address) and time.monotonic() < deadline:
            time.sleep(2)
        assert _fake_nodes(head.gcs_address) == 0  # idle for idle_timeout_minutes: scaled down
