"""A worker's model and training state: building the model, saving a checkpoint, resuming from one.

A checkpoint directory holds ``state.pt`` (rank 0: weights, their moving average with ``--ema``, optimiser, scaler,
position, the resolved config) and
``rng-rank<r>.pt`` for every rank (Ray merges the ranks' directories), so a resumed run continues bitwise.
"""

from __future__ import annotations

import contextlib
import io
import os
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from densenet_ray.data.epoch_plan import Layout, Segment
from densenet_ray.data.storage import open_storage
from densenet_ray.models import create_model
from densenet_ray.train.acceleration import Acceleration, use_compile_cache
from densenet_ray.train.checkpoint import STATE_FILE, load_initial_weights, pretrained_state_dict
from densenet_ray.train.resolved import ResolvedConfig


@dataclass
class TrainingState:
    """Where training stands: the next epoch and global batch to run, optimizer steps so far, the best test error,
    and the current epoch's earlier segments (stretches run on another layout, see ``epoch_plan``)."""

    epoch: int = 0
    next_batch: int = 0
    global_step: int = 0
    best_error: float = 1.0
    history: tuple[Segment, ...] = ()


def unwrap(model: nn.Module) -> nn.Module:
    """The plain model under DDP and ``torch.compile``."""
    model = getattr(model, "module", model)
    return getattr(model, "_orig_mod", model)


def build_model(config: ResolvedConfig, world: int, fresh: bool, acceleration: Acceleration) -> nn.Module:
    """The model as the run wants it (starting weights only for a ``fresh`` start; a resumed run loads its own),
    before the DDP wrap."""
    spec, execution = config.model, config.execution
    model = create_model(spec.name, **spec.create_kwargs())
    if fresh and spec.init_from:
        load_initial_weights(model, spec.init_from)
    elif fresh and spec.pretrained:  # every node fetches into its own torch hub cache
        load_initial_weights(model, pretrained_state_dict(spec.name), "--pretrained")
    if execution.sync_bn and world > 1:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    if acceleration.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if acceleration.compile:
        use_compile_cache()
        model = torch.compile(model)  # before the DDP wrap
    return model


def save_checkpoint(loop: Any, directory: str) -> None:
    """Write ``loop``'s checkpoint files into ``directory``: rank 0 the training state, every rank its RNG state."""
    if loop.rank == 0:
        scaler = loop.step_context.scaler
        state = {
            "model": unwrap(loop.model).state_dict(),
            "optimizer": loop.optimizer.state_dict(),
            "scaler": scaler.state_dict() if scaler is not None else None,
            "ema": loop.average.state_dict() if loop.average is not None else None,
            "epoch": loop.state.epoch,
            "next_batch": loop.state.next_batch,
            "global_step": loop.state.global_step,
            "best_error": loop.state.best_error,
            "history": [segment.to_dict() for segment in loop.state.history],
            "segment": Segment(loop.layout, loop.state.next_batch - done(loop.state.history)).to_dict(),
            "config": loop.config.to_document(),
        }
        torch.save(state, os.path.join(directory, STATE_FILE))
    rng = {"torch": torch.random.get_rng_state(), "python": random.getstate()}
    torch.save(rng, os.path.join(directory, f"rng-rank{loop.rank}.pt"))


def done(history: tuple[Segment, ...]) -> int:
    return sum(segment.batches for segment in history)


def resumed_history(state: dict[str, Any], layout: Layout) -> tuple[Segment, ...]:
    """The epoch's earlier segments for a run resuming on ``layout``: the checkpoint's, plus its own current
    segment when that ran on another layout (the new layout then plans the samples not yet used). A checkpoint from
    before segments were recorded resumes as if on the same layout."""
    history = tuple(Segment.from_dict(segment) for segment in state.get("history", []))
    current = state.get("segment")
    if current is not None:
        segment = Segment.from_dict(current)
        if segment.batches and segment.layout != layout:
            history += (segment,)
    return history


@contextlib.contextmanager
def _checkpoint_files(loop: Any, checkpoint: Any) -> Iterator[Any]:
    """A reader ``read(name) -> bytes | None`` over the checkpoint to resume from: Ray's latest, or the launcher's
    fallback when Ray's latest is the one it found unloadable."""
    execution = loop.config.execution
    name = os.path.basename(checkpoint.path.rstrip("/"))
    if execution.skip_checkpoint and name == execution.skip_checkpoint:
        storage = open_storage(execution.resume_from)
        yield lambda file: storage.read_bytes(file) if storage.exists(file) else None
        return
    with checkpoint.as_directory() as directory:

        def read(file: str) -> bytes | None:
            path = os.path.join(directory, file)
            if not os.path.exists(path):
                return None
            with open(path, "rb") as handle:
                return handle.read()

        yield read


def load_resume_state(loop: Any, checkpoint: Any, scaler: Any) -> None:
    """Restore ``loop``'s model, optimiser, scaler, position and this rank's RNG from ``checkpoint`` (if any)."""
    if checkpoint is None:
        return
    with _checkpoint_files(loop, checkpoint) as read:
        state = torch.load(io.BytesIO(read(STATE_FILE) or b""), map_location=loop.device, weights_only=False)
        rng_bytes = read(f"rng-rank{loop.rank}.pt")
    unwrap(loop.model).load_state_dict(state["model"])
    loop.optimizer.load_state_dict(state["optimizer"])
    if scaler is not None and state.get("scaler"):
        scaler.load_state_dict(state["scaler"])
    if loop.average is not None and state.get("ema"):
        loop.average.load_state_dict(state["ema"])
    loop.state = TrainingState(state["epoch"], state["next_batch"], state["global_step"], state["best_error"])
    loop.state.history = resumed_history(state, loop.layout)
    if rng_bytes is not None:
        rng = torch.load(io.BytesIO(rng_bytes), weights_only=False)
        torch.random.set_rng_state(rng["torch"])
        random.setstate(rng["python"])
