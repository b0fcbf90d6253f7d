"""One training epoch and one exact evaluation pass: pure PyTorch, no Ray (the worker loop calls these).

What stays the same for a whole run (the model, its optimizer, the numerics) is a :class:`StepContext`, built once;
what changes from epoch to epoch (the learning rate of each step, the batch mixing, the frozen backbone) is passed to
:func:`train_epoch` as its arguments.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from densenet_ray.train.nonfinite import StepGuard, skip_step
from densenet_ray.train.profiling import DATA_WAIT
from densenet_ray.train.recipe import BatchMixer, gradients_kept_local
from densenet_ray.train.run.record_shapes import TOP5_CLASSES


@dataclass
class TrainStats:
    """What one training pass measured (sums, so passes and ranks can be combined).

    The loss and hit sums accumulate on the training device and are read only when asked for (``loss``,
    ``error``): reading a GPU tensor waits for every queued kernel, so the step loop itself never does.
    """

    samples: int = 0
    steps: int = 0
    data_seconds: float = 0.0
    sums: torch.Tensor | None = None  # (loss sum, correct), float64 on the device

    def add(self, loss_sum: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor) -> None:
        """Count one batch's summed loss and top-1 hits (multi-label: rows whose every class is predicted right at
        probability 0.5) without a host sync."""
        hits = ((logits >= 0) == (labels >= 0.5)).all(1) if labels.dim() == 2 else logits.argmax(1) == labels
        batch = torch.stack([loss_sum.double(), hits.sum().double()])
        self.sums = batch if self.sums is None else self.sums.add_(batch)
        self.samples += len(labels)
        self.steps += 1

    @property
    def loss_sum(self) -> float:
        return 0.0 if self.sums is None else float(self.sums[0])

    @property
    def correct(self) -> int:
        return 0 if self.sums is None else round(float(self.sums[1]))

    @property
    def loss(self) -> float:
        return self.loss_sum / max(self.samples, 1)

    @property
    def error(self) -> float:
        return 1.0 - self.correct / max(self.samples, 1)


@dataclass
class EvalStats:
    """Exact evaluation over every sample once: top-1 error, top-5 error (None for multi-label data and for 5
    classes or fewer, where every label is in the top 5) and mean loss; with ``keep_outputs``, every sample's logits
    and label (``outputs``, on the CPU, gathered from all ranks)."""

    loss: float
    top1_error: float
    top5_error: float | None
    samples: int
    outputs: tuple[torch.Tensor, torch.Tensor] | None = None
    ranking: dict[str, Any] | None = None  # multi-label: mean AUROC, mAP, F1, AUROC by class (train/metrics.py)

    @property
    def main_error(self) -> float:
        """The error runs are ranked by: top-1 error, or for multi-label data 1 - mean AUROC."""
        return 1.0 - self.ranking["auroc"] if self.ranking is not None else self.top1_error


AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}  # fp32: no autocast


def _autocast(device: torch.device, dtype: torch.dtype | None):  # noqa: ANN202 - a context manager
    return torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None)


@dataclass
class StepContext:
    """What every step of a pass needs besides the batches.

    Attributes:
        model: the (possibly DDP-wrapped, compiled) model.
        device: where batches go.
        precision: ``fp32``, or ``bf16`` / ``fp16`` autocast (BatchNorm statistics and the loss stay fp32).
        channels_last: convert each batch to channels-last memory format.
        optimizer: training only.
        scaler: the fp16 gradient scaler, or None.
        rows_per_rank: the global batch divided by the world size. A rank's loss is its summed sample losses over
            this, so DDP's gradient average is the mean over the global batch even when ranks hold unequal shares
            (and a sample that failed to decode drops out without raising the others' weight). None: the batch mean.
        settings: how each step trains beyond the paper's plain step (:class:`StepSettings`); the default is the
            paper's plain step.
        guard: skips the optimizer steps whose loss or gradients are not finite on some rank (None: every step is
            applied).
    """

    model: nn.Module
    device: torch.device
    precision: str = "fp32"
    channels_last: bool = False
    optimizer: torch.optim.Optimizer | None = None
    scaler: torch.amp.GradScaler | None = None
    rows_per_rank: float | None = None
    settings: StepSettings = field(default_factory=lambda: StepSettings())
    guard: StepGuard | None = None
    autocast_dtype: torch.dtype | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.autocast_dtype = AUTOCAST_DTYPES.get(self.precision)  # once, not on every step

    def to_device(self, images: torch.Tensor) -> torch.Tensor:
        images = images.to(self.device, non_blocking=True)
        return images.contiguous(memory_format=torch.channels_last) if self.channels_last else images


@dataclass
class StepSettings:
    """How each training step computes its loss and updates the weights beyond the paper's plain step, the same in
    every epoch: the modern recipe's parts, multi-label and weighted losses.

    Attributes:
        label_smoothing: ``F.cross_entropy``'s ``label_smoothing``.
        accumulate: batches whose gradients add up to one optimizer step (DDP synchronises only the last).
        clip_grad_norm: the gradients' largest total 2-norm before each optimizer step (0: no clipping).
        after_optimizer_step: called after every optimizer step (the weights' moving average), or None.
        multi_label: targets are multi-hot rows, the loss ``binary_cross_entropy_with_logits`` summed over classes.
        loss_weights: per class, cross entropy's ``weight`` (``--class-weights``) or, multi-label, the positive
            samples' ``pos_weight`` (``--pos-weight``); None weighs every class alike.
    """

    label_smoothing: float = 0.0
    accumulate: int = 1
    clip_grad_norm: float = 0.0
    after_optimizer_step: Callable[[], None] | None = None
    multi_label: bool = False
    loss_weights: torch.Tensor | None = None


@dataclass(frozen=True)
class Frozen:
    """What an epoch holds still (a fine-tuning run's backbone in ``--freeze-epochs``; ``recipe.backbone`` finds it).

    Attributes:
        parameters: left as they are by the optimizer: their gradients are dropped before each step, so neither
            momentum nor weight decay touches them.
        norms: normalisation layers kept in evaluation mode while training (their statistics stay fixed).
    """

    parameters: tuple[nn.Parameter, ...] = ()
    norms: tuple[nn.Module, ...] = ()


NOTHING_FROZEN = Frozen()


def training_loss(settings: StepSettings, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The summed training loss of a batch: weighted cross entropy (with label smoothing; soft targets from
    MixUp/CutMix), or binary cross entropy over every class of multi-label targets."""
    if settings.multi_label:
        return F.binary_cross_entropy_with_logits(logits, targets, pos_weight=settings.loss_weights, reduction="sum")
    return F.cross_entropy(
        logits, targets, weight=settings.loss_weights, reduction="sum", label_smoothing=settings.label_smoothing
    )


def _backward(
    context: StepContext,
    mixer: BatchMixer | None,
    index: int,
    batch: tuple[torch.Tensor, torch.Tensor],
    share: int,
    last: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One batch's forward and backward (images mixed by ``mixer`` under the batch's ``index``), its loss weighted as
    ``1 / share`` of the optimizer step's; returns the summed loss and the logits (detached)."""
    settings = context.settings
    images, labels = batch
    targets = labels
    if mixer is not None:
        images, targets = mixer(index, images, labels)
    with gradients_kept_local(context.model, not last):
        with _autocast(context.device, context.autocast_dtype):
            logits = context.model(images)
        loss_sum = training_loss(settings, logits.float(), targets)
        loss = loss_sum / ((context.rows_per_rank or len(labels)) * share)
        (context.scaler.scale(loss) if context.scaler is not None else loss).backward()
    return loss_sum.detach(), logits.detach()


def _optimizer_step(context: StepContext, frozen: Frozen) -> None:
    """Clip (after unscaling fp16 gradients), step, and clear the gradients for the next optimizer step."""
    optimizer, scaler, settings = context.optimizer, context.scaler, context.settings
    assert optimizer is not None
    for parameter in frozen.parameters:  # optimizers skip a parameter without a gradient altogether
        parameter.grad = None
    if settings.clip_grad_norm:
        if scaler is not None:
            scaler.unscale_(optimizer)
        parameters = [p for group in optimizer.param_groups for p in group["params"]]
        torch.nn.utils.clip_grad_norm_(parameters, settings.clip_grad_norm)
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    if settings.after_optimizer_step is not None:
        settings.after_optimizer_step()


def train_epoch(
    context: StepContext,
    batches: Iterable[tuple[torch.Tensor, ...]],  # (images, labels)
    *,
    schedule: Callable[[int], float] | None = None,
    mixer: BatchMixer | None = None,
    frozen: Frozen = NOTHING_FROZEN,
    max_steps: int = 0,
    first_step: int = 0,
    on_step: Callable[[int, TrainStats], None] | None = None,
) -> TrainStats:
    """Train over ``batches``. ``schedule(i)`` is the learning rate of the epoch's optimizer step ``i``, set on each
    parameter group times its ``lr_scale`` (None: the optimizer's rates stay); ``mixer(i, images, labels)`` mixes
    batch ``i`` (None: no mixing); ``frozen`` is held still. ``first_step`` is the epoch's index of the first batch
    (after a resume; a multiple of ``accumulate``); ``max_steps`` (0 = all) bounds the batch index, the same on every
    rank, so DDP stays in step; ``on_step(i, stats)`` runs after each batch. Optimizer step ``i // accumulate`` takes
    batches ``i`` of its group (the epoch's last group may be shorter: its batches weigh ``1 / its length``). With
    a guard, a step whose loss or gradients are not finite on some rank is skipped on all (its verdict is the one
    read a step). Nothing else in the loop reads a device tensor back: batches are copied ``non_blocking`` (from
    pinned memory on a GPU) and the statistics stay on the device until read.
    """
    context.model.train()
    for module in frozen.norms:
        module.eval()
    stats = TrainStats()
    every = context.settings.accumulate
    # The epoch's batch count sizes its last accumulation group (a loader knows how many batches it has left; an
    # accumulating caller passes a loader, which is sized, where a plain iterable is not).
    total = max_steps or (first_step + len(batches) if every > 1 else sys.maxsize)  # type: ignore[arg-type]
    waited = time.perf_counter()
    group: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []  # the optimizer step's batches so far
    for index, (images, labels) in enumerate(_fetched(batches), start=first_step):
        stats.data_seconds += time.perf_counter() - waited
        if max_steps and index >= max_steps:
            break
        group_start = index - index % every
        share = min(every, total - group_start)
        if schedule is not None and index == group_start:
            _set_rate(context, schedule(index // every))
        if context.guard is not None and index == group_start:
            context.guard.before_step()
        labels = labels.to(context.device, non_blocking=True)
        last = index + 1 == group_start + share
        loss_sum, logits = _backward(context, mixer, index, (context.to_device(images), labels), share, last)
        group.append((loss_sum, logits, labels))
        if context.guard is not None:
            context.guard.add_loss(loss_sum)
        if last:
            _finish_step(context, frozen, stats, group, index)
            group = []
        if on_step:
            on_step(index, stats)
        waited = time.perf_counter()
    return stats


def _finish_step(
    context: StepContext,
    frozen: Frozen,
    stats: TrainStats,
    batches: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
    index: int,
) -> None:
    """Apply the optimizer step whose ``batches`` ends at ``index`` and count them, or, when its loss or
    gradients are not finite on some rank, skip it on every rank (the guard may end the epoch)."""
    guard, optimizer = context.guard, context.optimizer
    assert optimizer is not None
    if guard is None or guard.step_is_finite(p for group in optimizer.param_groups for p in group["params"]):
        _optimizer_step(context, frozen)
        for loss_sum, logits, labels in batches:
            stats.add(loss_sum, logits, labels)
        if guard is not None:
            guard.applied()
        return
    skip_step(optimizer, context.scaler)
    guard.skip(index)


def _set_rate(context: StepContext, rate: float) -> None:
    """The schedule's ``rate`` on every parameter group, scaled by the group's ``lr_scale`` (a fine-tuned backbone
    learns at a share of the classifier's rate; ``recipe.parameter_groups``)."""
    assert context.optimizer is not None
    for group in context.optimizer.param_groups:
        group["lr"] = rate * group.get("lr_scale", 1.0)


def _fetched(batches: Iterable[Any]) -> Iterator[Any]:
    """``batches``, each fetch named in a ``torch.profiler`` trace (``--profile-steps``; a no-op otherwise)."""
    iterator = iter(batches)
    while True:
        with torch.profiler.record_function(DATA_WAIT):
            batch = next(iterator, None)
        if batch is None:
            return
        yield batch


def evaluate(
    context: StepContext,
    batches: Iterable[tuple[torch.Tensor, ...]],  # (images, labels, mask)
    max_batches: int = 0,
    keep_outputs: bool = False,
) -> EvalStats:
    """Top-1/top-5 error over the masked rows of every batch, summed over all ranks when DDP is initialised."""
    return evaluate_each(context, [context.model], batches, max_batches, keep_outputs)[0]


@torch.no_grad()
def evaluate_each(
    context: StepContext,
    models: Sequence[nn.Module],
    batches: Iterable[tuple[torch.Tensor, ...]],  # (images, labels, mask)
    max_batches: int = 0,
    keep_outputs: bool = False,
) -> list[EvalStats]:
    """:func:`evaluate` for each of ``models`` (the raw weights and their moving average) in one pass over the
    data, with ``context``'s device and numerics."""
    for model in models:
        model.eval()
    totals = torch.zeros(len(models), 4, dtype=torch.float64, device=context.device)  # loss, top-1, top-5, samples
    kept: list[list[tuple[torch.Tensor, torch.Tensor]]] = [[] for _ in models]
    keep = keep_outputs or context.settings.multi_label  # multi-label: the ranking metrics need every prediction
    for index, (images, labels, mask) in enumerate(batches):
        if max_batches and index >= max_batches:
            break
        images, labels, mask = context.to_device(images), labels.to(context.device), mask.to(context.device)
        for row, model in enumerate(models):
            with _autocast(context.device, context.autocast_dtype):
                logits = model(images).float()
            losses, hits1, hits5 = _scored(logits, labels)
            sums = torch.stack([losses[mask].sum(), hits1[mask].sum(), hits5[mask].sum(), mask.sum()])
            totals[row] += sums.to(torch.float64)
            if keep:
                kept[row].append((logits[mask].cpu(), labels[mask].cpu()))
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(totals)
    results = []
    for row, (loss_sum, hits1, hits5, samples) in enumerate(totals.tolist()):
        count = max(samples, 1.0)
        outputs = _gathered(kept[row]) if keep else None  # every rank gathers, or none does
        top5 = None if math.isnan(hits5) else 1 - hits5 / count  # NaN: some rank's logits had no top 5
        results.append(EvalStats(loss_sum / count, 1 - hits1 / count, top5, int(samples), outputs))
    return results


def _scored(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Each row's loss, whether it is a top-1 hit and whether a top-5 hit (NaN where top-5 means nothing: 5 classes
    or fewer, or multi-label data); multi-label (multi-hot ``labels``): the binary cross entropy summed over classes,
    and whether every class is predicted right at probability 0.5."""
    if labels.dim() == 2:
        exact = ((logits >= 0) == (labels >= 0.5)).all(1)
        losses = F.binary_cross_entropy_with_logits(logits, labels, reduction="none").sum(1)
        return losses, exact, torch.full_like(losses, math.nan)
    losses, hits = F.cross_entropy(logits, labels, reduction="none"), logits.argmax(1) == labels
    if logits.shape[1] <= TOP5_CLASSES:
        return losses, hits, torch.full_like(losses, math.nan)
    return losses, hits, (logits.topk(TOP5_CLASSES, dim=1).indices == labels[:, None]).any(1)


def _gathered(parts: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    """This rank's kept logits and labels, joined with every other rank's (rank order) under DDP."""
    logits = torch.cat([part[0] for part in parts]) if parts else torch.empty(0)
    labels = torch.cat([part[1] for part in parts]) if parts else torch.empty(0, dtype=torch.long)
    if dist.is_available() and dist.is_initialized():
        everyone: list[tuple[torch.Tensor, torch.Tensor] | None] = [None] * dist.get_world_size()
        dist.all_gather_object(everyone, (logits, labels))
        present = [part for part in everyone if part is not None and len(part[0])]
        if present:
            return torch.cat([part[0] for part in present]), torch.cat([part[1] for part in present])
    return logits, labels
