"""``densenet-ray plot``: training curves of local and S3 runs in one picture, and one-line errors."""

from __future__ import annotations

import sys

import pytest

from densenet_ray.cli import main
from densenet_ray.cli.plot import draw_curves
from densenet_ray.plotting import pyplot
from densenet_ray.train.run.directory import EpochRecord, RunDirectory

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _write_run(url: str, errors: list[float], ema: bool) -> list[EpochRecord]:
    run = RunDirectory(url)
    records = [
        EpochRecord(
            epoch=i + 1,
            epochs=len(errors),
            step=10 * (i + 1),
            loss=2.0 - 0.3 * i,
            test_error=error,
            ema_test_error=error - 0.01 if ema else None,
        )
        for i, error in enumerate(errors)
    ]
    for record in records:
        run.append(record)
    return records


def test_plot_draws_local_and_s3_runs_into_one_picture(tmp_path, bucket, capsys) -> None:
    _write_run(str(tmp_path / "plain"), [0.6, 0.4, 0.3], ema=False)
    _write_run(f"s3://{bucket}/runs/modern", [0.55, 0.35], ema=True)
    out = tmp_path / "curves.png"
    assert main(["plot", str(tmp_path / "plain"), f"s3://{bucket}/runs/modern", "--out", str(out)]) == 0
    assert out.read_bytes().startswith(PNG_MAGIC)
    assert capsys.readouterr().out.strip() == f"wrote {out} (2 runs)"
    assert [p.name for p in tmp_path.iterdir() if "partial" in p.name] == []  # written whole, nothing left over


def test_the_curves_hold_each_runs_loss_and_errors() -> None:
    plain = [EpochRecord(epoch=e, epochs=2, step=e, loss=1.0 / e, test_error=0.5 / e) for e in (1, 2)]
    modern = [EpochRecord(epoch=1, epochs=1, step=1, loss=0.9, test_error=0.4, ema_test_error=0.3)]
    figure = draw_curves(pyplot("test"), [("plain", plain), ("modern", modern)])
    loss_axis, error_axis = figure.axes
    assert [(line.get_label(), list(line.get_ydata())) for line in loss_axis.lines] == [
        ("plain", [1.0, 0.5]),
        ("modern", [0.9]),
    ]
    lines = {line.get_label(): (list(line.get_xdata()), list(line.get_ydata())) for line in error_axis.lines}
    assert lines == {"plain": ([1, 2], [50.0, 25.0]), "modern": ([1], [40.0]), "modern (EMA)": ([1], [30.0])}


def test_plot_errors_are_one_line(tmp_path, monkeypatch, capsys) -> None:
    assert main(["plot", str(tmp_path / "missing"), "--out", str(tmp_path / "c.png")]) == 1
    assert "error: run '" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["plot", str(tmp_path / "empty"), "--out", str(tmp_path / "c.png")]) == 1
    assert "has no finished epoch yet" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if the [plot] extra were not installed
    assert main(["plot", str(tmp_path / "empty"), "--out", str(tmp_path / "c.png")]) == 1
    error = capsys.readouterr().err
    assert error == "error: densenet-ray plot needs matplotlib: pip install 'densenet-ray[plot]'\n"
    assert not (tmp_path / "c.png").exists()


@pytest.mark.parametrize("extension", ["pdf", "svg"])
def test_the_format_follows_the_extension(tmp_path, extension) -> None:
    _write_run(str(tmp_path / "run"), [0.5], ema=False)
    out = tmp_path / f"curves.{extension}"
    assert main(["plot", str(tmp_path / "run"), "--out", str(out)]) == 0
    assert out.read_bytes().startswith(b"%PDF" if extension == "pdf" else b"<?xml")
