"""The training driver's progress in a terminal: a rich progress bar of the epoch's batches (images/s, loss, the
epoch's ETA) under one line per finished epoch. Off a terminal the driver prints plain lines instead
(``follow.LineDisplay``)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn

from densenet_ray.train.progress.follow import EpochHistory
from densenet_ray.train.run.directory import EpochRecord, ProgressRecord, Record


def _eta(seconds: float) -> str:
    minutes, seconds = divmod(int(seconds), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{seconds:02d}" if minutes >= 60 else f"{minutes}:{seconds:02d}"


class BarDisplay:
    """One bar for the running epoch, fed from rank 0's progress reports; records print above it."""

    def __init__(self, console: Console) -> None:
        self.bar = Progress(
            TextColumn("[bold]epoch {task.fields[epoch]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("batches  {task.fields[rate]} img/s  loss {task.fields[loss]:.4f}"),
            TextColumn("epoch ETA {task.fields[eta]}"),
            console=console,
            transient=True,  # the bar goes when the run ends; the epoch lines and the summary stay
        )
        self.task: TaskID | None = None
        self.epoch = 0
        self.finished = 0  # the last epoch whose record was shown: a late report of it starts no bar
        self.epochs = EpochHistory()

    def progress(self, report: ProgressRecord) -> None:
        if report.epoch <= self.finished:
            return
        rate = "…" if report.images_per_s is None else f"{report.images_per_s:.1f}"  # None: only the first step yet
        eta = "…" if report.eta_seconds is None else _eta(report.eta_seconds)
        fields: dict[str, Any] = {"epoch": report.epoch, "rate": rate, "loss": report.loss, "eta": eta}
        if self.task is None or report.epoch != self.epoch:
            self._drop_task()
            self.bar.start()
            self.task, self.epoch = self.bar.add_task("", total=report.batches, **fields), report.epoch
        self.bar.update(self.task, completed=report.batch, total=report.batches, **fields)

    def record(self, record: Record) -> None:
        self.bar.console.print(self.epochs.line(record), markup=False)
        if isinstance(record, EpochRecord):
            self.finished = max(self.finished, record.epoch)
            if record.epoch == self.epoch:
                self._drop_task()  # that epoch is done; the next report starts the next bar

    def close(self) -> None:
        self._drop_task()
        self.bar.stop()

    def _drop_task(self) -> None:
        if self.task is not None:
            self.bar.remove_task(self.task)
            self.task = None
