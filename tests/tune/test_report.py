"""The sweep table: rows from the trials' run directories, ratios to the baseline, Pareto fronts, CSV/JSON."""

from __future__ import annotations

import csv
import io
import json
import sys

import pytest
import yaml

from densenet_ray.tune import report
from densenet_ray.tune.sweeps import named_sweep


def test_pareto_front() -> None:
    points = [(0.05, 1.0), (0.04, 2.0), (0.06, 3.0), (0.04, 2.0), (0.03, 5.0), (0.05, 0.9)]
    assert report.pareto_front(points) == [False, True, False, True, True, True]


def _write_trial(root, trial: str, options: dict, records: list[dict]) -> None:
    directory = root / "trials" / trial
    directory.mkdir(parents=True)
    (directory / "config.yaml").write_text(yaml.safe_dump({"dataset": "cifar10", "epochs": 2, **options}))
    lines = [json.dumps({"mid_epoch": True, "epoch": 0, "step": 3, "loss": 2.0})]  # mid-epoch lines are skipped
    for epoch, (error, seconds, memory) in enumerate(records, start=1):
        record = {"epoch": epoch, "epochs": 2, "step": 10 * epoch, "loss": 2.0 - epoch / 10, "test_error": error}
        record.update(best_test_error=error, seconds_per_iteration=seconds)
        record.update(peak_memory_mb=memory, images_per_s=64 / seconds, steady_images_per_s=64 / seconds)
        lines.append(json.dumps(record))
    (directory / "metrics.jsonl").write_text("\n".join(lines) + "\n")


def test_collect_ratios_fronts_and_saved_files(tmp_path) -> None:
    _write_trial(tmp_path, "train-a", {"model": "wide_densenet_bc40_k36"}, [(0.50, 0.20, 900), (0.40, 0.10, 950)])
    _write_trial(tmp_path, "train-b", {"model": "densenet_bc100_k12"}, [(0.60, 0.30, 1000), (0.45, 0.20, 1000)])
    _write_trial(tmp_path, "train-c", {"model": "wide_densenet_bc40_k60"}, [(0.55, 0.50, 2000)])  # stopped early
    (tmp_path / "trials" / "train-d").mkdir()  # a trial whose run has not written its config yet
    rows = report.collect(str(tmp_path), named_sweep("wide").baseline)
    assert [(r.label, r.params) for r in rows] == [
        ("BC L=100 k=12", 769_162),
        ("Wide-BC L=40 k=36", 1_542_682),
        ("Wide-BC L=40 k=60", 4_261_690),
    ]
    base, wide36, wide60 = rows
    assert (base.final_test_error, base.seconds_per_iteration, base.peak_memory_mb) == (0.45, 0.25, 1000)
    assert wide36.ratios["params"] == 1_542_682 / 769_162
    assert abs(wide36.ratios["final_test_error"] - 0.40 / 0.45) < 1e-12
    assert abs(wide36.ratios["seconds_per_iteration"] - 0.15 / 0.25) < 1e-12
    assert (wide60.epochs_done, wide60.status, base.status) == (1, "running", "complete")
    assert [(r.pareto_time, r.pareto_memory) for r in rows] == [(False, False), (True, True), (False, False)]

    report.save(str(tmp_path), rows, {"name": "wide-test"})
    table = list(csv.DictReader(io.StringIO((tmp_path / "results.csv").read_text())))
    assert [row["label"] for row in table] == ["BC L=100 k=12", "Wide-BC L=40 k=36", "Wide-BC L=40 k=60"]
    assert float(table[1]["params_ratio"]) == wide36.ratios["params"] and table[1]["pareto_time"] == "True"
    summary, again = report.load_saved(str(tmp_path)) or ({}, [])
    assert summary["name"] == "wide-test" and again == rows


def test_render_has_every_column_filled(tmp_path) -> None:
    from rich.console import Console

    _write_trial(tmp_path, "train-a", {"model": "densenet_bc100_k12"}, [(0.5, 0.2, 900), (0.4, 0.1, 950)])
    rows = report.collect(str(tmp_path))
    console = Console(file=io.StringIO(), width=200)
    console.print(report.render(rows, "sweep x"))
    text = console.file.getvalue()
    assert "BC L=100 k=12" in text and "769,162" in text and "40.00" in text and "1.00x" in text
    assert "time/memory" in text and "2/2" in text


def test_plot_marks_the_fronts_and_needs_matplotlib(tmp_path, monkeypatch) -> None:
    _write_trial(tmp_path, "train-a", {"model": "wide_densenet_bc40_k36"}, [(0.40, 0.10, 950)])
    _write_trial(tmp_path, "train-b", {"model": "densenet_bc100_k12"}, [(0.45, 0.20, 1000)])
    rows = report.collect(str(tmp_path))
    report.plot(rows, str(tmp_path / "sweep.png"), "sweep x")
    assert (tmp_path / "sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if it were not installed
    with pytest.raises(ValueError, match=r"--plot needs matplotlib: pip install 'densenet-ray\[plot\]'"):
        report.plot(rows, str(tmp_path / "other.png"), "sweep x")
