"""What the dashboard did not write: a job message or run name holding rich markup and terminal escape sequences is
drawn as the plain text it reads (never parsed, never sent to the terminal), and stored files without their shape
(``epochs: [1]``, a loss that is a string, a sweep's options that are a list) are each one note naming the file,
the other runs drawn as before."""

from __future__ import annotations

import io
import json
from pathlib import Path

import yaml
from rich.console import Console

from densenet_ray.dashboard.poll import Poller
from densenet_ray.dashboard.render import render
from densenet_ray.dashboard.snapshot import ClusterInfo, JobRow, RunRow, Snapshot, SweepRow, TrialRow
from tests.dashboard.helpers import NOW, write_run, write_sweep

HOSTILE = "[/] [bold red]boom\x1b[2J\x1b]0;pwned\x07 \x1bc\r\nnext\x9b31m line"
SHOWN = "[/] [bold red]boom   next line"  # the escape sequences gone, CR and LF a space each, the markup as written
INJECTED = ("\x1b[2J", "\x1b]0;", "\x07", "\x1bc", "\x9b", "\r")


def _draw(snapshot: Snapshot) -> tuple[str, str]:
    """What a colour terminal receives, and the text it shows."""
    sink = io.StringIO()
    console = Console(file=sink, force_terminal=True, color_system="truecolor", width=400, record=True)
    console.print(render(snapshot))
    return sink.getvalue(), console.export_text()


def test_markup_and_escape_sequences_from_the_cluster_and_runs_are_drawn_as_text() -> None:
    job = JobRow("job[/]", "FAILED", f"python -m x {HOSTILE}", start_time=NOW - 60, message=HOSTILE)
    run = RunRow(name=f"run {HOSTILE}", run_dir="/r", status="STOPPED", status_source="storage", model=HOSTILE)
    run.stopped = HOSTILE
    trial = TrialRow("t_0", HOSTILE, "RUNNING", {"lr": HOSTILE}, 1, 2, 0.5, 0.4)
    sweep = SweepRow(name=HOSTILE, url="/s", kind="custom", scheduler="fifo", status="RUNNING", trials=[trial])
    sweep.best_trial, sweep.best_label, sweep.best_test_error, sweep.best_options = "t_0", HOSTILE, 0.4, {"lr": 1}
    cluster = ClusterInfo(address=f"http://head:8265{HOSTILE}", ray_version="2.60.0", nodes_alive=1)
    snapshot = Snapshot(time=NOW, cluster=cluster, jobs=[job], runs=[run], sweeps=[sweep], storage=[], notes=[HOSTILE])
    received, shown = _draw(snapshot)
    assert not [sequence for sequence in INJECTED if sequence in received]
    lines = shown.splitlines()
    assert f"! {SHOWN}" in lines and "job[/]" in shown and f"run {SHOWN} stopped at epoch 0: {SHOWN}" in lines
    assert shown.count(SHOWN) >= 8  # header, note, job entrypoint and message, run, model, stop, sweep, trial


def test_files_without_their_shape_are_one_note_each_and_the_other_runs_are_drawn(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    write_run(root, "good", epochs=3, errors=[0.5, 0.4], last_time=NOW - 30)
    diverged = write_run(root, "diverged", epochs=3, errors=[0.5], last_time=NOW - 30)
    lines = (diverged / "metrics.jsonl").read_text().replace('"loss": 2.0', '"loss": NaN')
    (diverged / "metrics.jsonl").write_text(lines)  # a diverged run's NaN loss is a figure, not damage
    bad_epochs = write_run(root, "bad-epochs", epochs=3, errors=[0.5], last_time=NOW - 30)
    config = yaml.safe_load((bad_epochs / "config.yaml").read_text())
    config["optim"]["epochs"] = [1]
    (bad_epochs / "config.yaml").write_text(yaml.safe_dump(config))
    flat = root / "flat-epochs"
    flat.mkdir()
    (flat / "config.yaml").write_text(yaml.safe_dump({"model": "densenet_bc100_k12", "epochs": [1]}))
    bad_loss = write_run(root, "bad-loss", epochs=3, errors=[0.5], last_time=NOW - 30)
    (bad_loss / "metrics.jsonl").write_text((bad_loss / "metrics.jsonl").read_text().replace("2.0,", '"abc",'))
    bad_progress = write_run(root, "bad-progress", epochs=3, errors=[0.5], last_time=NOW - 30)
    progress = {"epoch": 2, "batch": "x", "batches": 10, "loss": 1.0, "images_per_s": 1.0, "eta_seconds": 1.0}
    (bad_progress / "progress.json").write_text(json.dumps({**progress, "time": NOW}))
    sweep = write_sweep(tmp_path / "sweeps", "lr", ["lr"], [{"lr": 0.1}])
    (sweep / "sweep.json").write_text(json.dumps({**json.loads((sweep / "sweep.json").read_text()), "options": [1]}))
    snapshot = Poller(None, [str(root), str(tmp_path / "sweeps")]).poll()
    assert sorted(run.name for run in snapshot.runs) == ["diverged", "good"] and snapshot.sweeps == []
    assert sorted(snapshot.notes) == [
        f"unreadable run {root}/bad-epochs/config.yaml: epochs: [1] in TrainConfig(...) must be an integer",
        f"unreadable run {root}/bad-loss/metrics.jsonl: loss is 'abc', not a number",
        f"unreadable run {root}/bad-progress/progress.json: batch is 'x', not a whole number",
        f"unreadable run {root}/flat-epochs/config.yaml: epochs: [1] in TrainConfig(...) must be an integer",
        f"unreadable sweep {sweep}/sweep.json: options is [1], not a mapping",
    ]
    _, shown = _draw(snapshot)
    rows = {line.split()[0]: line for line in shown.splitlines() if line.split()[:1] in (["good"], ["diverged"])}
    assert "2/3" in rows["good"] and "1/3" in rows["diverged"] and "nan" in rows["diverged"]
