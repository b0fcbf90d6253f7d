"""What the driver shows while a run trains: plain lines off a terminal (in-epoch reports at most every 10 s), and a
bar in one that never restarts for an epoch already reported."""

from __future__ import annotations

import dataclasses
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


def test_a_worker_group_start_says_where_in_the_epoch_it_starts_never_a_bare_batch_index() -> None:
    """ "global batch 0" read as a batch size of 0: the line says the start of the epoch, or how far into it."""
    from densenet_ray.train.progress.follow import attempt_line
    from densenet_ray.train.run.directory import AttemptRecord

    fresh = AttemptRecord(world_size=2, epoch=0, batch=0, resumed=False)
    assert attempt_line(fresh) == "started on 2 worker(s) at the start of epoch 1"
    mid = AttemptRecord(world_size=1, epoch=1, batch=3, resumed=True)
    assert attempt_line(mid) == "resumed on 1 worker(s) in epoch 2, after its first 3 batch(es)"


def test_speed_and_eta_count_from_the_end_of_the_first_step_which_carries_start_up(tmp_path, monkeypatch) -> None:
    """A first step of 60 s (compilation) then 0.5 s steps: the first report says how long the first step took, with
    no speed; later ones the steady speed, never a rate diluted by the compile ("1.1 img/s, ETA 683 min")."""
    from densenet_ray.train.progress.follow import progress_line
    from densenet_ray.train.progress.records import InEpochProgress
    from densenet_ray.train.run.directory import RunDirectory

    clock = iter([1000.0, 1060.0, 1065.0])  # the epoch starts; the first step ends; 10 more steps end
    monkeypatch.setattr("densenet_ray.train.progress.records.time.perf_counter", lambda: next(clock))
    writer = InEpochProgress(str(tmp_path), interval=2.0)

    class Stats:  # what the engine counts: this rank's samples and steps so far
        loss, samples, steps = 2.3, 32, 1

    writer.update(0, 1, 703, Stats(), world=2)
    first = RunDirectory(str(tmp_path)).progress()
    assert first is not None and first.images_per_s is None and first.first_step_seconds == 60.0
    assert progress_line(first) == "epoch 1 [1/703]: loss 2.3000, first step took 60.0 s; speed and ETA follow"
    Stats.samples, Stats.steps = 32 * 11, 11
    writer.update(0, 11, 703, Stats(), world=2)
    later = RunDirectory(str(tmp_path)).progress()
    assert later is not None and later.images_per_s == 2 * 320 / 5.0 and later.first_step_seconds is None
    assert later.eta_seconds == 0.5 * (703 - 11)


def test_the_bar_shows_no_speed_until_one_is_measured() -> None:
    screen = io.StringIO()
    display = BarDisplay(Console(file=screen, force_terminal=True, width=120))
    report = ProgressRecord(epoch=1, batch=1, batches=100, loss=2.3, images_per_s=None, eta_seconds=None, time=0.0)
    display.progress(report)
    display.close()
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen.getvalue())
    assert "/100 batches  … img/s  loss 2.3000 epoch ETA …" in plain  # the epoch's batches and its ETA


def test_an_epoch_line_gives_the_steady_speed_and_an_eta_only_while_epochs_remain() -> None:
    from densenet_ray.train.progress.follow import epoch_line

    middle = EpochRecord(epoch=1, epochs=3, step=10, loss=1.5, test_error=0.4, best_test_error=0.4, epoch_seconds=60.0)
    middle = dataclasses.replace(middle, images_per_s=90.0, steady_images_per_s=150.0)
    assert epoch_line(middle).endswith("150.0 img/s, run ETA 2.0 min")
    # With the epoch before it, an epoch takes the wall time between their records (evaluation and checkpoint too),
    # as the dashboard's run ETA counts it.
    before, timed = dataclasses.replace(middle, epoch=0, time=1000.0), dataclasses.replace(middle, time=1090.0)
    assert epoch_line(timed, before).endswith("150.0 img/s, run ETA 3.0 min")
    last = dataclasses.replace(middle, epoch=3)
    assert epoch_line(last).endswith("(best 40.00 %), 150.0 img/s")
