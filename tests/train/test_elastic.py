"""Elastic training on one machine: a two-node local cluster loses its worker node mid-epoch, and the run
(``--workers 1-2``) finishes on the head's worker, resuming the interrupted epoch on the new world size."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.cluster_helpers import DEFAULT_TRAIN_POLL, ray_worker_node, recorded_local_head, stop_head
from tests.train.run_helpers import attempt_records, epoch_records, small_run, train_env, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _mid_epoch_records(metrics: Path) -> list[dict]:
    import json

    if not metrics.exists():
        return []
    return [r for r in map(json.loads, metrics.read_text().splitlines()) if r.get("mid_epoch")]


def test_a_lost_node_shrinks_the_group_and_the_run_finishes(cifar_shards, tmp_path) -> None:
    with recorded_local_head(tmp_path, num_cpus=1) as (head, env), ray_worker_node(tmp_path, head.gcs_address) as node:
        args = small_run(cifar_shards, tmp_path, name="elastic", epochs=3, checkpoint_every_steps=2)
        args[args.index("--workers") + 1] = "1-2"  # one worker on each node while both live
        process = subprocess.Popen(
            [sys.executable, "-m", "densenet_ray.cifar", *args, "--max-failures", "3"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            # Ray waits 60 s for the lost node; the default poll paces the epochs (a report a poll) so the node is
            # lost inside epoch 2, not after it.
            env=train_env(RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S="20", **DEFAULT_TRAIN_POLL, **env),
        )
        try:
            metrics = tmp_path / "elastic" / "metrics.jsonl"
            # Epoch 2 (0-indexed 1) has checkpointed mid-way: lose the node now, inside the epoch.
            wait_for(lambda: any(r["epoch"] == 1 for r in _mid_epoch_records(metrics)), process, "epoch 2")
            stop_head(node)
            stdout, stderr = process.communicate(timeout=600)
        finally:
            if process.poll() is None:
                process.kill()
    assert process.returncode == 0, stderr[-3000:]
    text = metrics.read_text()
    epochs, attempts = epoch_records(text), attempt_records(text)
    assert [r["epoch"] for r in epochs] == [1, 2, 3]
    assert [r["world_size"] for r in epochs] == [2, 1, 1]  # epoch 2 finished on the head's worker alone
    assert attempts[0]["world_size"] == 2 and not attempts[0]["resumed"]
    restarted = attempts[-1]
    assert restarted["world_size"] == 1 and restarted["resumed"] and restarted["epoch"] == 1
    assert 0 < restarted["batch"] < 10  # resumed inside epoch 2, on another layout
    assert all(r["test_samples"] == 500 for r in epochs)
    assert epochs[-1]["step"] == 30  # every epoch ran its 10 global batches: none repeated or skipped
    assert f"resumed on 1 worker(s) in epoch 2, after its first {restarted['batch']} batch(es)" in stdout
