"""The Ray Train worker loop: DDP DenseNet over the sharded pipeline, an exact evaluation and a checkpoint per epoch.

Runs in every Ray Train worker. It builds its model and data itself (``train/worker_setup.py``), resumes from
``ray.train.get_checkpoint()`` (the checkpoint's own epoch and batch position, never the controller's count), runs
each epoch with that epoch's schedule, mixing and frozen backbone as arguments (``train/epoch.py``), and reports once
per epoch (and every ``checkpoint_every_steps`` steps) with a checkpoint (``train/worker_report.py``).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from densenet_ray.train.config.resolved import ResolvedConfig
from densenet_ray.train.epoch import EpochData, EpochSchedule, epoch_mixer, frozen_in, train_and_evaluate
from densenet_ray.train.nonfinite import NonFiniteSteps
from densenet_ray.train.progress.records import epoch_record, reported
from densenet_ray.train.recipe import batch_mixer
from densenet_ray.train.run.directory import EpochRecord, RunDirectory
from densenet_ray.train.stopping import stop_reason, update_bests
from densenet_ray.train.worker_report import Reporter
from densenet_ray.train.worker_rollback import Rollbacks
from densenet_ray.train.worker_setup import (
    CompileArtifacts,
    Pipelines,
    record_attempt,
    start_attempt,
    step_context,
    training_state,
)
from densenet_ray.train.worker_steps import StepWatch


class WorkerLoop:
    """One worker's training: its config, its attempt and :class:`TrainingState`, the parts built once, and one
    :func:`~densenet_ray.train.epoch.train_and_evaluate` per epoch."""

    def __init__(self, config: ResolvedConfig) -> None:
        import ray.train

        started = time.perf_counter()  # the time to the first step counts from the worker's start
        options = config.options
        self.config = config
        self.attempt = start_attempt(config, started)
        # Before anything compiles: graphs an earlier attempt compiled, wherever it ran, come from the run directory.
        artifacts = CompileArtifacts(config, self.attempt)
        checkpoint = ray.train.get_checkpoint()
        self.state = training_state(config, self.attempt, checkpoint)
        self.context = step_context(config, self.attempt, self.state)
        self.mixer = batch_mixer(
            options.mixup, options.cutmix, options.mix_prob, options.mix_switch_prob, config.num_classes, options.seed
        )
        self.pipelines = Pipelines(config, self.attempt)
        self.rollbacks = Rollbacks(config, self.attempt, self.state)
        self.context.guard = self.rollbacks.guard
        self.reporter = Reporter(config, self.attempt, self.state, after_checkpoint=self.rollbacks.keep)
        self.steps = StepWatch(config, self.attempt, self.state, self.reporter, artifacts)
        if self.attempt.rank == 0:  # every start of the group (an elastic run's restarts change its world size)
            record_attempt(config, self.attempt, self.state.position, resumed=checkpoint is not None)

    def run(self) -> EpochRecord | None:
        """Every remaining epoch; returns the last epoch's record (None: no epoch was left to run)."""
        final = None
        failed = True
        assert self.config.options.epochs is not None, "resolve() fills in the epochs"
        try:
            self.steps.profile(self.steps.profiler.step_done(self.state.position.global_step))
            while self.state.position.epoch < self.config.options.epochs:
                if self._stop_reason():  # a resumed run that had stopped early (and still would)
                    break
                try:
                    final = self.run_epoch(self.state.position.epoch)
                except NonFiniteSteps as error:  # on every rank at the same step: the guard's verdicts are shared
                    if not self.rollbacks.recover(error):
                        break
            self.steps.profile(self.steps.profiler.finish())  # the run ended inside the traced steps
            failed = False
        finally:
            self.steps.close(failed)
        return final

    def run_epoch(self, epoch: int) -> EpochRecord:
        """Train and evaluate 0-indexed ``epoch``, decide whether the run stops after it, and report its record with
        a checkpoint."""
        options, state = self.config.options, self.state
        assert options.epochs is not None, "resolve() fills in the epochs"
        batches = self.pipelines.train(epoch, state.position)
        limit = options.limit_train_batches
        steps = min(batches.total_batches, limit) if limit else batches.total_batches
        classes = self.config.classes if self.config.multi_label else None
        data = EpochData(batches, steps, self.pipelines.evaluation, options.limit_eval_batches, classes)
        schedule = EpochSchedule(options, epoch, -(-steps // options.accumulate), self.rollbacks.lr_scale())
        self.rollbacks.start_epoch(epoch, batches)
        mixer = epoch_mixer(self.mixer, epoch, self.attempt.rank)
        frozen = frozen_in(state.model, epoch, options.freeze_epochs)
        on_step = self.steps.epoch_steps(epoch, steps)
        outcome = train_and_evaluate(self.context, state, schedule, mixer, frozen, data, on_step)
        record = epoch_record(self.attempt, state.position, options.epochs, outcome)
        state.position.bests = update_bests(state.position.bests, dataclasses.asdict(record))
        stopped = self._stop_reason()
        if stopped and epoch + 1 < options.epochs:
            record = dataclasses.replace(record, stopped=stopped)
        self.steps.epoch_done(record)
        self.reporter.epoch(record)
        return record

    def _stop_reason(self) -> str | None:
        options, position = self.config.options, self.state.position
        return stop_reason(
            options.early_stop, options.stop_at_error, position.bests, position.epoch, options.limit_epochs
        )


def run_worker(document: dict[str, Any]) -> dict[str, Any]:
    """One worker's whole run (what :func:`densenet_ray.train.worker_entry.train_loop` calls): the resolved config's
    document in, rank 0's last epoch record out (the metrics it reported)."""
    loop = WorkerLoop(ResolvedConfig.from_document(document))
    final = loop.run()
    if final is None and loop.attempt.rank == 0:  # a finished or stopped run: its last recorded epoch
        epochs, _ = RunDirectory(loop.config.run_url).metrics()
        final = epochs[-1] if epochs else None
    return reported(final) if final is not None else {}
