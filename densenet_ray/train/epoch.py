"""One epoch of a worker, as its arguments say: train the state's model over the epoch's batches with the epoch's
learning-rate schedule, batch mixing and frozen backbone, evaluate it exactly, and advance the state's position.
Pure PyTorch, no Ray: the worker loop (``train/worker.py``) builds the parts, turns the outcome into the epoch
record and reports it."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from densenet_ray.data.reading.epoch_plan import mix
from densenet_ray.data.reading.pipeline import Loader
from densenet_ray.train.checkpoint.state import TrainingState, unwrap
from densenet_ray.train.config.options import TrainConfig
from densenet_ray.train.engine import (
    NOTHING_FROZEN,
    EvalStats,
    Frozen,
    StepContext,
    TrainStats,
    evaluate_each,
    train_epoch,
)
from densenet_ray.train.metrics import multi_label_report, multi_label_summary
from densenet_ray.train.recipe import BatchMixer, backbone
from densenet_ray.train.schedule import learning_rate, mean_rate

WARMUP_STEPS = 5  # steady-state throughput leaves out each epoch's first steps (allocator, loader start-up)


@dataclass(frozen=True)
class EpochSchedule:
    """The learning rate over one 0-indexed ``epoch`` of ``optimizer_steps`` steps: ``schedule(i)`` is step ``i``'s
    (:func:`~densenet_ray.train.schedule.learning_rate` of the resolved ``options``) times ``scale`` (lowered by each
    rollback after non-finite steps)."""

    options: TrainConfig
    epoch: int
    optimizer_steps: int
    scale: float = 1.0

    def __call__(self, step: int) -> float:
        return learning_rate(self.options, self.epoch, step, self.optimizer_steps) * self.scale

    def mean(self) -> float:
        """The rate's mean over the epoch's optimizer steps."""
        return mean_rate(self.options, self.epoch, self.optimizer_steps) * self.scale


def epoch_mixer(mixer: BatchMixer | None, epoch: int, rank: int) -> BatchMixer | None:
    """``mixer`` seeded per epoch, batch and rank: a resumed run mixes each batch as an uninterrupted one did."""
    if mixer is None:
        return None
    return lambda index, images, labels: mixer(mix(epoch, index, rank), images, labels)


def frozen_in(model: nn.Module, epoch: int, freeze_epochs: int) -> Frozen:
    """What 0-indexed ``epoch`` holds still: the backbone in the first ``freeze_epochs`` epochs, else nothing."""
    return Frozen(*backbone(unwrap(model))) if epoch < freeze_epochs else NOTHING_FROZEN


@dataclass(frozen=True)
class EpochData:
    """One rank's data for one epoch.

    Attributes:
        train: the training batches, from the position's batch on.
        steps: the batches the epoch trains (its last index + 1; ``--limit-train-batches`` applied).
        evaluation: makes the evaluation batches (after training, so the two loaders never run at once).
        eval_batches: at most this many evaluation batches (0: all).
        classes: multi-label data's class names, whose ranking figures are computed; None for single-label data.
    """

    train: Loader
    steps: int
    evaluation: Callable[[], Loader]
    eval_batches: int = 0
    classes: list[str] | None = None


@dataclass(frozen=True)
class EpochOutcome:
    """What one epoch measured on this rank.

    Attributes:
        stats: the training pass's sums.
        results: the evaluation of the raw weights and, with a moving average, of the average.
        train_seconds: the training pass's wall time.
        steady: samples and seconds after the first :data:`WARMUP_STEPS` steps; None when the epoch had no more.
        lr: the schedule's rate at the epoch's last optimizer step (the classifier's).
        mean_lr: the rate's mean over the epoch.
        skipped: samples that failed to decode, training and evaluation.
        bad_steps: optimizer steps skipped because a loss or gradient was not finite.
    """

    stats: TrainStats
    results: list[EvalStats]
    train_seconds: float
    steady: tuple[int, float] | None
    lr: float
    mean_lr: float
    skipped: int
    bad_steps: int = 0


def train_and_evaluate(
    context: StepContext,
    state: TrainingState,
    schedule: EpochSchedule,
    mixer: BatchMixer | None,
    frozen: Frozen,
    data: EpochData,
    on_step: Callable[[int, TrainStats], None],
) -> EpochOutcome:
    """Train ``context``'s model (``state``'s) over ``data`` from ``state``'s position, each optimizer step at
    ``schedule``'s rate, batches mixed by ``mixer`` (None: not mixed), ``frozen`` held still, ``on_step(i, stats)``
    after each batch; then evaluate it (and its moving average) and move the position to the next epoch's start."""
    warm: list[tuple[float, int]] = []  # (time, samples) after the warm-up steps

    def after(index: int, stats: TrainStats) -> None:
        if stats.steps == WARMUP_STEPS:
            warm.append((time.perf_counter(), stats.samples))
        on_step(index, stats)

    started, position = time.perf_counter(), state.position
    stats = train_epoch(
        context,
        data.train,
        schedule=schedule,
        mixer=mixer,
        frozen=frozen,
        max_steps=data.steps,
        first_step=position.next_batch,
        on_step=after,
    )
    ended = time.perf_counter()
    evaluation = data.evaluation()
    results = _evaluated(context, state, evaluation, data)
    position.best_error = min(position.best_error, results[0].main_error)
    position.epoch, position.next_batch, position.history = schedule.epoch + 1, 0, ()
    steady = (stats.samples - warm[0][1], ended - warm[0][0]) if warm and stats.steps > WARMUP_STEPS else None
    first = state.optimizer.param_groups[0]
    rate = first["lr"] / first.get("lr_scale", 1.0)  # the schedule's rate (the classifier's)
    skipped = data.train.skipped + evaluation.skipped
    bad_steps = 0
    if context.guard is not None:
        bad_steps, context.guard.skipped = context.guard.skipped, 0
    return EpochOutcome(stats, results, ended - started, steady, rate, schedule.mean(), skipped, bad_steps)


def _evaluated(context: StepContext, state: TrainingState, batches: Loader, data: EpochData) -> list[EvalStats]:
    """The raw weights' evaluation and their moving average's (every rank's BatchNorm statistics rank 0's first);
    multi-label data's ranking figures from every rank's predictions gathered."""
    models = [state.model]
    if state.average is not None:
        state.average.synchronise()
        models.append(state.average.module)
    results = evaluate_each(context, models, batches, data.eval_batches)
    if data.classes is not None:
        for result in results:
            assert result.outputs is not None
            result.ranking = multi_label_summary(multi_label_report(*result.outputs, data.classes))
    return results
