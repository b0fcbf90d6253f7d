"""A worker's reports to Ray Train: once per epoch and at mid-epoch checkpoints, each with a checkpoint of the
training state as it is then, and the ``--profile-steps`` summary. Every report waits for the controller's next poll
(about 2 s by default, ``RAY_TRAIN_HEALTH_CHECK_INTERVAL_S``), so there is none per step; the records stay typed
until here, where they become the metrics Ray passes to the driver (which writes ``metrics.jsonl``)."""

from __future__ import annotations

import dataclasses
import tempfile
import time
from collections.abc import Callable
from typing import Any

from densenet_ray.train.checkpoint.state import TrainingState, save_checkpoint
from densenet_ray.train.config.resolved import ResolvedConfig
from densenet_ray.train.engine import TrainStats
from densenet_ray.train.preemption import PreemptionWatch
from densenet_ray.train.profiling import StepProfiler
from densenet_ray.train.progress.records import Attempt, reported
from densenet_ray.train.run.directory import EpochRecord, MidEpochRecord, PreemptionRecord, ProfileRecord, RunDirectory
from densenet_ray.train.worker_setup import layout


class Reporter:
    """Reports of one worker (every rank reports, as Ray asks; rank 0's metrics reach the driver)."""

    def __init__(
        self,
        config: ResolvedConfig,
        attempt: Attempt,
        state: TrainingState,
        after_checkpoint: Callable[[str], None] | None = None,
    ) -> None:
        """``after_checkpoint(directory)`` runs after each checkpoint is reported, while this rank's files are still
        in ``directory`` (a rollback's state is kept)."""
        self.config, self.attempt, self.state = config, attempt, state
        self.after_checkpoint = after_checkpoint

    def epoch(self, record: EpochRecord) -> None:
        """The epoch's record, with the checkpoint a resume starts the next epoch from."""
        self._report(reported(record))

    def mid_epoch(self, epoch: int, stats: TrainStats) -> None:
        """A checkpoint inside ``epoch`` (0-indexed), after the optimizer step the position names."""
        step, world = self.state.position.global_step, self.attempt.world
        self._report(reported(MidEpochRecord(epoch=epoch, step=step, loss=stats.loss, world_size=world)))

    def notice(self, epoch: int, preemption: PreemptionWatch) -> None:
        """The preemption notice's record with a checkpoint at once; its time sizes the margin of the final one."""
        notice = preemption.notice
        assert notice is not None
        started = time.perf_counter()
        record = PreemptionRecord(
            epoch=epoch,
            step=self.state.position.global_step,
            nodes=list(notice.nodes),
            ranks=list(notice.ranks),
            deadline=notice.deadline,
            world_size=self.attempt.world,
        )
        self._report(dataclasses.asdict(record))
        preemption.checkpoint_seconds = time.perf_counter() - started

    def profile(self, profiler: StepProfiler, summary: ProfileRecord | None) -> None:
        """Every rank writes its finished trace; rank 0's summary is reported (no checkpoint)."""
        import ray.train

        if summary is not None:
            record = profiler.write(RunDirectory(self.config.run_url).storage, summary)
            ray.train.report(dataclasses.asdict(record))

    def _report(self, metrics: dict[str, Any]) -> None:
        """Report ``metrics`` to Ray Train with a checkpoint of the state as it is now."""
        import ray.train

        with tempfile.TemporaryDirectory() as directory:
            save_checkpoint(self.state, self.config, self.attempt.rank, layout(self.config, self.attempt), directory)
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(directory))
            if self.after_checkpoint is not None:
                self.after_checkpoint(directory)
