"""What the driver shows while a run trains: plain lines off a terminal (in-epoch reports at most every 10 s), and a
bar in one that never restarts for an epoch already reported."""

from __future__ import annotations

import io
import re

from rich.console import Console

from densenet_ray.train.progress.bar import BarDisplay
from densenet_ray.train.progress.follow import LineDisplay
from densenet_ray.train.run.directory import EpochRecord, ProgressRecord


def _report(epoch: int, batch: int) -> ProgressRecord:
    return ProgressRecord(
        epoch=epoch, batch=batch, batches=100, loss=1.5, images_per_s=200.0, eta_seconds=30.0, time=0.0
    )


def test_a_log_gets_an_in_epoch_line_at_most_every_interval(monkeypatch) -> None:
    clock = iter([100.0, 102.0, 104.0, 111.0])
    monkeypatch.setattr("densenet_ray.train.progress.follow.time.monotonic", lambda: next(clock))
    lines: list[str] = []
    display = LineDisplay(lines.append)
    for batch in (10, 20, 30, 40):  # rank 0 reports every 2 s
        display.progress(_report(1, batch))
    display.record(EpochRecord(epoch=1, epochs=2, step=100, loss=1.4, test_error=0.5, best_test_error=0.5))
    assert [line.split(":")[0] for line in lines] == ["epoch 1 [10/100]", "epoch 1 [40/100]", "epoch 1/2"]


def test_the_bar_follows_the_epoch_and_a_late_report_of_a_finished_epoch_starts_none() -> None:
    screen = io.StringIO()
    display = BarDisplay(Console(file=screen, force_terminal=True, width=120))
    display.progress(_report(1, 50))
    display.record(EpochRecord(epoch=1, epochs=2, step=100, loss=1.4, test_error=0.5, best_test_error=0.5))
    display.progress(_report(1, 100))  # written before the record, read after it
    assert display.task is None
    display.progress(_report(2, 10))
    assert display.task is not None and display.epoch == 2
    display.close()
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen.getvalue())
    assert "epoch 1/2: loss 1.4000, test error 50.00 %" in plain and "epoch 2" in plain
