"""The driver's progress lines while a run trains: one per epoch record, and in-epoch lines from rank 0's progress
file, read from the run directory (so they work the same for local and ``s3://`` storage)."""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Protocol

from densenet_ray.data.storage import StorageError
from densenet_ray.printing import PrintLine
from densenet_ray.train.run.directory import (
    AttemptRecord,
    EpochRecord,
    MidEpochRecord,
    PreemptionRecord,
    ProfileRecord,
    ProgressRecord,
    Record,
    RunDirectory,
)
from densenet_ray.train.run.record_shapes import epoch_wall_seconds


def progress_line(p: ProgressRecord) -> str:
    """``epoch 3 [120/703]: loss 1.2345, 152.3 img/s, epoch ETA 4.1 min``; after the first step alone, its time."""
    if p.images_per_s is None or p.eta_seconds is None:
        took = f" took {p.first_step_seconds:.1f} s" if p.first_step_seconds is not None else " done"
        return f"epoch {p.epoch} [{p.batch}/{p.batches}]: loss {p.loss:.4f}, first step{took}; speed and ETA follow"
    return (
        f"epoch {p.epoch} [{p.batch}/{p.batches}]: loss {p.loss:.4f}, {p.images_per_s:.1f} img/s, "
        f"epoch ETA {p.eta_seconds / 60:.1f} min"
    )


def epoch_line(record: EpochRecord, previous: EpochRecord | None = None) -> str:
    """The epoch's summary: the steady speed (without the first steps, which carry start-up and compilation) and,
    while epochs remain, the run's ETA (:func:`epoch_wall_seconds` from the ``previous`` epoch's record, as the
    dashboard counts it); the first epoch of an attempt also says how it runs and how long its first step took."""
    remaining = (record.epochs - record.epoch) * (epoch_wall_seconds(record, previous) or 0.0)
    line = (
        f"epoch {record.epoch}/{record.epochs}: loss {record.loss:.4f}, {_test_figures(record)}, "
        f"{record.steady_images_per_s or record.images_per_s or 0:.1f} img/s"
    )
    if record.epoch < record.epochs and not record.stopped:
        line += f", run ETA {remaining / 60:.1f} min"
    if record.first_step_seconds is not None:  # only in the epoch where an attempt started
        line += f" ({record.acceleration}; first step {record.first_step_seconds:.1f} s after the worker started)"
    if record.stopped:
        line += f"\nstopped at epoch {record.epoch} of {record.epochs}: {record.stopped}"
    return line


def _test_figures(record: EpochRecord) -> str:
    """``test error 5.12 % (best 5.01 %, EMA 4.90 %)``, or for multi-label data ``test AUROC 0.8123 (best ...)``."""
    if record.test_auroc is not None:
        ema = f", EMA {record.ema_test_auroc:.4f}" if record.ema_test_auroc is not None else ""
        mean_ap = f", mAP {record.test_map:.4f}" if record.test_map is not None else ""
        return f"test AUROC {record.test_auroc:.4f} (best {1 - (record.best_test_error or 1):.4f}{ema}){mean_ap}"
    ema = f", EMA {100 * record.ema_test_error:.2f} %" if record.ema_test_error is not None else ""
    return f"test error {100 * (record.test_error or 0):.2f} % (best {100 * (record.best_test_error or 0):.2f} %{ema})"


def mid_epoch_line(record: MidEpochRecord) -> str:
    return f"epoch {record.epoch + 1} step {record.step}: loss {record.loss:.4f}"


def attempt_line(record: AttemptRecord) -> str:
    """``started on 2 worker(s) at the start of epoch 1``, ``resumed on 1 worker(s) in epoch 2, after its first 3
    batch(es)``: where a worker group starts, in words a newcomer reads right (a bare batch index read as a size)."""
    verb = "resumed" if record.resumed else "started"
    if record.batch == 0:
        return f"{verb} on {record.world_size} worker(s) at the start of epoch {record.epoch + 1}"
    where = f"in epoch {record.epoch + 1}, after its first {record.batch} batch(es)"
    return f"{verb} on {record.world_size} worker(s) {where}"


def profile_lines(record: ProfileRecord) -> str:
    """Rank 0's ``--profile-steps`` summary: the shares, where the traces are, then the top operators."""
    lines = [
        f"profile of steps {record.first}-{record.last} ({record.seconds:.2f} s on rank 0): data loader "
        f"{100 * record.data_share:.1f} %, DDP communication {100 * record.communication_share:.1f} % (overlapping "
        "backward)",
        f"  every rank's trace: {record.traces}",
        f"  {'operator' if record.device == 'CPU' else 'kernel':<56} {'self ms':>10} {'share':>7} {'calls':>6}",
    ]
    for name, milliseconds, share, calls in record.operators:
        shown = name if len(name) <= 56 else name[:55] + "…"
        lines.append(f"  {shown:<56} {milliseconds:>10.1f} {100 * share:>6.1f}% {calls:>6}")
    return "\n".join(lines)


def preemption_line(record: PreemptionRecord) -> str:
    """The notice: which nodes go and when, and where the checkpoint written at once stands."""
    nodes = ", ".join(node[:12] for node in record.nodes)
    left = max(record.deadline - (record.time or time.time()), 0.0)
    return (
        f"preemption notice: node(s) {nodes} (rank(s) {', '.join(map(str, record.ranks))}) go in {left:.0f} s; "
        f"checkpointed at epoch {record.epoch + 1} step {record.step}, training on until then"
    )


def record_line(record: Record, previous: EpochRecord | None = None) -> str:
    """A record's line; ``previous``: the epoch record before it, for the run ETA of an epoch line."""
    if isinstance(record, AttemptRecord):
        return attempt_line(record)
    if isinstance(record, PreemptionRecord):
        return preemption_line(record)
    if isinstance(record, ProfileRecord):
        return profile_lines(record)
    return mid_epoch_line(record) if isinstance(record, MidEpochRecord) else epoch_line(record, previous)


class EpochHistory:
    """A display's memory of the last epoch record it showed, so each epoch line's run ETA counts wall time."""

    def __init__(self) -> None:
        self.last: EpochRecord | None = None

    def line(self, record: Record) -> str:
        """``record``'s line, remembering it when it is an epoch's."""
        text = record_line(record, self.last)
        if isinstance(record, EpochRecord):
            self.last = record
        return text


class Display(Protocol):
    """Where a :class:`Follower` shows a run's progress."""

    def progress(self, progress: ProgressRecord) -> None: ...

    def record(self, record: Record) -> None: ...

    def close(self) -> None: ...


class LineDisplay:
    """Progress as plain lines (off a terminal: logs, pipes, ``ray job logs``): every record, and an in-epoch report
    at most every ``interval`` seconds (rank 0 reports every 2 s for the terminal's bar; a log needs fewer)."""

    def __init__(self, print_line: PrintLine, interval: float = 10.0) -> None:
        self.print_line, self.interval = print_line, interval
        self._last = float("-inf")
        self.epochs = EpochHistory()

    def progress(self, progress: ProgressRecord) -> None:
        now = time.monotonic()
        if now - self._last >= self.interval:
            self._last = now
            self.print_line(progress_line(progress))

    def record(self, record: Record) -> None:
        self.print_line(self.epochs.line(record))

    def close(self) -> None:
        """Nothing is left on screen to take down."""


class Follower:
    """A daemon thread showing new records every second until :meth:`stop` (which shows what is left), on a
    ``display`` (:class:`LineDisplay`, or ``progress.bar.BarDisplay`` in a terminal)."""

    def __init__(self, run_url: str, display: Display) -> None:
        self.run, self.display = RunDirectory(run_url), display
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="follow-run", daemon=True)
        self._seen = 0  # records already printed (or written by an earlier attempt); metrics.jsonl only grows
        self._last_progress: ProgressRecord | None = None

    def start(self) -> None:
        self._seen = self._count()
        self._last_progress = self.run.progress()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        self.display.close()

    def _records(self) -> list[Record]:
        return sorted(self.run.records(), key=lambda record: record.time or 0.0)

    def _count(self) -> int:
        return len(self._records())

    def _loop(self) -> None:
        while True:
            stopping = self._stop.wait(1.0)
            # A file being replaced or a storage hiccup: the next poll reads it.
            with contextlib.suppress(StorageError, OSError, ValueError):
                self._poll()
            if stopping:
                return

    def _poll(self) -> None:
        progress = self.run.progress()
        if progress is not None and progress != self._last_progress:
            self._last_progress = progress
            self.display.progress(progress)
        records = self._records()
        for record in records[self._seen :]:
            self.display.record(record)
        self._seen = len(records)
