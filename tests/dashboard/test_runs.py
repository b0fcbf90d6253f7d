"""Runs read from their storage alone: layout discovery, status, progress, ETA and the size-keyed cache."""

from __future__ import annotations

import json

import pytest

from densenet_ray.dashboard.runs import STALE_SECONDS, StorageScanner, find_layout, run_row
from densenet_ray.data.storage import ObjectInfo
from tests.dashboard.helpers import NOW, write_run, write_sweep


def _scan(root):
    scanner = StorageScanner(str(root))
    layout = scanner.layout()
    return scanner, layout


def _row(root, name):
    """The row of the run ``name`` under ``root``, read as the dashboard reads it, at the fixed clock."""
    scanner, layout = _scan(root)
    return run_row(scanner.read_run(name, layout.sizes), name, NOW)


def test_layout_separates_runs_from_sweep_trials_and_checkpoints() -> None:
    names = [
        "a/config.yaml",
        "a/metrics.jsonl",
        "a/checkpoint_2026/state.pt",
        "nested/b/config.yaml",
        "sw/sweep.json",
        "sw/trials/train-1/config.yaml",
        "sw/trial_driver_1/params.json",
        "sw/experiment_state-2026-11-26_01-00-00.json",
        "sw/experiment_state-2026-11-26_02-00-00.json",  # written on resume: the newer one counts
        "x/checkpoint_1/config.yaml",
    ]
    layout = find_layout([ObjectInfo(name, 1) for name in names])
    assert layout.runs == ["a", "nested/b"]
    assert layout.sweeps == ["sw"] and layout.trials == {"sw": ["sw/trials/train-1"]}
    assert layout.tune_state == {"sw": "sw/experiment_state-2026-11-26_02-00-00.json"}
    root_run = find_layout([ObjectInfo("config.yaml", 1), ObjectInfo("metrics.jsonl", 1)])
    assert root_run.runs == [""]  # --storage pointed at one run directory


def test_finished_run(tmp_path) -> None:
    write_run(tmp_path, "done", epochs=3, errors=[0.6, 0.4, 0.45], last_time=NOW - 3600)
    row = _row(tmp_path, "done")
    assert (row.status, row.status_source, row.epoch, row.epochs) == ("FINISHED", "storage", 3, 3)
    assert row.progress == 1.0 and row.eta_s == 0.0
    assert row.test_error == 0.45 and row.best_test_error == 0.4 and row.best_epoch == 2
    assert row.error_history == [0.6, 0.4, 0.45] and row.loss_history == pytest.approx([2.0, 1.7, 1.4])
    assert row.images_per_s == 180.5  # the steady figure (first steps left out) when the worker reported it
    assert row.model == "BC L=16 k=12" and row.run_dir == str(tmp_path / "done")


def test_active_run_counts_the_current_epoch_and_estimates_time_left(tmp_path) -> None:
    progress = {
        "epoch": 3,
        "batch": 25,
        "batches": 100,
        "loss": 1.234,
        "images_per_s": 210.0,
        "eta_seconds": 30.0,
        "time": NOW - 5,
    }
    write_run(tmp_path, "live", epochs=10, errors=[0.7, 0.5], last_time=NOW - 20, progress=progress)
    row = _row(tmp_path, "live")
    assert row.status == "ACTIVE" and row.epoch == 2
    assert row.progress == pytest.approx(2.25 / 10)
    # The current epoch's own ETA, then 7 more epochs at the 60 s the last two epochs took (evaluation included).
    assert row.eta_s == pytest.approx(30.0 + 7 * 60.0)
    assert (row.loss, row.images_per_s) == (1.234, 210.0)  # in-epoch figures are newer than the last epoch's
    assert row.updated == NOW - 5


def test_run_without_recent_writes_is_stopped(tmp_path) -> None:
    write_run(tmp_path, "old", epochs=10, errors=[0.7], last_time=NOW - STALE_SECONDS - 1)
    row = _row(tmp_path, "old")
    assert row.status == "STOPPED" and row.progress == pytest.approx(0.1)
    assert row.eta_s == pytest.approx(9 * 35.0)  # one epoch so far: its training time per epoch


def test_first_epoch_in_progress_has_an_eta_from_progress_alone(tmp_path) -> None:
    progress = {
        "epoch": 1,
        "batch": 50,
        "batches": 200,
        "loss": 2.2,
        "images_per_s": 99.0,
        "eta_seconds": 90.0,
        "time": NOW,
    }
    write_run(tmp_path, "new", epochs=2, errors=[], last_time=NOW, progress=progress)
    row = _row(tmp_path, "new")
    assert row.status == "ACTIVE" and row.epoch == 0 and row.progress == pytest.approx(0.125)
    assert row.eta_s == pytest.approx(90.0 + 120.0)  # 90 s for this epoch, then one epoch of 90 / 0.75 s
    assert row.test_error is None and row.error_history == []


def test_scanner_rereads_a_file_only_when_its_size_changes(tmp_path) -> None:
    progress = {"epoch": 2, "batch": 1, "batches": 9, "loss": 1.0, "images_per_s": 1.0, "eta_seconds": 1.0}
    run = write_run(tmp_path, "r", epochs=5, errors=[0.5], last_time=NOW, progress=progress)
    scanner, layout = _scan(tmp_path)
    assert len(scanner.read_run("r", layout.sizes).records) == 1
    reads = []
    original = scanner.storage.read_bytes
    scanner.storage.read_bytes = lambda name: reads.append(name) or original(name)
    scanner.read_run("r", scanner.layout().sizes)
    assert reads == ["r/progress.json"]  # a running run's progress is rewritten in place: always read
    with open(run / "metrics.jsonl", "a") as handle:
        for epoch in range(2, 6):
            line = {"time": NOW + 60 * epoch, "epoch": epoch, "epochs": 5, "step": 100 * epoch, "loss": 1.0}
            line["test_error"] = 0.3
            handle.write(json.dumps(line) + "\n")
    reads.clear()
    files = scanner.read_run("r", scanner.layout().sizes)
    assert reads == ["r/metrics.jsonl"] and [record.epoch for record in files.records] == [1, 2, 3, 4, 5]
    reads.clear()
    scanner.read_run("r", scanner.layout().sizes)
    assert reads == []  # finished and unchanged: nothing read at all


def test_torn_last_line_and_foreign_configs_are_tolerated(tmp_path) -> None:
    run = write_run(tmp_path, "r", epochs=5, errors=[0.5, 0.4], last_time=NOW)
    with open(run / "metrics.jsonl", "a") as handle:
        handle.write('{"epoch": 3, "los')
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "config.yaml").write_text("name: not a training run\n")
    scanner, layout = _scan(tmp_path)
    assert [record.epoch for record in scanner.read_run("r", layout.sizes).records] == [1, 2]
    assert scanner.read_run("other", layout.sizes) is None


def test_sweep_trials_are_not_listed_as_runs(tmp_path) -> None:
    sweep = write_sweep(tmp_path, "sw", ["lr"], [])
    write_run(sweep / "trials", "train-a_00000", epochs=2, errors=[0.5], last_time=NOW)
    write_run(tmp_path, "solo", epochs=2, errors=[0.5], last_time=NOW)
    _, layout = _scan(tmp_path)
    assert layout.runs == ["solo"] and layout.sweeps == ["sw"]


def test_a_run_that_stopped_early_is_finished_with_its_reason(tmp_path) -> None:
    from rich.console import Console

    from densenet_ray.dashboard.render import runs_table
    from densenet_ray.dashboard.snapshot import Snapshot

    directory = write_run(tmp_path, "early", epochs=10, errors=[0.6, 0.4, 0.45], last_time=NOW - 5)
    lines = (directory / "metrics.jsonl").read_text().splitlines()
    last = json.loads(lines[-1])
    last["stopped"] = "test_error has not improved for 1 epoch(s) (best 0.4000 at epoch 2; --early-stop test_error:1)"
    (directory / "metrics.jsonl").write_text("\n".join([*lines[:-1], json.dumps(last)]) + "\n")
    row = _row(tmp_path, "early")
    assert (row.status, row.epoch, row.epochs, row.progress, row.eta_s) == ("FINISHED", 3, 10, 1.0, 0.0)
    console = Console(width=160, record=True)
    console.print(runs_table(Snapshot(time=NOW, cluster=None, jobs=[], runs=[row], sweeps=[], storage=[]), 10))
    assert "early stopped at epoch 3: test_error has not improved for 1 epoch(s)" in console.export_text()


def test_preemptions_and_each_epochs_world_size_are_shown(tmp_path) -> None:
    from rich.console import Console

    from densenet_ray.dashboard.render import runs_table
    from densenet_ray.dashboard.snapshot import Snapshot

    directory = write_run(tmp_path, "spot", epochs=10, errors=[0.6, 0.4, 0.45], last_time=NOW - 5)
    lines = [json.loads(line) for line in (directory / "metrics.jsonl").read_text().splitlines()]
    for line, world in zip(lines, (2, 2, 1), strict=True):
        line["world_size"] = world
    notice = {"epoch": 1, "step": 150, "nodes": ["a4f8a529fc1d"], "ranks": [1], "deadline": NOW - 60}
    lines.insert(2, {**notice, "world_size": 2, "preempted": True, "time": NOW - 90})
    (directory / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    row = _row(tmp_path, "spot")
    assert (row.preemptions, row.world_sizes, row.epoch) == (1, [2, 2, 1], 3)
    console = Console(width=200, record=True)
    console.print(runs_table(Snapshot(time=NOW, cluster=None, jobs=[], runs=[row], sweeps=[], storage=[]), 10))
    text = console.export_text()
    assert "world/epoch" in text and "preempted" in text and "2→1" in text
    plain = _row(tmp_path, "spot")
    plain.preemptions, plain.world_sizes = 0, [2, 2, 2]  # nothing elastic happened: the columns stay away
    console = Console(width=200, record=True)
    console.print(runs_table(Snapshot(time=NOW, cluster=None, jobs=[], runs=[plain], sweeps=[], storage=[]), 10))
    assert "preempted" not in console.export_text()
