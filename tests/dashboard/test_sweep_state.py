"""A sweep's state from its directory: Tune's trial statuses, the trials' files, results.json, the cluster's runs."""

from __future__ import annotations

import json

from densenet_ray.dashboard.runs import STALE_SECONDS, StorageScanner
from densenet_ray.dashboard.snapshot import RunRow
from densenet_ray.dashboard.sweep_state import read_sweep, tune_trial_states
from tests.dashboard.helpers import NOW, write_run, write_sweep, write_tune_state

GRID = [{"lr": 0.05}, {"lr": 0.1}, {"lr": 0.2}, {"lr": 0.4}, {"lr": 0.8}]


def _read(root, train_runs=None, now=NOW):
    scanner = StorageScanner(str(root))
    layout = scanner.layout()
    return read_sweep(scanner, layout.sweeps[0], layout, train_runs or {}, now)


def _running_sweep(tmp_path):
    sweep = write_sweep(tmp_path, "lr-sweep", ["lr"], GRID)
    trials = sweep / "trials"
    write_run(trials, "train-s_00000", epochs=2, errors=[0.5, 0.4], last_time=NOW - 300, lr=0.05)
    write_run(trials, "train-s_00001", epochs=2, errors=[0.7], last_time=NOW - 200, lr=0.1)
    progress = {
        "epoch": 2,
        "batch": 10,
        "batches": 20,
        "loss": 1.5,
        "images_per_s": 99.0,
        "eta_seconds": 10.0,
        "time": NOW - 2,
    }
    write_run(trials, "train-s_00002", epochs=2, errors=[0.45], last_time=NOW - 30, progress=progress, lr=0.2)
    write_tune_state(
        sweep,
        {
            "s_00000": ("TERMINATED", {"lr": 0.05}),
            "s_00001": ("TERMINATED", {"lr": 0.1}),  # stopped by ASHA after 1 of 2 epochs
            "s_00002": ("RUNNING", {"lr": 0.2}),
            "s_00003": ("PENDING", {"lr": 0.4}),
            "s_00004": ("ERROR", {"lr": 0.8}),
        },
    )
    return sweep


def test_tune_state_entries_are_parsed_and_bad_ones_skipped() -> None:
    good = json.dumps({"trial_id": "a_1", "status": "RUNNING", "config": {"trial": {"lr": 0.1}}})
    states = tune_trial_states({"trial_data": [[good, "{}"], ["not json", "{}"], 5]})
    assert states == {"a_1": {"status": "RUNNING", "trial": {"lr": 0.1}}}


def test_running_sweep_has_every_trial_status_and_the_best_so_far(tmp_path) -> None:
    _running_sweep(tmp_path)
    sweep, runs = _read(tmp_path)
    statuses = {trial.trial_id: trial.status for trial in sweep.trials}
    assert statuses == {
        "s_00000": "FINISHED",
        "s_00001": "STOPPED",
        "s_00002": "RUNNING",
        "s_00003": "PENDING",
        "s_00004": "ERROR",
    }
    assert [trial.status for trial in sweep.trials] == ["RUNNING", "PENDING", "FINISHED", "STOPPED", "ERROR"]
    assert sweep.status == "RUNNING" and sweep.kind == "custom" and sweep.scheduler == "asha"
    assert sweep.counts == {"FINISHED": 1, "STOPPED": 1, "RUNNING": 1, "PENDING": 1, "ERROR": 1}
    assert (sweep.best_trial, sweep.best_test_error, sweep.best_options) == ("s_00000", 0.4, {"lr": 0.05})
    assert sweep.best_label == "BC L=16 k=12 lr=0.05"
    pending = next(trial for trial in sweep.trials if trial.trial_id == "s_00003")
    assert pending.label == "BC L=16 k=12 lr=0.4" and pending.epoch == 0 and pending.run_dir is None
    assert {run.name for run in runs} == {"train-s_00000", "train-s_00001", "train-s_00002"}
    assert all(run.sweep == "lr-sweep" for run in runs)


def test_finished_sweep_takes_statuses_from_its_results(tmp_path) -> None:
    sweep_dir = _running_sweep(tmp_path)
    rows = [
        {"trial": "train-s_00000", "status": "complete"},
        {"trial": "train-s_00001", "status": "stopped"},
        {"trial": "train-s_00002", "status": "complete"},
        {"trial": "train-s_00003", "status": "error"},
        {"trial": "train-s_00004", "status": "error"},
    ]
    (sweep_dir / "results.json").write_text(json.dumps({"rows": rows}))
    sweep, _ = _read(tmp_path)
    assert sweep.status == "ERROR"  # finished, with failed trials
    assert {trial.trial_id: trial.status for trial in sweep.trials}["s_00002"] == "FINISHED"


def test_sweep_whose_files_stopped_changing_is_interrupted(tmp_path) -> None:
    _running_sweep(tmp_path)
    later = NOW + STALE_SECONDS + 10
    sweep, _ = _read(tmp_path, now=later)
    assert sweep.status == "INTERRUPTED"
    assert {trial.trial_id: trial.status for trial in sweep.trials}["s_00002"] == "INTERRUPTED"


def test_the_clusters_view_of_a_trial_wins_over_stale_files(tmp_path) -> None:
    sweep_dir = _running_sweep(tmp_path)
    run_dir = str(sweep_dir / "trials" / "train-s_00001")
    cluster = RunRow(
        name="train-s_00001",
        run_dir=run_dir,
        status="RUNNING",
        status_source="train",
        attempts=2,
        restarts=1,
        workers_alive=1,
        workers=1,
        job="sweep-job",
    )
    sweep, runs = _read(tmp_path, {run_dir: cluster}, now=NOW + STALE_SECONDS + 10)
    assert {trial.trial_id: trial.status for trial in sweep.trials}["s_00001"] == "RUNNING"
    assert sweep.status == "RUNNING"
    joined = next(run for run in runs if run.name == "train-s_00001")
    assert (joined.status_source, joined.restarts, joined.job, joined.epoch) == ("train", 1, "sweep-job", 1)
