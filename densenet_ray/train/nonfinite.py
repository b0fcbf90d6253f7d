"""Steps whose loss or gradients are not finite: every rank skips them alike, and a run that keeps producing them
goes back to its last checkpoint at a lower rate. Pure PyTorch: the engine asks :class:`StepGuard` before each
optimizer step; the worker loop (``train/worker.py``) rolls back or ends the run on :class:`NonFiniteSteps`.

One NaN or Inf applied to the weights would make every later step NaN. The ranks' verdicts are all-reduced into one
(a rank's loss is its own; DDP averages only the gradients), so all ranks skip the same steps, stay in step and
count the same run of skips. With fp16 the gradient scaler's own handling stays as it is: an overflowing step
lowers the scale and is skipped, as it always was, and counted here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torch import nn


class NonFiniteSteps(RuntimeError):
    """``count`` optimizer steps in a row had a non-finite loss or gradient; the last at the epoch's batch
    ``batch`` (0-indexed)."""

    def __init__(self, count: int, batch: int) -> None:
        super().__init__(f"{count} optimizer steps in a row had a non-finite loss or gradient (batch {batch})")
        self.count, self.batch = count, batch


@dataclass
class StepGuard:
    """Whether each optimizer step is finite on every rank; raises :class:`NonFiniteSteps` at ``max_consecutive``
    skips in a row. ``on_skip(batch)`` runs on every rank after each skipped step (the worker names its samples).

    Attributes:
        buffers: the model's buffers (BatchNorm's running statistics), which every forward pass updates: a skipped
            step puts back what they were before it, so one bad batch cannot poison them.
        consecutive: the skips since the last step that was applied.
        skipped: the skipped steps so far (the worker's epoch record reads and resets it).
    """

    max_consecutive: int
    on_skip: Callable[[int], None] | None = None
    buffers: list[torch.Tensor] = field(default_factory=list)
    consecutive: int = 0
    skipped: int = 0
    _bad: torch.Tensor | None = field(default=None, repr=False)
    _saved: list[torch.Tensor] = field(default_factory=list, repr=False)

    def before_step(self) -> None:
        """Remember the buffers before the optimizer step's first forward pass (one fused copy, on the device)."""
        if not self.buffers:
            return
        if not self._saved:
            self._saved = [buffer.clone() for buffer in self.buffers]
        else:
            torch._foreach_copy_(self._saved, self.buffers)

    def add_loss(self, loss_sum: torch.Tensor) -> None:
        """Count one batch's summed loss into the optimizer step's verdict (on the device: no host sync)."""
        bad = (~torch.isfinite(loss_sum.detach())).to(torch.float32)
        self._bad = bad if self._bad is None else self._bad.add_(bad)

    def step_is_finite(self, parameters: Iterable[nn.Parameter]) -> bool:
        """Whether this optimizer step's losses and gradients are finite on every rank (one all-reduce and one host
        sync a step); resets the losses counted for the next step."""
        grads = [parameter.grad for parameter in parameters if parameter.grad is not None]
        bad = self._bad if self._bad is not None else torch.zeros((), dtype=torch.float32)
        if grads:
            norm = torch.nn.utils.get_total_norm(grads, foreach=None)
            bad = bad.to(norm.device) + (~torch.isfinite(norm)).to(torch.float32)
        self._bad = None
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(bad)  # summed: one rank's non-finite step is every rank's
        return not bool(bad.item())

    def applied(self) -> None:
        self.consecutive = 0

    def skip(self, batch: int) -> None:
        """Count a skipped step at the epoch's ``batch`` (its buffers put back); :class:`NonFiniteSteps` when too many
        came in a row."""
        if self._saved:
            torch._foreach_copy_(self.buffers, self._saved)
        self.consecutive += 1
        self.skipped += 1
        if self.on_skip is not None:
            self.on_skip(batch)
        if self.consecutive >= self.max_consecutive:
            raise NonFiniteSteps(self.consecutive, batch)


def skip_step(optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler | None) -> None:
    """Drop the step's gradients: weights, optimizer state and moving average stay as they are; an fp16 scaler
    lowers its scale as it does for an overflow it finds itself."""
    if scaler is not None:
        scaler.update(scaler.get_scale() * scaler.get_backoff_factor())
    optimizer.zero_grad(set_to_none=True)


@dataclass
class LastGood:
    """The training state as the last checkpoint saved it, kept in memory on every rank as the checkpoint's own
    files: a rollback restores it without reading storage (the files another rank wrote included)."""

    files: dict[str, bytes] = field(default_factory=dict)

    def keep(self, directory: str) -> None:
        """Keep the files in ``directory``: the whole state as rank 0 saves it, with this rank's RNG."""
        import os

        kept = {}
        for name in os.listdir(directory):
            with open(os.path.join(directory, name), "rb") as handle:
                kept[name] = handle.read()
        self.files = kept

    def read(self, name: str) -> bytes | None:
        return self.files.get(name)
