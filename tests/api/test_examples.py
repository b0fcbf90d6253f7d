"""The scripts in ``examples/`` run as a user runs them, on shards of the committed CIFAR-10 slice and a local Ray
instance shared by the module: training, loading the best checkpoint, predicting and evaluating from Python
(``dr.fit``, ``dr.load(...).predict``, ``dr.evaluate``), and a custom sweep (``dr.sweep``)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.usefixtures("module_cluster")]

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
CIFAR10 = {"airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"}


def _example(name: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(EXAMPLES / name), *args], capture_output=True, text=True, timeout=600)


def test_train_and_predict_trains_loads_the_best_checkpoint_predicts_and_evaluates(
    cifar_shards, fixture_tar, tmp_path
) -> None:
    with tarfile.open(fixture_tar) as archive:
        member = next(m for m in archive.getmembers() if m.isfile() and "/dog/" in m.name)
        (tmp_path / "dog.jpg").write_bytes(archive.extractfile(member).read())
    (tmp_path / "notes.txt").write_text("not an image")
    # One Ray Train worker (the example's --workers): what is checked is the example's way from dr.fit to the
    # predictions and the evaluation, not DDP, which the training tests cover; a second worker costs 5 CPU-seconds.
    args = ["--data", cifar_shards, "--depth", "10", "--epochs", "1", "--batch-size", "50", "--workers", "1"]
    args += ["--limit-train-batches", "2", "--storage", str(tmp_path / "runs"), "--name", "example"]
    completed = _example("train_and_predict.py", *args, str(tmp_path / "dog.jpg"), str(tmp_path / "notes.txt"))
    assert completed.returncode == 0, completed.stderr[-3000:]
    lines = completed.stdout.splitlines()
    run = tmp_path / "runs" / "example"
    assert f"trained {run}: 1 epoch(s), test error" in completed.stdout
    assert any(line.startswith(f"best checkpoint: {run}/checkpoint_") for line in lines)
    predicted = next(line for line in lines if line.startswith(f"{tmp_path / 'dog.jpg'}: "))
    classes = [part.rsplit(" ", 2)[0] for part in predicted.split(": ", 1)[1].split(", ")]
    assert len(classes) == 3 and set(classes) <= CIFAR10  # the run's own class names, from its manifest
    assert f"{tmp_path / 'notes.txt'}: not an image" in completed.stdout
    assert "evaluated on test (500 images): top-1 error" in completed.stdout
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [record["epoch"] for record in records if "test_error" in record] == [1]


def test_custom_sweep_runs_its_grid_and_ranks_the_trials(cifar_shards, tmp_path) -> None:
    args = ["--data", cifar_shards, "--lr", "0.05", "0.1", "--depth", "10", "--epochs", "1"]
    args += ["--limit-train-batches", "2", "--storage", str(tmp_path), "--name", "lr-sweep"]
    completed = _example("custom_sweep.py", *args)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert f"sweep saved in {tmp_path / 'lr-sweep'}" in completed.stdout
    # dr.sweep prints what `densenet-ray tune` prints: its own lines, none of Ray Tune's box, results path and
    # TensorBoard hint, no colour codes; the trials' epoch lines in the order the CLI gives them.
    output = completed.stdout + completed.stderr
    assert "View detailed results here" not in output and "tensorboard --logdir" not in output, output
    assert "Configuration for experiment" not in output and "\x1b[" not in output, output
    recorded = (Path(os.environ["RAY_TMPDIR"]) / "ray" / "ray_current_cluster").read_text().strip()
    lines = completed.stdout.splitlines()
    assert lines[0] == f"using the Ray cluster at {recorded} started on this machine (--local for a private one)"
    assert lines[1].startswith("sweep lr-sweep: ") and lines[1].endswith(", 1 worker(s) each, scheduler fifo")
    epochs = [
        line for line in lines if re.fullmatch(r"BC L=10 k=12 lr=0\.(05|1) \[\w+\] epoch 1/1: test error .+", line)
    ]
    assert len(epochs) == 2 and lines[2:4] == epochs, lines
    rows = [line for line in completed.stdout.splitlines() if ", best test error " in line]
    assert sorted(row.split(":")[0] for row in rows) == [
        "BC L=10 k=12 lr=0.05",
        "BC L=10 k=12 lr=0.1",
    ]
    assert all(": complete, best test error " in row and row.endswith(" %") for row in rows)
    saved = json.loads((tmp_path / "lr-sweep" / "results.json").read_text())
    assert sorted(row["options"]["lr"] for row in saved["rows"]) == [0.05, 0.1]
