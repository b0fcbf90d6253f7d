"""``densenet-ray models``: the table, the JSON listing, ``show`` and its errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from densenet_ray.cli import main
from tests.models.test_counts import EXPECTED_PARAMS


def test_json_lists_all_sixteen_models_with_exact_counts(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {row["name"]: row["params"] for row in rows} == EXPECTED_PARAMS
    by_name = {row["name"]: row for row in rows}
    assert by_name["densenet_bc100_k12"]["num_classes"] == 10
    assert by_name["densenet121"]["num_classes"] == 1000
    assert by_name["densenet121"]["macs"] == pytest.approx(2.834e9, rel=1e-3)


def test_table_shows_every_model(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for name, params in EXPECTED_PARAMS.items():
        assert name in out and f"{params:,}" in out
    assert "287.9 M" in out and "2.834 G" in out


def test_show_prints_the_stages(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "show", "densenet121", "--num-classes", "10", "--memory-efficient"]) == 0
    out = capsys.readouterr().out
    for stage in ("conv0", "pool0", "denseblock4", "transition3", "norm5", "classifier"):
        assert stage in out
    assert "memory-efficient on" in out and "10 classes" in out
    assert f"{7_978_856 - 1000 * 1024 - 1000 + 10 * 1024 + 10:,}" in out


def test_show_unknown_model_is_one_line_exit_1() -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "densenet_ray", "models", "show", "densenet122"], capture_output=True, text=True
    )
    assert completed.returncode == 1
    assert completed.stderr.strip().count("\n") == 0
    assert completed.stderr.startswith("error: unknown model 'densenet122'; choose one of: densenet40_k12")
    assert "Traceback" not in completed.stderr


def test_bad_class_count_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "show", "densenet121", "--num-classes", "0"]) == 1
    assert capsys.readouterr().err.strip() == "error: num_classes 0 must be a positive integer"


def test_console_script_is_installed() -> None:
    completed = subprocess.run(
        [str(Path(sys.executable).parent / "densenet-ray"), "--version"], capture_output=True, text=True
    )
    assert completed.returncode == 0 and completed.stdout.startswith("densenet-ray ")
