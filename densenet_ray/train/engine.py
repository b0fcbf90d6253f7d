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
    """What one training pass measured (sums, so passes and ranks can be combined)."""

    loss_sum: float = 0.0
    correct: int = 0
    samples: int = 0
    steps: int = 0
    seconds: float = 0.0
    data_seconds: float = 0.0

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


def _autocast(device: torch.device, amp: str | None):  # noqa: ANN202 - a context manager
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(amp or "")
    return torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None)


def train_epoch(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    optimizer: torch.optim.Optimizer,
    set_lr: Callable[[int], float],
    device: torch.device,
    amp: str | None = None,
    scaler: torch.amp.GradScaler | None = None,
    channels_last: bool = False,
    max_steps: int = 0,
    first_step: int = 0,
    on_step: Callable[[int, TrainStats], None] | None = None,
) -> TrainStats:
    """Train over ``batches``; ``set_lr(i)`` sets and returns the learning rate of batch ``i`` of the epoch.

    ``first_step`` is the epoch's index of the first batch (after a resume); ``max_steps`` (0 = all) bounds the
    batch index, the same on every rank, so DDP stays in step.
    """
    model.train()
    stats = TrainStats()
    start = waited = time.perf_counter()
    for index, (images, labels) in enumerate(batches, start=first_step):
        stats.data_seconds += time.perf_counter() - waited
        if max_steps and index >= max_steps:
            break
        set_lr(index)
        images = images.to(device, non_blocking=True)
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        labels = labels.to(device, non_blocking=True)
        with _autocast(device, amp):
            logits = model(images)
            loss = F.cross_entropy(logits, labels)
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        stats.loss_sum += float(loss.detach()) * len(labels)
        stats.correct += int((logits.detach().argmax(1) == labels).sum())
        stats.samples += len(labels)
        stats.steps += 1
        if on_step:
            on_step(index, stats)
        waited = time.perf_counter()
    stats.seconds = time.perf_counter() - start
    return stats


@torch.no_grad()
def evaluate(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
    device: torch.device,
    amp: str | None = None,
    channels_last: bool = False,
    max_batches: int = 0,
) -> EvalStats:
    """Top-1/top-5 error over the masked rows of every batch, summed over all ranks when DDP is initialised."""
    model.eval()
    totals = torch.zeros(4, dtype=torch.float64, device=device)  # loss sum, top-1 hits, top-5 hits, samples
    for index, (images, labels, mask) in enumerate(batches):
        if max_batches and index >= max_batches:
            break
        images, labels, mask = images.to(device), labels.to(device), mask.to(device)
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with _autocast(device, amp):
            logits = model(images).float()
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
