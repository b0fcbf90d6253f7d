"""The Ray Train worker loop: DDP DenseNet over the sharded pipeline, an exact evaluation and a checkpoint per epoch.

Runs in every Ray Train worker. It builds its model and data itself, resumes from ``ray.train.get_checkpoint()``
(the checkpoint's own epoch and batch position, never the controller's count), and reports once per epoch (and
every ``checkpoint_every_steps`` steps) with a checkpoint: each report waits for the controller's next poll (about
2 s by default, ``RAY_TRAIN_HEALTH_CHECK_INTERVAL_S``), so a report per step would dominate small steps.
"""

from __future__ import annotations

import dataclasses
import random
import tempfile
import time
from typing import Any

import torch

from densenet_ray.data.epoch_plan import Layout, mix, train_batches_per_rank
from densenet_ray.data.manifest import load_manifest
from densenet_ray.data.pipeline import Loader, PipelineConfig, make_loader
from densenet_ray.data.transforms import ExtraAugment, for_dataset
from densenet_ray.train.acceleration import DDP_OPTIONS, Acceleration, choose
from densenet_ray.train.checkpoint.compile_cache import load_compile_artifacts, save_compile_artifacts
from densenet_ray.train.checkpoint.state import (
    TrainingState,
    build_model,
    checkpoint_files,
    restore,
    save_checkpoint,
    unwrap,
)
from densenet_ray.train.config.resolved import ResolvedConfig
from densenet_ray.train.config.values import parse_profile_steps
from densenet_ray.train.engine import StepContext, StepSettings, TrainStats, evaluate_each, train_epoch
from densenet_ray.train.metrics import multi_label_report, multi_label_summary
from densenet_ray.train.preemption import Action, PreemptionWatch
from densenet_ray.train.profiling import StepProfiler
from densenet_ray.train.progress.records import Attempt, InEpochProgress, epoch_record, maybe_inject_fault
from densenet_ray.train.progress.tracking import Tracking
from densenet_ray.train.recipe import WeightAverage, backbone, batch_mixer, make_optimizer, parameter_groups
from densenet_ray.train.run.directory import (
    AttemptRecord,
    MidEpochRecord,
    PreemptionRecord,
    ProfileRecord,
    RunDirectory,
)
from densenet_ray.train.schedule import learning_rate, mean_rate
from densenet_ray.train.stopping import stop_reason, update_bests

WARMUP_STEPS = 5  # steady-state throughput leaves out each epoch's first steps (allocator, loader start-up)


def _training_state(config: ResolvedConfig, attempt: Attempt, fresh: bool) -> TrainingState:
    """The model (DDP-wrapped), optimizer, scaler and moving average of a fresh start, at position zero."""
    import ray.train.torch

    options, acceleration = config.options, attempt.acceleration
    model = build_model(config, attempt.world, fresh, acceleration)
    model = ray.train.torch.prepare_model(model, parallel_strategy_kwargs=DDP_OPTIONS)
    groups = parameter_groups(model, options.weight_decay, options.no_decay_norm_bias, options.backbone_lr_scale)
    optimizer = make_optimizer(groups, options.optimizer, options.lr, options.momentum)
    scaler = torch.amp.GradScaler(attempt.device.type) if acceleration.precision == "fp16" else None
    average = WeightAverage(unwrap(model), options.ema) if options.ema else None
    return TrainingState(model, optimizer, scaler, average)


class WorkerLoop:
    """One worker's training: its config, its attempt, its :class:`TrainingState`, and one method per part of an
    epoch."""

    def __init__(self, config: ResolvedConfig) -> None:
        import ray.train
        import ray.train.torch

        started = time.perf_counter()  # the time to the first step counts from the worker's start
        context = ray.train.get_context()
        rank, world = context.get_world_rank(), context.get_world_size()
        self.config, options = config, config.options
        torch.manual_seed(options.seed + rank)
        random.seed(options.seed + rank)
        device = ray.train.torch.get_device()
        self.attempt = Attempt(rank, world, device, _acceleration(config, device), started=started)
        # Before anything compiles: graphs an earlier attempt compiled, wherever it ran, come from the run directory.
        self.run_directory = RunDirectory(config.run_url) if self.attempt.acceleration.compile else None
        self.artifacts_loaded = self.run_directory is not None and load_compile_artifacts(
            self.run_directory, options.trust_storage
        )
        checkpoint = ray.train.get_checkpoint()
        self.state = _training_state(config, self.attempt, checkpoint is None)
        if checkpoint is not None:
            with checkpoint_files(config, checkpoint) as read:
                restore(self.state, read, rank, self.layout, device)
        self.step_context = self._step_context()
        self.mixer = batch_mixer(
            options.mixup, options.cutmix, options.mix_prob, options.mix_switch_prob, config.num_classes, options.seed
        )
        extra = ExtraAugment(
            options.augment_policy, options.randaugment_ops, options.randaugment_magnitude, options.random_erasing
        )
        spec = config.input_spec()
        self.train_transform = for_dataset(options.dataset, True, options.augment, extra, spec)
        self.eval_transform = for_dataset(options.dataset, train=False, spec=spec)
        self.progress = InEpochProgress(config.run_url) if rank == 0 else None
        self.tracking = Tracking(config, self.state.position.global_step) if rank == 0 else None
        self.preemption = PreemptionWatch(world, device)
        self.profiler = StepProfiler(parse_profile_steps(options.profile_steps), rank, device.type == "cuda")
        if rank == 0:  # every start of the group, with its world size (an elastic run's restarts change it)
            position = self.state.position
            attempt = AttemptRecord(world, position.epoch, position.next_batch, checkpoint is not None)
            RunDirectory(config.run_url).append(attempt)

    @property
    def layout(self) -> Layout:
        assert self.config.options.batch_size is not None, "resolve() fills in the batch size"
        return Layout(self.attempt.world, self.config.options.loader_workers, self.config.options.batch_size)

    def _step_context(self) -> StepContext:
        options, state, acceleration = self.config.options, self.state, self.attempt.acceleration
        assert options.batch_size is not None, "resolve() fills in the batch size"
        average = state.average
        after = (lambda: average.update(unwrap(state.model))) if average is not None else None
        weights = (
            torch.tensor(self.config.loss_weights, device=self.attempt.device) if self.config.loss_weights else None
        )
        settings = StepSettings(
            multi_label=self.config.multi_label,
            loss_weights=weights,
            label_smoothing=options.label_smoothing,
            accumulate=options.accumulate,
            clip_grad_norm=options.clip_grad_norm,
            after_optimizer_step=after,
        )
        return StepContext(
            state.model,
            self.attempt.device,
            precision=acceleration.precision,
            channels_last=acceleration.channels_last,
            optimizer=state.optimizer,
            scaler=state.scaler,
            rows_per_rank=options.batch_size / self.attempt.world,
            settings=settings,
        )

    def _pipeline(self, split: str, train: bool, epoch: int = 0) -> Loader:
        options, attempt, position = self.config.options, self.attempt, self.state.position
        assert options.data is not None and options.batch_size is not None, "resolve() fills in the data and batch size"
        config = PipelineConfig(
            data=options.data,
            split=split,
            batch_size=options.batch_size,
            rank=attempt.rank,
            world_size=attempt.world,
            loader_workers=options.loader_workers,
            epoch=epoch,
            seed=options.seed,
            train=train,
            start_batch=position.next_batch if train else 0,
            history=position.history if train else (),
            pin_memory=attempt.device.type == "cuda",
            decode_device=str(attempt.device) if options.decode == "gpu" else None,
            tensor_decode=options.dataset == "images",
        )
        return make_loader(config, self.train_transform if train else self.eval_transform)

    def run(self) -> dict[str, Any]:
        """Every remaining epoch; returns the last epoch's record (rank 0's reaches the driver)."""
        final: dict[str, Any] = {}
        failed = True
        assert self.config.options.epochs is not None, "resolve() fills in the epochs"
        try:
            self._profile(self.profiler.step_done(self.state.position.global_step))
            for epoch in range(self.state.position.epoch, self.config.options.epochs):
                if self._stop_reason():  # a resumed run that had stopped early (and still would)
                    break
                final = self.run_epoch(epoch)
            self._profile(self.profiler.finish())  # the run ended inside the traced steps
            failed = False
        finally:
            if self.tracking is not None:
                self.tracking.close(failed)
        return final or self._last_record()

    def _last_record(self) -> dict[str, Any]:
        """Rank 0's last recorded epoch, for an attempt with no epoch left to run (a finished or stopped run)."""
        epochs = RunDirectory(self.config.run_url).metrics()[0] if self.attempt.rank == 0 else []
        return (
            {key: value for key, value in dataclasses.asdict(epochs[-1]).items() if value is not None} if epochs else {}
        )

    def run_epoch(self, epoch: int) -> dict[str, Any]:
        assert self.config.options.epochs is not None, "resolve() fills in the epochs"
        assert self.config.options.eval_split is not None, "resolve() fills in the evaluation split"
        batches = self._pipeline("train", True, epoch)
        limit = self.config.options.limit_train_batches
        steps = min(batches.total_batches, limit) if limit else batches.total_batches
        optimizer_steps = -(-steps // self.config.options.accumulate)
        self.step_context.set_lr = lambda index: self._set_lr(epoch, index, optimizer_steps)
        frozen = epoch < self.config.options.freeze_epochs
        settings = self.step_context.settings
        settings.frozen, settings.frozen_norms = backbone(unwrap(self.state.model)) if frozen else ((), ())
        mixer, rank = self.mixer, self.attempt.rank  # seeded per batch and rank: the same mixing on a resume
        self.step_context.settings.mixer = (
            (lambda index, images, labels: mixer(mix(epoch, index, rank), images, labels)) if mixer else None
        )
        warm: dict[str, float] = {}
        started = time.perf_counter()
        for listener in (self.progress, self.tracking):
            if listener is not None:
                listener.new_epoch()
        stats = train_epoch(
            self.step_context,
            batches,
            max_steps=steps,
            first_step=self.state.position.next_batch,
            on_step=lambda index, stats: self._after_step(epoch, index, steps, stats, warm),
        )
        train_seconds = time.perf_counter() - started
        eval_batches = self._pipeline(self.config.options.eval_split, False)
        models = [self.state.model]
        if self.state.average is not None:
            self.state.average.synchronise()
            models.append(self.state.average.module)
        results = evaluate_each(self.step_context, models, eval_batches, self.config.options.limit_eval_batches)
        position = self.state.position
        if self.config.multi_label:  # the ranking figures, from every rank's predictions gathered
            for result in results:
                assert result.outputs is not None
                result.ranking = multi_label_summary(multi_label_report(*result.outputs, self.config.classes))
        position.best_error = min(position.best_error, results[0].main_error)
        position.epoch, position.next_batch, position.history = epoch + 1, 0, ()
        steady = _steady_rate(stats, warm, started + train_seconds, self.attempt.world)
        first = self.state.optimizer.param_groups[0]
        rate = first["lr"] / first.get("lr_scale", 1.0)  # the schedule's rate (the classifier's)
        lr = (rate, mean_rate(self.config.options, epoch, optimizer_steps))
        record = epoch_record(
            self.attempt, position, self.config.options.epochs, lr, stats, results, train_seconds, steady
        )
        record["skipped_samples"] = batches.skipped + eval_batches.skipped
        position.bests = update_bests(position.bests, record)
        stopped = self._stop_reason()
        if stopped and epoch + 1 < self.config.options.epochs:
            record["stopped"] = stopped
        if self.tracking is not None:
            self.tracking.epoch(record, position.global_step)
        if self.attempt.first_step_seconds is not None:  # the attempt's first epoch: its evaluation graphs are compiled
            self._save_compile_artifacts()
        self.attempt.first_step_seconds = None  # said once per attempt
        self._report(record)
        return record

    def _profile(self, summary: ProfileRecord | None) -> None:
        """Every rank writes its finished trace; rank 0's summary is reported (every rank reports, as Ray asks)."""
        import ray.train

        if summary is not None:
            record = self.profiler.write(RunDirectory(self.config.run_url).storage, summary)
            ray.train.report(dataclasses.asdict(record))

    def _stop_reason(self) -> str | None:
        options, position = self.config.options, self.state.position
        return stop_reason(
            options.early_stop, options.stop_at_error, position.bests, position.epoch, options.limit_epochs
        )

    def _report(self, metrics: dict[str, Any]) -> None:
        """Report ``metrics`` to Ray Train with a checkpoint of the state as it is now."""
        import ray.train

        with tempfile.TemporaryDirectory() as directory:
            save_checkpoint(self.state, self.config, self.attempt.rank, self.layout, directory)
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(directory))

    def _set_lr(self, epoch: int, index: int, steps: int) -> float:
        rate = learning_rate(self.config.options, epoch, index, steps)
        for group in self.state.optimizer.param_groups:
            group["lr"] = rate * group.get("lr_scale", 1.0)
        return rate

    def _after_step(self, epoch: int, index: int, steps: int, stats: TrainStats, warm: dict[str, float]) -> None:
        position, attempt = self.state.position, self.attempt
        position.global_step += 1
        if not attempt.first_step_time:
            attempt.first_step_time, attempt.first_step_seconds = time.time(), time.perf_counter() - attempt.started
            self._save_compile_artifacts()
        if stats.steps == WARMUP_STEPS:
            warm.update(time=time.perf_counter(), samples=stats.samples)
        if self.progress is not None:
            self.progress.update(epoch, index + 1, steps, stats, attempt.world)
        if self.tracking is not None:
            self.tracking.step(position.global_step, stats, self.state.optimizer.param_groups[0]["lr"])
        maybe_inject_fault(position.global_step, attempt.rank)
        self._profile(self.profiler.step_done(position.global_step))
        # Checkpoints fall between optimizer steps: an accumulation group is never split by a resume.
        accumulate = self.config.options.accumulate
        if (index + 1) % accumulate or index + 1 >= steps:  # the epoch's end checkpoints anyway
            return
        position.epoch, position.next_batch = epoch, index + 1
        every = self.config.options.checkpoint_every_steps
        action = self.preemption.after_step()
        if action is Action.NOTICE:  # a checkpoint too: no second one at this step
            self._report_notice(epoch)
        elif action is Action.FINAL or (every and (index + 1) % (every * accumulate) == 0):
            self._report_mid_epoch(epoch, stats)
        if action is Action.FINAL:  # the node goes soon: the last steps it can take are saved, then nothing runs
            self.preemption.wait_for_the_end()

    def _report_mid_epoch(self, epoch: int, stats: TrainStats) -> None:
        step, world = self.state.position.global_step, self.attempt.world
        record = MidEpochRecord(epoch=epoch, step=step, loss=stats.loss, world_size=world)
        self._report({key: value for key, value in record.__dict__.items() if value is not None})

    def _report_notice(self, epoch: int) -> None:
        """The notice's record with a checkpoint at once; its time sizes the margin of the final one."""
        notice = self.preemption.notice
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
        self.preemption.checkpoint_seconds = time.perf_counter() - started

    def _save_compile_artifacts(self) -> None:
        if self.attempt.rank == 0 and self.run_directory is not None and not self.artifacts_loaded:
            save_compile_artifacts(self.run_directory)


def _acceleration(config: ResolvedConfig, device: torch.device) -> Acceleration:
    """How this worker's steps run: ``auto`` resolved for its device and the whole run's optimizer steps (not what
    is left: a resumed attempt must choose what the first did)."""
    options = config.options
    assert options.data is not None and options.batch_size is not None, "resolve() fills in the data and batch size"
    assert options.epochs is not None, "resolve() fills in the epochs"
    _, manifest = load_manifest(options.data, "train")
    per_epoch = train_batches_per_rank(manifest.num_samples, options.batch_size)
    limit = options.limit_train_batches
    epochs = min(options.epochs, options.limit_epochs) if options.limit_epochs else options.epochs
    planned = (min(per_epoch, limit) if limit else per_epoch) * epochs
    return choose(options.precision, options.channels_last, options.compile, device, planned)


def _steady_rate(stats: TrainStats, warm: dict[str, float], ended: float, world: int) -> float | None:
    """Images per second after the warm-up steps, over all ranks; None when the epoch was too short."""
    if not warm or stats.steps <= WARMUP_STEPS:
        return None
    return (stats.samples - warm["samples"]) * world / max(ended - warm["time"], 1e-9)


def train_loop(document: dict[str, Any]) -> dict[str, Any]:
    """``train_loop_per_worker`` for ``TorchTrainer``: the resolved config's document in, rank 0's last epoch
    record out."""
    return WorkerLoop(ResolvedConfig.from_document(document)).run()
