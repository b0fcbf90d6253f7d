"""A worker's training state as one typed object, and how a checkpoint saves and restores it.

A checkpoint directory holds ``state.pt`` (rank 0: weights, their moving average with ``--ema``, optimiser, scaler,
position, the resolved config) and ``rng-rank<r>.pt`` for every rank (Ray merges the ranks' directories), so a
resumed run continues bitwise; ``files-rank<r>.json`` lists each rank's files with their sizes and SHA-256s
(``train/run/checkpoint_manifest.py``).
"""

from __future__ import annotations

import contextlib
import io
import os
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import torch
from torch import nn

from densenet_ray.data.reading.epoch_plan import Layout, Segment
from densenet_ray.data.storage import open_storage
from densenet_ray.models import create_model
from densenet_ray.models.weights import (
    STATE_FILE,
    load_checkpoint,
    load_initial_weights,
    pretrained_state_dict,
    state_dict_of,
)
from densenet_ray.safe_load import load_weights
from densenet_ray.train.acceleration import Acceleration, use_compile_cache
from densenet_ray.train.config.resolved import ResolvedConfig
from densenet_ray.train.recipe import WeightAverage
from densenet_ray.train.run.checkpoint_manifest import write_manifest
from densenet_ray.train.stopping import Bests

if TYPE_CHECKING:
    from ray.train import Checkpoint

Reader = Callable[[str], "bytes | None"]


@dataclass
class Position:
    """Where training stands: the next epoch and global batch to run, optimizer steps so far, the best test error,
    the current epoch's earlier segments (stretches run on another layout, see ``epoch_plan``), each test figure's
    best with its epoch (``--early-stop`` decides from them) and the rollbacks after non-finite steps so far (each
    scales the learning rate by ``--rollback-lr-scale``)."""

    epoch: int = 0
    next_batch: int = 0
    global_step: int = 0
    best_error: float = 1.0
    history: tuple[Segment, ...] = ()
    bests: Bests = field(default_factory=dict)
    rollbacks: int = 0


@dataclass
class TrainingState:
    """Everything a checkpoint saves and a resume restores: the (DDP-wrapped, maybe compiled) model, its optimizer,
    the fp16 gradient scaler and the weights' moving average (None when unused), and the position."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler | None = None
    average: WeightAverage | None = None
    position: Position = field(default_factory=Position)


def unwrap(model: nn.Module) -> nn.Module:
    """The plain model under DDP and ``torch.compile``."""
    model = getattr(model, "module", model)
    return getattr(model, "_orig_mod", model)


def build_model(config: ResolvedConfig, world: int, fresh: bool, acceleration: Acceleration) -> nn.Module:
    """The model as the run wants it (starting weights only for a ``fresh`` start; a resumed run loads its own),
    before the DDP wrap."""
    options = config.options
    model: nn.Module = create_model(options.model, **config.model_kwargs())
    own_images = options.dataset == "images"  # a classifier for other classes than the run's is trained anew
    if fresh and options.init_from:
        loaded = load_checkpoint(options.init_from)
        saved = saved_config(loaded)  # None: a plain state_dict, whose classes are not known to be ours
        reset = own_images and (saved is None or saved.classes != config.classes)
        load_initial_weights(model, state_dict_of(loaded, options.init_from), reset_head=reset)
    elif fresh and options.pretrained:  # every node fetches into its own torch hub cache
        assert options.model is not None, "resolve() fills in the model"
        load_initial_weights(model, pretrained_state_dict(options.model), "--pretrained", reset_head=own_images)
    if options.sync_bn and world > 1:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    if acceleration.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if acceleration.compile:
        use_compile_cache()
        model = cast(nn.Module, torch.compile(model))  # before the DDP wrap; torch types it a callable, not a Module
    return model


def saved_config(loaded: Any) -> ResolvedConfig | None:
    """The resolved configuration a loaded run checkpoint carries (None for a plain state_dict, or a run saved
    before configurations were nested)."""
    document = loaded.get("config") if isinstance(loaded, dict) else None
    if not (isinstance(document, dict) and isinstance(document.get("model"), dict)):
        return None
    try:
        return ResolvedConfig.from_document(document)
    except ValueError:
        return None


def save_checkpoint(state: TrainingState, config: ResolvedConfig, rank: int, layout: Layout, directory: str) -> None:
    """Write the checkpoint files into ``directory``: rank 0 the training state, every rank its RNG state and the
    list of what it wrote."""
    if rank == 0:
        position = state.position
        saved = {
            "model": unwrap(state.model).state_dict(),
            "optimizer": state.optimizer.state_dict(),
            "scaler": state.scaler.state_dict() if state.scaler is not None else None,
            "ema": state.average.state_dict() if state.average is not None else None,
            "epoch": position.epoch,
            "next_batch": position.next_batch,
            "global_step": position.global_step,
            "best_error": position.best_error,
            "bests": position.bests,
            "rollbacks": position.rollbacks,
            "history": [segment.to_dict() for segment in position.history],
            "segment": Segment(layout, position.next_batch - done(position.history)).to_dict(),
            "config": config.to_document(),
        }
        torch.save(saved, os.path.join(directory, STATE_FILE))
    rng = {"torch": torch.random.get_rng_state(), "python": random.getstate()}
    torch.save(rng, os.path.join(directory, f"rng-rank{rank}.pt"))
    write_manifest(directory, rank)


def done(history: tuple[Segment, ...]) -> int:
    return sum(segment.batches for segment in history)


def resumed_history(saved: dict[str, Any], layout: Layout) -> tuple[Segment, ...]:
    """The epoch's earlier segments for a run resuming on ``layout``: the checkpoint's, plus its own current
    segment when that ran on another layout (the new layout then plans the samples not yet used). A checkpoint from
    before segments were recorded resumes as if on the same layout."""
    history = tuple(Segment.from_dict(segment) for segment in saved.get("history", []))
    current = saved.get("segment")
    if current is not None:
        segment = Segment.from_dict(current)
        if segment.batches and segment.layout != layout:
            history += (segment,)
    return history


@contextlib.contextmanager
def checkpoint_files(config: ResolvedConfig, checkpoint: Checkpoint) -> Iterator[Reader]:
    """A reader ``read(name) -> bytes | None`` over the checkpoint to resume from: Ray's latest, or the launcher's
    fallback when Ray's latest is the one it found unloadable."""
    name = os.path.basename(checkpoint.path.rstrip("/"))
    if config.skip_checkpoint and name == config.skip_checkpoint:
        storage = open_storage(config.resume_from)
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


def restore(state: TrainingState, read: Reader, rank: int, layout: Layout, device: torch.device) -> None:
    """Load a checkpoint's files (``read``) into ``state``, and this rank's RNG states into the process."""
    saved = load_weights(io.BytesIO(read(STATE_FILE) or b""), f"the checkpoint's {STATE_FILE}", device)
    unwrap(state.model).load_state_dict(saved["model"])
    state.optimizer.load_state_dict(saved["optimizer"])
    if state.scaler is not None and saved.get("scaler"):
        state.scaler.load_state_dict(saved["scaler"])
    if state.average is not None and saved.get("ema"):
        state.average.load_state_dict(saved["ema"])
    history = resumed_history(saved, layout)
    bests = {metric: (float(value), int(epoch)) for metric, (value, epoch) in saved.get("bests", {}).items()}
    state.position = Position(
        saved["epoch"],
        saved["next_batch"],
        saved["global_step"],
        saved["best_error"],
        history,
        bests,
        int(saved.get("rollbacks", 0)),
    )
    rng_bytes = read(f"rng-rank{rank}.pt")
    if rng_bytes is not None:
        rng = load_weights(io.BytesIO(rng_bytes), f"the checkpoint's rng-rank{rank}.pt")
        torch.random.set_rng_state(rng["torch"])
        random.setstate(rng["python"])
