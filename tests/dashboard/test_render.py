"""Rendering compared with golden text: a recording rich console, fixed width, no colour, UTC clock.

After a deliberate change to the layout, regenerate with ``DENSENET_RAY_ACCEPT_GOLDEN=1 pytest tests/dashboard``
and review the diff of ``tests/dashboard/golden/``.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from rich.console import Console

from densenet_ray.dashboard.render import bar, duration, render, sparkline
from densenet_ray.dashboard.snapshot import ClusterInfo, JobRow, RunRow, Snapshot, SweepRow, TrialRow
from tests.dashboard.helpers import NOW

GOLDEN = Path(__file__).parent / "golden"


@pytest.fixture(autouse=True)
def utc(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def _text(snapshot: Snapshot, limit: int = 10, width: int = 150) -> str:
    with open(os.devnull, "w") as sink:
        console = Console(record=True, width=width, color_system=None, force_terminal=False, file=sink)
        console.print(render(snapshot, limit))
    return console.export_text()


def _check(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("DENSENET_RAY_ACCEPT_GOLDEN"):
        path.write_text(text)
    assert text == path.read_text(), f"{name} differs; see the module docstring to accept an intended change"


def _runs() -> list[RunRow]:
    live = RunRow(
        name="bc100-k12",
        run_dir="s3://bucket/runs/bc100-k12",
        status="RUNNING",
        status_source="train",
        model="BC L=100 k=12",
        epoch=150,
        epochs=300,
        progress=0.5025,
        eta_s=3 * 3600 + 125,
        images_per_s=2345.6,
        loss=0.4321,
        test_error=0.0712,
        best_test_error=0.0698,
        best_epoch=148,
        loss_history=[2.0, 1.2, 0.9, 0.7, 0.5, 0.43],
        error_history=[0.6, 0.3, 0.2, 0.12, 0.08, 0.0712],
        attempts=2,
        restarts=1,
        workers_alive=4,
        workers=4,
        job="train-bc100",
    )
    done = RunRow(
        name="l40-k12",
        run_dir="/runs/l40-k12",
        status="FINISHED",
        status_source="storage",
        model="L=40 k=12",
        epoch=300,
        epochs=300,
        progress=1.0,
        eta_s=0.0,
        images_per_s=4100.0,
        loss=0.02,
        test_error=0.0710,
        best_test_error=0.0702,
        best_epoch=290,
        loss_history=[1.0, 0.5, 0.1],
        error_history=[0.2, 0.1, 0.071],
    )
    failed = RunRow(
        name="broken",
        run_dir=None,
        status="ERRORED",
        status_source="train",
        model=None,
        epoch=0,
        epochs=None,
        attempts=1,
        restarts=0,
        workers_alive=0,
        workers=2,
        job="train-broken",
    )
    trial = RunRow(name="train-t_00000", run_dir="/s/t", status="RUNNING", status_source="train", sweep="lr")
    return [live, done, failed, trial]


def _sweep() -> SweepRow:
    trials = [
        TrialRow(
            trial_id="t_00001",
            label="BC L=100 k=12 lr=0.1",
            status="RUNNING",
            options={"lr": 0.1},
            epoch=3,
            epochs=10,
            test_error=0.31,
            best_test_error=0.29,
            run_dir="/s/t1",
        ),
        TrialRow(
            trial_id="t_00002", label="BC L=100 k=12 lr=0.2", status="PENDING", options={"lr": 0.2}, epoch=0, epochs=10
        ),
        TrialRow(
            trial_id="t_00000",
            label="BC L=100 k=12 lr=0.05",
            status="FINISHED",
            options={"lr": 0.05},
            epoch=10,
            epochs=10,
            test_error=0.12,
            best_test_error=0.11,
            run_dir="/s/t0",
        ),
        TrialRow(
            trial_id="t_00003",
            label="BC L=100 k=12 lr=0.8",
            status="STOPPED",
            options={"lr": 0.8},
            epoch=1,
            epochs=10,
            test_error=0.7,
            best_test_error=0.7,
            run_dir="/s/t3",
        ),
    ]
    return SweepRow(
        name="lr",
        url="/s",
        kind="custom",
        scheduler="asha",
        status="RUNNING",
        trials=trials,
        counts={"RUNNING": 1, "PENDING": 1, "FINISHED": 1, "STOPPED": 1},
        best_trial="t_00000",
        best_label="BC L=100 k=12 lr=0.05",
        best_test_error=0.11,
        best_options={"lr": 0.05},
    )


def _cluster_snapshot() -> Snapshot:
    cluster = ClusterInfo(
        address="http://127.0.0.1:8265",
        ray_version="2.60.0",
        nodes_alive=3,
        nodes_dead=1,
        cpus_used=9.0,
        cpus_total=24.0,
        gpus_used=4.0,
        gpus_total=8.0,
        train_state=True,
    )
    jobs = [
        JobRow(
            submission_id="train-bc100",
            status="RUNNING",
            entrypoint="python -m densenet_ray.cifar --model densenet_bc100_k12",
            job_id="03000000",
            start_time=NOW - 7200,
            end_time=None,
            duration_s=7200.0,
        ),
        JobRow(
            submission_id="train-broken",
            status="FAILED",
            entrypoint="python -m densenet_ray.cifar --depth 7",
            job_id="02000000",
            start_time=NOW - 90000,
            end_time=NOW - 89990,
            duration_s=10.0,
            message="Job entrypoint command failed with exit code 1: ValueError: --depth 7",
        ),
    ]
    return Snapshot(time=NOW, cluster=cluster, jobs=jobs, runs=_runs(), sweeps=[_sweep()], storage=["/runs"])


def test_cluster_snapshot_matches_golden_text() -> None:
    _check("cluster.txt", _text(_cluster_snapshot()))


def test_storage_only_snapshot_matches_golden_text() -> None:
    snapshot = Snapshot(
        time=NOW,
        cluster=None,
        jobs=[],
        runs=_runs()[1:2],
        sweeps=[_sweep()],
        storage=["/runs"],
        notes=["no Ray cluster on this machine: showing storage only (--address to add one)"],
    )
    _check("storage-only.txt", _text(snapshot))


def test_limit_folds_extra_rows_into_one_line() -> None:
    text = _text(_cluster_snapshot(), limit=1)
    assert "… 1 more jobs" in text and "… 2 more runs" in text and "… 3 more trials" in text
    assert "train-broken " not in text.split("Training runs")[0]  # the second job is folded away


def test_empty_cluster_says_so() -> None:
    cluster = ClusterInfo(address="http://h:8265", nodes_alive=1, cpus_total=2.0, cpus_used=0.0, gpus_used=0.0)
    text = _text(Snapshot(time=NOW, cluster=cluster, jobs=[], runs=[], sweeps=[], storage=[]))
    assert "Jobs (none)" in text and "Training runs (none)" in text and "CPU 0/2 · GPU 0/0" in text


def test_small_pieces() -> None:
    assert sparkline([3.0, 2.0, 1.0, 1.0]) == "█▅▁▁"
    assert sparkline([0.5, 0.5]) == "▁▁" and sparkline([]) == ""
    assert sparkline(list(range(40)), width=4) == "▁▃▆█"  # the last values only
    assert bar(0.5, width=4) == "██░░  50%" and bar(1.7, width=2) == "██ 100%"
    assert duration(None) == "-" and duration(59.6) == "0:01:00" and duration(90061) == "1d 1:01:01"


def test_narrow_screens_drop_the_least_important_run_columns_first() -> None:
    wide, narrow = _text(_cluster_snapshot(), width=220), _text(_cluster_snapshot(), width=110)
    header = next(line for line in wide.splitlines() if line.startswith("run "))
    assert all(column in header for column in ("restarts", "workers", "job", "loss/epoch", "err/epoch"))
    header = next(line for line in narrow.splitlines() if line.startswith("run "))
    assert "err/epoch" in header and "err %" in header
    assert not any(column in header for column in ("restarts", "workers", " job", "loss/epoch"))
    assert all(len(line) <= 110 for line in narrow.splitlines())


def test_a_multi_label_run_and_trial_show_their_auroc() -> None:
    run = RunRow(name="xray", run_dir="/runs/xray", status="RUNNING", status_source="storage", model="densenet121")
    run.epoch, run.epochs, run.test_error, run.best_test_error, run.multi_label = 2, 5, 0.25, 0.2, True
    trial = TrialRow(trial_id="t0", label="lr=0.01", status="RUNNING", test_error=0.3, best_test_error=0.3)
    trial.multi_label = True
    sweep = SweepRow(name="s", url="/s", kind="custom", scheduler="fifo", status="RUNNING", trials=[trial])
    sweep.best_trial, sweep.best_label, sweep.best_test_error, sweep.multi_label = "t0", "lr=0.01", 0.3, True
    text = _text(Snapshot(time=NOW, cluster=None, jobs=[], runs=[run], sweeps=[sweep], storage=["/runs"]))
    assert "AUROC 0.750" in text and "AUROC 0.800" in text  # 1 - the error, last and best
    assert "at AUROC 0.700" in text and "test error" not in text.split("Sweep")[1]
