"""What a worker tells the outside while it trains: rank 0's in-epoch progress file, the per-epoch record (typed until
it is reported), and the fault injection the recovery tests use."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import resource
import time
from dataclasses import dataclass, field
from typing import Any

import torch

from densenet_ray.data.storage import LocalStorage, StorageError
from densenet_ray.train.acceleration import Acceleration
from densenet_ray.train.checkpoint.state import Position
from densenet_ray.train.engine import EvalStats, TrainStats
from densenet_ray.train.epoch import EpochOutcome
from densenet_ray.train.run.directory import EpochRecord, MidEpochRecord, ProgressRecord, RunDirectory

FAULT_ENV = "DENSENET_RAY_FAULT"  # "STEP:RANK:MARKER_FILE": kill that rank once at that global step


class InEpochProgress:
    """Rank 0 rewrites ``progress.json`` after an epoch's first step and then every ``interval`` seconds (2 s on
    local storage, where the driver's progress bar reads it; 10 s on S3, a request each); the driver and the
    dashboard show it. Reports to Ray would each wait for a controller poll, so in-epoch progress goes through
    storage instead.

    Speed and ETA count from the end of the epoch's first step: that step carries start-up and compilation (a
    minute or more), and a rate over it read as "1.1 img/s, ETA 683 min" in a run that trains at 150 img/s. The
    first report has neither (None) and says how long the first step took instead."""

    def __init__(self, run_url: str, interval: float | None = None) -> None:
        self.run = RunDirectory(run_url)
        local = isinstance(self.run.storage, LocalStorage)
        self.interval = interval if interval is not None else 2.0 if local else 10.0
        self.new_epoch()

    def new_epoch(self) -> None:
        self.started = self.last = time.perf_counter()
        self.first = True
        self.measured_from: tuple[float, int, int] | None = None  # (time, samples, steps) after the first step

    def update(self, epoch: int, batch: int, batches: int, stats: TrainStats, world: int) -> None:
        now = time.perf_counter()
        if now - self.last < self.interval and not self.first:
            return
        self.first = False
        self.last = now
        rate = eta = None
        if self.measured_from is None:
            self.measured_from = (now, stats.samples, stats.steps)
        elif stats.steps > self.measured_from[2]:
            since, samples, steps = self.measured_from
            elapsed = max(now - since, 1e-9)
            rate = (stats.samples - samples) * world / elapsed
            eta = elapsed / (stats.steps - steps) * (batches - batch)
        record = ProgressRecord(
            epoch=epoch + 1,
            batch=batch,
            batches=batches,
            loss=stats.loss,
            images_per_s=rate,
            eta_seconds=eta,
            time=time.time(),
            first_step_seconds=now - self.started if rate is None else None,
        )
        with contextlib.suppress(StorageError, OSError):  # progress display only; never fail training over it
            self.run.write_progress(record)


def peak_memory_mb(device: torch.device) -> float:
    """The process's peak memory: CUDA's allocator peak on a GPU, the resident set's peak on a CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@dataclass
class Attempt:
    """One start of the worker group as this rank sees it: its rank and world size, its device and how its steps
    run, and when its first optimizer step finished (wall clock, and seconds from the start: model build, compile,
    warm-up; None once said, so only the attempt's first epoch record carries it)."""

    rank: int
    world: int
    device: torch.device
    acceleration: Acceleration
    started: float = field(default_factory=time.perf_counter)
    first_step_time: float = 0.0
    first_step_seconds: float | None = None


def epoch_record(attempt: Attempt, position: Position, epochs: int, outcome: EpochOutcome) -> EpochRecord:
    """The :class:`EpochRecord` of the epoch before ``position.epoch`` (``position`` as the epoch left it) of a run of
    ``epochs``: its ``outcome`` on this rank, rates over all of the attempt's ranks."""
    stats, train_seconds, world = outcome.stats, outcome.train_seconds, attempt.world
    images_per_s = stats.samples * world / max(train_seconds, 1e-9)
    steady = None if outcome.steady is None else outcome.steady[0] * world / max(outcome.steady[1], 1e-9)
    result, average = outcome.results[0], outcome.results[1] if len(outcome.results) > 1 else None
    return EpochRecord(
        epoch=position.epoch,
        epochs=epochs,
        step=position.global_step,
        loss=stats.loss,
        train_error=stats.error,
        test_loss=result.loss,
        test_error=result.main_error,
        test_top5_error=result.top5_error if result.ranking is None else None,
        best_test_error=position.best_error,
        test_samples=result.samples,
        ema_test_loss=average.loss if average else None,
        ema_test_error=average.main_error if average else None,
        ema_test_top5_error=average.top5_error if average and average.ranking is None else None,
        **_ranking(result, average),
        lr=outcome.lr,
        mean_lr=outcome.mean_lr,
        images_per_s=images_per_s,
        steady_images_per_s=images_per_s if steady is None else steady,
        first_step_time=attempt.first_step_time,
        first_step_seconds=attempt.first_step_seconds,
        acceleration=attempt.acceleration.describe(),
        seconds_per_iteration=train_seconds / max(stats.steps, 1),
        epoch_seconds=train_seconds,
        data_wait_fraction=stats.data_seconds / max(train_seconds, 1e-9),
        skipped_samples=outcome.skipped,
        bad_steps=outcome.bad_steps,
        peak_memory_mb=peak_memory_mb(attempt.device),
        world_size=world,
    )


def reported(record: EpochRecord | MidEpochRecord) -> dict[str, Any]:
    """A record as the metrics a worker reports to Ray (fields without a value left out); the driver turns them back
    into the record (``run.directory.record_from_metrics``) to write its ``metrics.jsonl`` line."""
    return {key: value for key, value in dataclasses.asdict(record).items() if value is not None}


def _ranking(result: EvalStats, average: EvalStats | None) -> dict[str, Any]:
    """A multi-label evaluation's figures as epoch-record fields (none for single-label data)."""
    if result.ranking is None:
        return {}
    ranking = result.ranking
    figures = {"test_auroc": ranking["auroc"], "test_map": ranking["map"], "test_f1": ranking["f1"]}
    figures["test_auroc_by_class"] = ranking["auroc_by_class"]
    if average is not None and average.ranking is not None:
        figures["ema_test_auroc"] = average.ranking["auroc"]
    return figures


def maybe_inject_fault(global_step: int, rank: int) -> None:
    """Fault injection for testing recovery: the process dies as a crashed or preempted worker would."""
    spec = os.environ.get(FAULT_ENV)
    if not spec:
        return
    step, fault_rank, marker = spec.split(":", 2)
    if global_step == int(step) and rank == int(fault_rank) and not os.path.exists(marker):
        with open(marker, "w") as handle:  # once only: the restarted worker must get past this step
            handle.write(str(global_step))
        os._exit(1)
