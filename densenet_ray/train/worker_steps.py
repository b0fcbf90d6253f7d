"""What a worker does after every training step besides the step itself: count it, time the attempt's first step,
tell the progress file and the trackers, inject the recovery tests' fault, trace ``--profile-steps``, and checkpoint
inside the epoch (every ``--checkpoint-every-steps`` optimizer steps, and when a preemption notice comes)."""

from __future__ import annotations

import time
from collections.abc import Callable

from densenet_ray.train.checkpoint.state import TrainingState
from densenet_ray.train.config.resolved import ResolvedConfig
from densenet_ray.train.config.values import parse_profile_steps
from densenet_ray.train.engine import TrainStats
from densenet_ray.train.preemption import Action, PreemptionWatch
from densenet_ray.train.profiling import StepProfiler
from densenet_ray.train.progress.records import Attempt, InEpochProgress, maybe_inject_fault
from densenet_ray.train.progress.tracking import Tracking
from densenet_ray.train.run.directory import EpochRecord, ProfileRecord
from densenet_ray.train.worker_report import Reporter
from densenet_ray.train.worker_setup import CompileArtifacts


class StepWatch:
    """One worker's listeners: rank 0's progress file and trackers, the preemption watch and the step profiler."""

    def __init__(
        self,
        config: ResolvedConfig,
        attempt: Attempt,
        state: TrainingState,
        reporter: Reporter,
        artifacts: CompileArtifacts,
    ) -> None:
        self.options, self.attempt, self.state = config.options, attempt, state
        self.reporter, self.artifacts = reporter, artifacts
        rank = attempt.rank
        self.progress = InEpochProgress(config.run_url) if rank == 0 else None
        self.tracking = Tracking(config, state.position.global_step) if rank == 0 else None
        self.preemption = PreemptionWatch(attempt.world, attempt.device)
        on_gpu = attempt.device.type == "cuda"
        self.profiler = StepProfiler(parse_profile_steps(self.options.profile_steps), rank, on_gpu)

    def epoch_steps(self, epoch: int, steps: int) -> Callable[[int, TrainStats], None]:
        """The ``on_step`` of ``epoch`` (of ``steps`` batches), its measurements started."""
        for listener in (self.progress, self.tracking):
            if listener is not None:
                listener.new_epoch()
        return lambda index, stats: self._after_step(epoch, index, steps, stats)

    def _after_step(self, epoch: int, index: int, steps: int, stats: TrainStats) -> None:
        position, attempt = self.state.position, self.attempt
        position.global_step += 1
        if not attempt.first_step_time:
            attempt.first_step_time, attempt.first_step_seconds = time.time(), time.perf_counter() - attempt.started
            self.artifacts.save()
        if self.progress is not None:
            self.progress.update(epoch, index + 1, steps, stats, attempt.world)
        if self.tracking is not None:
            self.tracking.step(position.global_step, stats, self.state.optimizer.param_groups[0]["lr"])
        maybe_inject_fault(position.global_step, attempt.rank)
        self.profile(self.profiler.step_done(position.global_step))
        # Checkpoints fall between optimizer steps: an accumulation group is never split by a resume.
        if (index + 1) % self.options.accumulate or index + 1 >= steps:  # the epoch's end checkpoints anyway
            return
        position.epoch, position.next_batch = epoch, index + 1
        self._checkpoint(epoch, index, stats)

    def _checkpoint(self, epoch: int, index: int, stats: TrainStats) -> None:
        """A mid-epoch checkpoint when one is due: every ``--checkpoint-every-steps`` optimizer steps, at once on a
        preemption notice, and as the last one before the node goes."""
        every, accumulate = self.options.checkpoint_every_steps, self.options.accumulate
        action = self.preemption.after_step()
        if action is Action.NOTICE:  # a checkpoint too: no second one at this step
            self.reporter.notice(epoch, self.preemption)
        elif action is Action.FINAL or (every and (index + 1) % (every * accumulate) == 0):
            self.reporter.mid_epoch(epoch, stats)
        if action is Action.FINAL:  # the node goes soon: the last steps it can take are saved, then nothing runs
            self.preemption.wait_for_the_end()

    def epoch_done(self, record: EpochRecord) -> None:
        """The epoch's record to the trackers; the evaluation graphs of the attempt's first epoch to the run."""
        if self.tracking is not None:
            self.tracking.epoch(record, self.state.position.global_step)
        if self.attempt.first_step_seconds is not None:  # the attempt's first epoch: its evaluation graphs compiled
            self.artifacts.save()
        self.attempt.first_step_seconds = None  # said once per attempt

    def profile(self, summary: ProfileRecord | None) -> None:
        """A finished ``--profile-steps`` trace (None while none is): written, and rank 0's summary reported."""
        self.reporter.profile(self.profiler, summary)

    def close(self, failed: bool) -> None:
        """The trackers' files to the run directory; their runs ended (as failed when training raised)."""
        if self.tracking is not None:
            self.tracking.close(failed)
