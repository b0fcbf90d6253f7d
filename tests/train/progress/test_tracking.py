"""The modern recipe end to end on 2 local Ray workers (the suite's ``modern_run``), and what the run leaves for
tracking tools: TensorBoard event files read back with TensorBoard's own reader, an MLflow run read back with
``mlflow.get_run`` (a real local database), and W&B's offline run files."""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys

import pytest

from tests.train.run_helpers import epoch_records


def _scalars(folder: str, tag: str) -> list[tuple[int, float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(folder)
    events.Reload()
    return [(event.step, event.value) for event in events.Scalars(tag)]


def _stats_after(losses: list[float]):
    import torch

    from densenet_ray.train.engine import TrainStats

    stats = TrainStats()
    for loss in losses:  # one sample a step
        stats.add(torch.tensor(loss), torch.zeros(1, 10), torch.zeros(1, dtype=torch.long))
    return stats


def test_a_resumed_attempt_hides_the_lost_attempts_steps_after_its_checkpoint(tmp_path) -> None:
    from densenet_ray.train.config.options import TrainConfig
    from densenet_ray.train.config.resolved import resolve
    from densenet_ray.train.progress.tracking import Tracking
    from densenet_ray.train.run.record_shapes import EpochRecord

    config = resolve(TrainConfig(storage=str(tmp_path), name="run", log_every_steps=1))
    first = Tracking(config, 0)
    losses = [float(step) for step in range(1, 9)]
    for step in range(1, 9):  # the lost attempt: checkpointed at step 4 (the epoch's end), died after step 8
        first.step(step, _stats_after(losses[:step]), lr=0.1)
        if step == 4:
            first.epoch(EpochRecord(epoch=1, epochs=2, step=step, loss=4.0, test_error=0.5), step)
    first.close(failed=True)
    second = Tracking(config, 4)  # resumed from the step-4 checkpoint
    for step in range(5, 7):
        second.step(step, _stats_after([10.0 * s for s in range(5, step + 1)]), lr=0.01)
    second.close()
    folder = str(tmp_path / "run" / "tensorboard")
    assert _scalars(folder, "epoch/test_error") == [(4, 0.5)]  # the checkpoint's own epoch record stays
    assert [step for step, _ in _scalars(folder, "train/loss")] == [1, 2, 3, 4, 5, 6]
    assert [value for _, value in _scalars(folder, "train/loss")][3:] == [4.0, 50.0, 60.0]


@pytest.mark.integration
@pytest.mark.slow
def test_the_modern_recipe_trains_and_logs_to_tensorboard_mlflow_and_wandb(modern_run, cifar_shards) -> None:
    import mlflow

    run, completed, uri = modern_run["run"], modern_run["completed"], modern_run["uri"]
    records = epoch_records((run / "metrics.jsonl").read_text())
    assert [r["epoch"] for r in records] == [1, 2]
    assert all(0 <= r["ema_test_error"] <= 1 and 0 <= r["test_error"] <= 1 for r in records)
    assert "EMA test error" in completed.stdout and ", EMA " in completed.stdout

    folder = str(run / "tensorboard")
    assert _scalars(folder, "epoch/test_error") == [
        (r["step"], pytest.approx(r["test_error"], abs=1e-6)) for r in records
    ]
    assert [value for _, value in _scalars(folder, "epoch/ema_test_error")] == [
        pytest.approx(r["ema_test_error"], abs=1e-6) for r in records
    ]
    rates = _scalars(folder, "train/lr")
    assert [step for step, _ in rates] == [2, 4, 6, 8]  # every 2 steps
    # Warmup over the first epoch's 4 steps; a 2-epoch step schedule divides at 50 % and 75 % of its 8 steps.
    assert [rate for _, rate in rates] == pytest.approx([0.1 * 2 / 4, 0.1, 0.01, 0.001])

    # A client of its own: mlflow.set_tracking_uri would set MLFLOW_TRACKING_URI for the rest of this process.
    client = mlflow.MlflowClient(tracking_uri=uri)
    (found,) = client.search_runs([client.get_experiment_by_name("densenet-ray").experiment_id])
    logged = client.get_run(found.info.run_id)
    assert logged.data.metrics["epoch_test_error"] == pytest.approx(records[-1]["test_error"])
    assert logged.data.metrics["epoch_ema_test_error"] == pytest.approx(records[-1]["ema_test_error"])
    assert logged.data.params["label_smoothing"] == "0.1" and logged.info.run_name == "modern"

    offline = glob.glob(str(run / "wandb" / "offline-run-*" / "run-*.wandb"))
    assert len(offline) == 1 and os.path.getsize(offline[0]) > 0

    # `densenet-ray evaluate --weights ema` scores the checkpoint's moving average as the run did.
    checkpoint = max(path for path in glob.glob(str(run / "checkpoint_*")) if os.path.isdir(path))
    command = [
        sys.executable,
        "-m",
        "densenet_ray",
        "evaluate",
        checkpoint,
        "--data",
        cifar_shards,
        "--weights",
        "ema",
        "--json",
    ]
    evaluated = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
    assert abs(json.loads(evaluated.stdout)["top1_error"] - records[-1]["ema_test_error"]) <= 1 / 500
