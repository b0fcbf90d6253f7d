"""One training epoch and one exact evaluation pass: pure PyTorch, no Ray (the worker loop calls these)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn


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
        """Count one batch's summed loss and top-1 hits without a host sync."""
        batch = torch.stack([loss_sum.double(), (logits.argmax(1) == labels).sum().double()])
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
    """Exact evaluation over every sample once: top-1/top-5 error and mean loss."""

    loss: float
    top1_error: float
    top5_error: float
    samples: int


def _autocast(device: torch.device, precision: str):  # noqa: ANN202 - a context manager
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
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
        set_lr: ``set_lr(i)`` sets (and returns) the learning rate of batch ``i`` of the epoch (training only).
        rows_per_rank: the global batch divided by the world size. A rank's loss is its summed sample losses over
            this, so DDP's gradient average is the mean over the global batch even when ranks hold unequal shares
            (and a sample that failed to decode drops out without raising the others' weight). None: the batch mean.
    """

    model: nn.Module
    device: torch.device
    precision: str = "fp32"
    channels_last: bool = False
    optimizer: torch.optim.Optimizer | None = None
    scaler: torch.amp.GradScaler | None = None
    set_lr: Callable[[int], float] | None = None
    rows_per_rank: float | None = None

    def to_device(self, images: torch.Tensor) -> torch.Tensor:
        images = images.to(self.device, non_blocking=True)
        return images.contiguous(memory_format=torch.channels_last) if self.channels_last else images


def _step(context: StepContext, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimisation step; returns the summed loss and the logits (detached)."""
    assert context.optimizer is not None
    with _autocast(context.device, context.precision):
        logits = context.model(images)
    loss_sum = F.cross_entropy(logits.float(), labels, reduction="sum")
    loss = loss_sum / (context.rows_per_rank or len(labels))
    context.optimizer.zero_grad(set_to_none=True)
    if context.scaler is not None:
        context.scaler.scale(loss).backward()
        context.scaler.step(context.optimizer)
        context.scaler.update()
    else:
        loss.backward()
        context.optimizer.step()
    return loss_sum.detach(), logits.detach()


def train_epoch(
    context: StepContext,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    max_steps: int = 0,
    first_step: int = 0,
    on_step: Callable[[int, TrainStats], None] | None = None,
) -> TrainStats:
    """Train over ``batches``. ``first_step`` is the epoch's index of the first batch (after a resume);
    ``max_steps`` (0 = all) bounds the batch index, the same on every rank, so DDP stays in step; ``on_step(i,
    stats)`` runs after each step. Nothing in the loop reads a device tensor back: batches are copied
    ``non_blocking`` (from pinned memory on a GPU) and the statistics stay on the device until read."""
    context.model.train()
    stats = TrainStats()
    waited = time.perf_counter()
    for index, (images, labels) in enumerate(batches, start=first_step):
        stats.data_seconds += time.perf_counter() - waited
        if max_steps and index >= max_steps:
            break
        if context.set_lr is not None:
            context.set_lr(index)
        labels = labels.to(context.device, non_blocking=True)
        loss_sum, logits = _step(context, context.to_device(images), labels)
        stats.add(loss_sum, logits, labels)
        if on_step:
            on_step(index, stats)
        waited = time.perf_counter()
    return stats


@torch.no_grad()
def evaluate(
    context: StepContext,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
    max_batches: int = 0,
) -> EvalStats:
    """Top-1/top-5 error over the masked rows of every batch, summed over all ranks when DDP is initialised."""
    context.model.eval()
    totals = torch.zeros(4, dtype=torch.float64, device=context.device)  # loss sum, top-1, top-5 hits, samples
    for index, (images, labels, mask) in enumerate(batches):
        if max_batches and index >= max_batches:
            break
        images, labels, mask = context.to_device(images), labels.to(context.device), mask.to(context.device)
        with _autocast(context.device, context.precision):
            logits = context.model(images).float()
        losses = F.cross_entropy(logits, labels, reduction="none")
        top5 = logits.topk(min(5, logits.shape[1]), dim=1).indices
        hits5 = (top5 == labels[:, None]).any(1)
        hits1 = top5[:, 0] == labels
        totals += torch.stack([losses[mask].sum(), hits1[mask].sum(), hits5[mask].sum(), mask.sum()]).to(torch.float64)
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(totals)
    loss_sum, hits1, hits5, samples = totals.tolist()
    samples_count = max(samples, 1.0)
    return EvalStats(loss_sum / samples_count, 1 - hits1 / samples_count, 1 - hits5 / samples_count, int(samples))
