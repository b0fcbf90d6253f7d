"""Sweeps end to end on a real local Ray instance (2 CPUs) over shards of real CIFAR-10 images."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.train.run_helpers import epoch_records

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.usefixtures("module_cluster")]

SMALL = ["--epochs", "1", "--limit-train-batches", "2", "--limit-eval-batches", "1", "--batch-size", "16"]
SMALL += ["--loader-workers", "0"]
# The wide table's models are the paper's (BC-100-12 and Wide-BC-40 up to k=60, the suite's costliest steps): one
# step of 4 images and 4 test images give every column its value (errors, s/iter, memory, img/s) with a sixth of
# the images of two batches of 16 and a test batch of 16; the test checks the table, not the numbers in it.
WIDE_SMALL = ["--epochs", "1", "--limit-train-batches", "1", "--limit-eval-batches", "1", "--batch-size", "4"]
WIDE_SMALL += ["--loader-workers", "0"]
WIDE_PARAMS = ["769,162", "1,542,682", "2,733,130", "4,261,690"]


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}


def _tune(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "densenet_ray", "tune", *args],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=timeout,
    )


def test_wide_sweep_prints_and_saves_the_table(cifar_shards, tmp_path) -> None:
    completed = _tune("wide", "--data", cifar_shards, *WIDE_SMALL, "--storage", str(tmp_path), "--name", "wide1")
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert all(params in completed.stdout for params in WIDE_PARAMS), completed.stdout
    assert "Pareto front, error vs time:" in completed.stdout
    output = completed.stdout + completed.stderr  # only our own lines: not Ray Tune's box, hints or colour codes
    assert "View detailed results here" not in output and "tensorboard --logdir" not in output and "\x1b[" not in output
    saved = json.loads((tmp_path / "wide1" / "results.json").read_text())
    rows = saved["rows"]
    assert [row["label"] for row in rows] == [
        "BC L=100 k=12",
        "Wide-BC L=40 k=36",
        "Wide-BC L=40 k=48",
        "Wide-BC L=40 k=60",
    ]
    for row in rows:
        assert row["status"] == "complete" and row["epochs_done"] == 1
        for key in ("final_test_error", "best_test_error", "seconds_per_iteration", "peak_memory_mb", "images_per_s"):
            assert row[key] is not None and row[key] >= 0, (row["label"], key)
        expected = {"params", "seconds_per_iteration", "peak_memory_mb", "images_per_s"}
        expected |= {"final_test_error"} if rows[0]["final_test_error"] else set()  # no ratio to a zero error
        assert set(row["ratios"]) == expected
    assert rows[0]["ratios"]["params"] == 1.0 and rows[3]["ratios"]["params"] == 4_261_690 / 769_162
    assert any(row["pareto_time"] for row in rows) and any(row["pareto_memory"] for row in rows)
    assert len((tmp_path / "wide1" / "results.csv").read_text().splitlines()) == 5

    shown = _tune("show", "wide1", "--storage", str(tmp_path), timeout=120)
    assert shown.returncode == 0, shown.stderr
    assert all(params in shown.stdout for params in WIDE_PARAMS)
    as_json = json.loads(_tune("show", str(tmp_path / "wide1"), "--json", timeout=120).stdout)
    assert [row["final_test_error"] for row in as_json] == [row["final_test_error"] for row in rows]


def _space(tmp_path: Path, text: str) -> str:
    path = tmp_path / "space.yaml"
    path.write_text(text)
    return str(path)


def test_asha_stops_trials_that_do_not_learn(cifar_shards, tmp_path) -> None:
    # One trial at a time, lr 0.1 then lr 1e-9 with the same seed: the lr 0.1 trial reaches the rung at epoch 2
    # first with the lower error (78.9 % against 85.9 % here) and goes on; ASHA stops the one that did not learn,
    # whose error at the rung is above the cutoff of those recorded there (the median, with reduction factor 2).
    space = _space(
        tmp_path,
        "scheduler: asha\ngrace_period: 2\nreduction_factor: 2\nnum_samples: 1\n"
        "options: {model: densenet_bc100_k12, depth: 16, epochs: 3}\n"
        "space:\n  lr: {grid: [0.1, 1.0e-9]}\n",
    )
    args = ["--data", cifar_shards, "--space", space, "--storage", str(tmp_path), "--name", "asha"]
    args += ["--limit-train-batches", "10", "--limit-eval-batches", "4", "--batch-size", "32"]
    completed = _tune("custom", *args, "--loader-workers", "0", "--max-concurrent", "1")
    assert completed.returncode == 0, completed.stderr[-3000:]
    rows = json.loads((tmp_path / "asha" / "results.json").read_text())["rows"]
    assert len(rows) == 2
    stopped = [row for row in rows if row["status"] == "stopped"]
    assert stopped and all(row["epochs_done"] < 3 and row["options"]["lr"] == 1e-9 for row in stopped)
    assert any(row["status"] == "complete" and row["options"]["lr"] == 0.1 for row in rows)


def test_interrupted_sweep_resumes_without_rerunning_finished_trials(cifar_shards, tmp_path) -> None:
    space = _space(
        tmp_path,
        "options: {model: densenet_bc100_k12, depth: 16, epochs: 2}\nspace:\n  lr: {grid: [0.1, 0.05, 0.02]}\n",
    )
    args = ["custom", "--data", cifar_shards, "--space", space, "--storage", str(tmp_path), "--name", "resume"]
    args += ["--limit-train-batches", "3", "--limit-eval-batches", "1", "--batch-size", "16", "--loader-workers", "0"]
    args += ["--max-concurrent", "1"]
    trials = tmp_path / "resume" / "trials"

    def finished_runs() -> list[Path]:
        return [p.parent for p in trials.glob("*/metrics.jsonl") if len(epoch_records(p.read_text())) == 2]

    process = subprocess.Popen(
        [sys.executable, "-m", "densenet_ray", "tune", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not (finished_runs() and len(list(trials.glob("*/config.yaml"))) >= 2):
            time.sleep(0.5)
        assert finished_runs(), "the first trial never finished"
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=180)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 130, stderr[-3000:]
    assert "interrupted; rerun with --name resume" in stderr
    done_before = {run.name: (run / "config.yaml").stat().st_mtime_ns for run in finished_runs()}
    assert not (tmp_path / "resume" / "results.json").exists()
    partial = _tune("show", "resume", "--storage", str(tmp_path), timeout=120)
    assert partial.returncode == 0 and "(not finished)" in partial.stdout

    again = _tune(*args)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "resuming sweep resume" in again.stdout
    rows = json.loads((tmp_path / "resume" / "results.json").read_text())["rows"]
    assert sorted(row["options"]["lr"] for row in rows) == [0.02, 0.05, 0.1]
    assert all(row["status"] == "complete" for row in rows)
    for run in trials.iterdir():
        epochs = [record["epoch"] for record in epoch_records((run / "metrics.jsonl").read_text())]
        assert epochs == [1, 2], (run.name, epochs)  # resumed runs continue; none restarts from epoch 1
    for name, mtime in done_before.items():  # a finished trial's run is not started again
        assert (trials / name / "config.yaml").stat().st_mtime_ns == mtime


def test_bad_space_file_is_one_line(cifar_shards, tmp_path) -> None:
    space = _space(tmp_path, "space:\n  lr: {gaussian: [0.1, 0.01]}\n")
    completed = _tune("custom", "--data", cifar_shards, "--space", space, "--storage", str(tmp_path), timeout=120)
    lines = [line for line in completed.stderr.splitlines() if line.strip()]
    assert completed.returncode == 1 and len(lines) == 1, completed.stderr
    assert lines[0].startswith("error: ") and "unknown distribution 'gaussian'" in lines[0]


def test_a_bad_space_file_is_reported_before_ray_or_pytorch_is_imported(tmp_path) -> None:
    # A mistyped space file is one line at once, not after the 3-4 CPU-seconds of importing Ray Tune and PyTorch.
    space = _space(tmp_path, "space:\n  lr: {gaussian: [0.1, 0.01]}\n")
    code = "import sys; from densenet_ray.cli import main; code = main(['tune', 'custom', '--data', 'unused', "
    code += "'--space', sys.argv[1]]); print(code, 'ray' in sys.modules, 'torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code, space], capture_output=True, text=True, env=_env(), timeout=120)
    assert done.stdout.split() == ["1", "False", "False"], done.stdout + done.stderr
    assert "unknown distribution 'gaussian'" in done.stderr


def test_a_data_prefix_without_shards_is_one_line_before_ray_starts(tmp_path) -> None:
    started = time.monotonic()
    completed = _tune("wide", "--data", str(tmp_path / "empty"), "--storage", str(tmp_path), timeout=120)
    lines = [line for line in completed.stderr.splitlines() if line.strip()]
    assert completed.returncode == 1 and len(lines) == 1, completed.stderr
    assert (
        lines[0] == f"error: no shard manifest for split 'train' at {tmp_path / 'empty'} (build one with "
        "`densenet-ray data build`)"
    )
    assert not (tmp_path / "wide").exists() and time.monotonic() - started < 60  # no trial, no Ray


def test_failed_trials_are_counted_with_their_causes(cifar_shards, tmp_path) -> None:
    import shutil

    data = tmp_path / "shards"
    shutil.copytree(cifar_shards, data)
    for shard in data.glob("train-*.tar"):  # every shard truncated after its manifest was written
        shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])
    space = _space(
        tmp_path, "options: {model: densenet_bc100_k12, depth: 16, epochs: 1}\nspace:\n  lr: {grid: [0.1, 0.05]}\n"
    )
    args = ["custom", "--data", str(data), "--space", space, "--storage", str(tmp_path), "--name", "bad"]
    completed = _tune(*args, *SMALL[2:], "--max-concurrent", "1")
    assert completed.returncode == 1, completed.stderr[-3000:]
    causes = [line for line in completed.stderr.splitlines() if line.startswith("trial train-")]
    assert len(causes) == 2, completed.stderr[-3000:]
    for line in causes:
        assert ") failed: training failed on rank " in line and ": DataError: shard " in line, line
        assert "is truncated or corrupt" in line and line.endswith("error.txt)"), line
    assert completed.stderr.splitlines()[-1] == "error: 2 of 2 trials failed"
