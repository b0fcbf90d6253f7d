"""Run and sweep directories laid out exactly as training and ``densenet-ray tune`` write them, with chosen figures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from densenet_ray.train.config.options import TrainConfig
from densenet_ray.train.config.resolved import resolve

NOW = 1_800_000_000.0  # a fixed clock for every test


def record(epoch: int, epochs: int, time: float, loss: float, test_error: float, best: float) -> dict[str, Any]:
    """One metrics.jsonl line, with the keys the worker reports."""
    return {
        "time": time,
        "epoch": epoch,
        "epochs": epochs,
        "step": 100 * epoch,
        "loss": loss,
        "train_error": test_error - 0.05,
        "test_loss": loss + 0.1,
        "test_error": test_error,
        "best_test_error": best,
        "lr": 0.1,
        "images_per_s": 150.0,
        "steady_images_per_s": 180.5,
        "seconds_per_iteration": 0.35,
        "epoch_seconds": 35.0,
        "peak_memory_mb": 1200.0,
    }


def write_run(
    root: Path,
    name: str,
    epochs: int,
    errors: list[float],
    last_time: float,
    progress: dict[str, Any] | None = None,
    **options: Any,
) -> Path:
    """A run directory with ``len(errors)`` finished epochs (one minute apart, the last at ``last_time``)."""
    directory = root / name
    directory.mkdir(parents=True)
    config = resolve(TrainConfig(depth=16, epochs=epochs, storage=str(root), name=name, **options)).to_document()
    (directory / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    lines = []
    for index, error in enumerate(errors):
        stamp = last_time - 60.0 * (len(errors) - 1 - index)
        lines.append(record(index + 1, epochs, stamp, 2.0 - 0.3 * index, error, min(errors[: index + 1])))
    if lines:
        (directory / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    if progress is not None:
        (directory / "progress.json").write_text(json.dumps(progress))
    return directory


def write_sweep(root: Path, name: str, searched: list[str], grid: list[dict[str, Any]]) -> Path:
    """A sweep directory with its ``sweep.json`` (trials are added with :func:`write_run` under ``trials/``)."""
    directory = root / name
    (directory / "trials").mkdir(parents=True)
    options = resolve(TrainConfig(depth=16, epochs=2, storage=str(directory / "trials"))).flat()
    description = {
        "kind": "custom",
        "baseline": None,
        "searched": searched,
        "scheduler": "asha",
        "grid": grid,
        "space": {},
        "options": options,
    }
    (directory / "sweep.json").write_text(json.dumps(description))
    return directory


def write_tune_state(directory: Path, trials: dict[str, tuple[str, dict[str, Any]]]) -> None:
    """Tune's ``experiment_state-*.json``: each trial entry is a JSON string with its id, status and config."""
    entries = [
        [json.dumps({"trial_id": trial_id, "status": status, "config": {"base": {}, "trial": trial}}), "{}"]
        for trial_id, (status, trial) in trials.items()
    ]
    (directory / "experiment_state-2026-11-26_00-00-00.json").write_text(json.dumps({"trial_data": entries}))


def run_dashboard(*args: str, keep: tuple[str, ...] = (), **env: str) -> subprocess.CompletedProcess:
    """``python -m densenet_ray dashboard ARGS`` 200 columns wide, with none of the suite's Ray settings but those
    named in ``keep``; ``env`` set on top."""
    environment = {key: value for key, value in os.environ.items() if not key.startswith("RAY_") or key in keep}
    environment.update(COLUMNS="200", **env)
    return subprocess.run(
        [sys.executable, "-m", "densenet_ray", "dashboard", *args],
        capture_output=True,
        text=True,
        env=environment,
        timeout=120,
    )
