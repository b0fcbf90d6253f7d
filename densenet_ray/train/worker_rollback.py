"""A worker's answer to non-finite steps: each skipped step's samples named (rank 0 writes ``bad-steps.jsonl``), the
last checkpoint's state kept in memory, and after ``--max-bad-steps`` skips in a row a rollback to it at a lower
rate, or, with ``--max-rollbacks`` used up, the end of the run. Every rank takes the same decisions at the same step:
the guard's verdicts are all-reduced."""

from __future__ import annotations

import tempfile

import torch.distributed as dist

from densenet_ray.data.reading.pipeline import Loader
from densenet_ray.train.checkpoint.state import TrainingState, restore, save_checkpoint, unwrap
from densenet_ray.train.config.resolved import ResolvedConfig
from densenet_ray.train.nonfinite import LastGood, NonFiniteSteps, StepGuard
from densenet_ray.train.progress.records import Attempt
from densenet_ray.train.run.bad_steps import append_bad_step
from densenet_ray.train.run.directory import RunDirectory
from densenet_ray.train.run.record_shapes import BadStepRecord
from densenet_ray.train.worker_setup import layout


class Rollbacks:
    """One worker's :class:`StepGuard` (for its step context) and what follows a run of non-finite steps."""

    def __init__(self, config: ResolvedConfig, attempt: Attempt, state: TrainingState) -> None:
        self.config, self.attempt, self.state = config, attempt, state
        buffers = list(unwrap(state.model).buffers())
        self.guard = StepGuard(config.options.max_bad_steps, on_skip=self._skipped, buffers=buffers)
        self.last_good = LastGood()
        self.loader: Loader | None = None  # the epoch's training loader: its last batch's sample keys
        self.epoch = 0
        self.ended: BadStepRecord | None = None
        self.keep()

    def keep(self, written: str | None = None) -> None:
        """The state as it is now becomes the one a rollback goes back to. ``written``: the checkpoint directory this
        rank has just written; rank 0's holds the whole state already, the other ranks write it as rank 0 would."""
        if written is not None and self.attempt.rank == 0:
            self.last_good.keep(written)
            return
        with tempfile.TemporaryDirectory() as directory:
            save_checkpoint(self.state, self.config, 0, layout(self.config, self.attempt), directory)
            self.last_good.keep(directory)

    def lr_scale(self) -> float:
        """What the rollbacks so far multiply the learning rate by."""
        return float(self.config.options.rollback_lr_scale**self.state.position.rollbacks)

    def start_epoch(self, epoch: int, loader: Loader) -> None:
        self.epoch, self.loader = epoch, loader

    def recover(self, error: NonFiniteSteps) -> bool:
        """Go back to the last checkpoint with the rate lowered (True), or, with no rollback left, record the run's
        end (False, :attr:`ended` set)."""
        rollbacks = self.state.position.rollbacks
        if rollbacks >= self.config.options.max_rollbacks:
            self.ended = self._record("ended", error.batch, self._samples())
            return False
        self._record("rolled back", error.batch, [], rollbacks + 1)
        restore(self.state, self.last_good.read, 0, layout(self.config, self.attempt), self.attempt.device)
        self.state.position.rollbacks = rollbacks + 1
        self.guard.consecutive = self.guard.skipped = 0
        return True

    def _skipped(self, batch: int) -> None:
        self._record("skipped", batch, self._samples())

    def _samples(self) -> list[str]:
        """The sample keys of the step's last batch on every rank, rank by rank (every rank calls this)."""
        keys = list(self.loader.keys) if self.loader is not None else []
        if not (dist.is_available() and dist.is_initialized()):
            return keys
        everyone: list[list[str] | None] = [None] * dist.get_world_size()
        dist.all_gather_object(everyone, keys)
        return [key for rank_keys in everyone for key in rank_keys or []]

    def _record(self, action: str, batch: int, samples: list[str], rollbacks: int | None = None) -> BadStepRecord:
        """Rank 0 writes the record; ``rollbacks``: those after this one (its rate follows from them)."""
        position = self.state.position
        rollbacks = position.rollbacks if rollbacks is None else rollbacks
        scale = float(self.config.options.rollback_lr_scale**rollbacks)
        record = BadStepRecord(action, self.epoch, batch, position.global_step + 1, samples, rollbacks, scale)
        if self.attempt.rank == 0:
            append_bad_step(RunDirectory(self.config.run_url).storage, record)
        return record
