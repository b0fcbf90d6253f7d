"""The Ray Train worker loop: DDP DenseNet over the sharded pipeline, an exact evaluation and a checkpoint per epoch.

Runs in every Ray Train worker. It builds its model and data itself, resumes from ``ray.train.get_checkpoint()``
(the checkpoint's own epoch and batch position, never the controller's count), and reports once per epoch (and
every ``checkpoint_every_steps`` steps) with a checkpoint: each report waits for the controller's next poll (about
2 s by default, ``RAY_TRAIN_HEALTH_CHECK_INTERVAL_S``), so a report per step would dominate small steps.
"""

from __future__ import annotations

import random
import tempfile
import time
from typing import Any

import torch

from densenet_ray.data.epoch_plan import Layout, mix, train_batches_per_rank
from densenet_ray.data.manifest import load_manifest
from densenet_ray.data.pipeline import EpochLoader, PipelineConfig, make_loader
from densenet_ray.data.transforms import ExtraAugment, for_dataset
from densenet_ray.train.acceleration import DDP_OPTIONS, choose
from densenet_ray.train.compile_cache import load_compile_artifacts, save_compile_artifacts
from densenet_ray.train.config import NUM_CLASSES, learning_rate
from densenet_ray.train.engine import StepContext, StepRecipe, TrainStats, evaluate_each, train_epoch
from densenet_ray.train.progress import InEpochProgress, epoch_record, maybe_inject_fault
from densenet_ray.train.recipe import WeightAverage, batch_mixer, parameter_groups
from densenet_ray.train.resolved import ResolvedConfig
from densenet_ray.train.run_dir import AttemptRecord, MidEpochRecord, RunDirectory
from densenet_ray.train.tracking import Tracking
from densenet_ray.train.worker_state import TrainingState, build_model, load_resume_state, save_checkpoint, unwrap

WARMUP_STEPS = 5  # steady-state throughput leaves out each epoch's first steps (allocator, loader start-up)


class WorkerLoop:
    """One worker's training: the model, its optimiser and position, and one method per part of an epoch."""

    def __init__(self, config: ResolvedConfig) -> None:
        import ray.train
        import ray.train.torch

        self.started = time.perf_counter()
        context = ray.train.get_context()
        self.config = config
        self.rank, self.world = context.get_world_rank(), context.get_world_size()
        torch.manual_seed(config.optim.seed + self.rank)
        random.seed(config.optim.seed + self.rank)
        self.device = ray.train.torch.get_device()
        execution = config.execution
        self.acceleration = choose(
            execution.precision, execution.channels_last, execution.compile, self.device, self._planned_steps()
        )
        # Before anything compiles: graphs an earlier attempt compiled, wherever it ran, come from the run directory.
        self.run_directory = RunDirectory(config.storage.run_url) if self.acceleration.compile else None
        self.artifacts_loaded = self.run_directory is not None and load_compile_artifacts(self.run_directory)
        checkpoint = ray.train.get_checkpoint()
        model = build_model(config, self.world, checkpoint is None, self.acceleration)
        self.model = ray.train.torch.prepare_model(model, parallel_strategy_kwargs=DDP_OPTIONS)
        optim, recipe = config.optim, config.recipe
        groups = parameter_groups(self.model, optim.weight_decay, recipe.no_decay_norm_bias)
        self.optimizer = torch.optim.SGD(groups, lr=optim.lr, momentum=optim.momentum, nesterov=True)
        scaler = torch.amp.GradScaler(self.device.type) if self.acceleration.precision == "fp16" else None
        self.average = WeightAverage(unwrap(self.model), recipe.ema) if recipe.ema else None
        self.state = TrainingState()
        load_resume_state(self, checkpoint, scaler)
        self.step_context = StepContext(
            self.model, self.device, self.acceleration.precision, self.acceleration.channels_last
        )
        self.step_context.optimizer, self.step_context.scaler = self.optimizer, scaler
        self.step_context.rows_per_rank = config.optim.batch_size / self.world
        self.step_context.recipe = self._step_recipe()
        self.mixer = batch_mixer(
            recipe.mixup, recipe.cutmix, recipe.mix_prob, recipe.mix_switch_prob, NUM_CLASSES[config.data.dataset],
            optim.seed,
        )  # fmt: skip
        extra = ExtraAugment(
            recipe.augment_policy, recipe.randaugment_ops, recipe.randaugment_magnitude, recipe.random_erasing
        )
        self.train_transform = for_dataset(config.data.dataset, train=True, augment=config.data.augment, extra=extra)
        self.eval_transform = for_dataset(config.data.dataset, train=False)
        self.progress = InEpochProgress(config.storage.run_url) if self.rank == 0 else None
        self.tracking = Tracking(config, self.state.global_step) if self.rank == 0 else None
        self.first_step_time = 0.0  # wall clock (Unix) when this attempt's first optimizer step finished
        self.first_step_seconds: float | None = None  # from this loop's start: model build, compile, warm-up
        if self.rank == 0:  # every start of the group, with its world size (an elastic run's restarts change it)
            attempt = AttemptRecord(self.world, self.state.epoch, self.state.next_batch, checkpoint is not None)
            RunDirectory(config.storage.run_url).append(attempt)

    @property
    def layout(self) -> Layout:
        return Layout(self.world, self.config.data.loader_workers, self.config.optim.batch_size)

    def _pipeline(self, split: str, train: bool, epoch: int = 0) -> EpochLoader:
        data = self.config.data
        config = PipelineConfig(
            data.data, split, self.config.optim.batch_size, self.rank, self.world, data.loader_workers,
            epoch=epoch, seed=self.config.optim.seed, train=train, start_batch=self.state.next_batch if train else 0,
            history=self.state.history if train else (), pin_memory=self.device.type == "cuda",
            decode_device=str(self.device) if data.decode == "gpu" else None,
        )  # fmt: skip
        return make_loader(config, self.train_transform if train else self.eval_transform)

    def _planned_steps(self) -> int:
        """The whole run's optimizer steps (not what is left: a resumed attempt must choose what the first did)."""
        _, manifest = load_manifest(self.config.data.data, "train")
        per_epoch = train_batches_per_rank(manifest.num_samples, self.config.optim.batch_size)
        limit = self.config.execution.limit_train_batches
        return (min(per_epoch, limit) if limit else per_epoch) * self.config.optim.epochs

    def _step_recipe(self) -> StepRecipe:
        recipe = self.config.recipe
        average = self.average
        after = (lambda: average.update(unwrap(self.model))) if average is not None else None
        return StepRecipe(recipe.label_smoothing, None, recipe.accumulate, recipe.clip_grad_norm, after)

    def run(self) -> dict[str, Any]:
        """Every remaining epoch; returns the last epoch's record (rank 0's reaches the driver)."""
        final: dict[str, Any] = {}
        failed = True
        try:
            for epoch in range(self.state.epoch, self.config.optim.epochs):
                final = self.run_epoch(epoch)
            failed = False
        finally:
            if self.tracking is not None:
                self.tracking.close(failed)
        return final

    def run_epoch(self, epoch: int) -> dict[str, Any]:
        import ray.train

        batches = self._pipeline("train", True, epoch)
        limit = self.config.execution.limit_train_batches
        steps = min(batches.total_batches, limit) if limit else batches.total_batches
        optimizer_steps = -(-steps // self.config.recipe.accumulate)
        self.step_context.set_lr = lambda index: self._set_lr(epoch, index, optimizer_steps)
        mixer = self.mixer  # seeded per batch and rank: the same mixing on a resume
        self.step_context.recipe.mixer = (
            (lambda index, images, labels: mixer(mix(epoch, index, self.rank), images, labels)) if mixer else None
        )
        warm: dict[str, float] = {}
        started = time.perf_counter()
        if self.progress is not None:
            self.progress.new_epoch()
        if self.tracking is not None:
            self.tracking.new_epoch()
        stats = train_epoch(
            self.step_context, batches, max_steps=steps, first_step=self.state.next_batch,
            on_step=lambda index, stats: self._after_step(epoch, index, steps, stats, warm),
        )  # fmt: skip
        train_seconds = time.perf_counter() - started
        eval_batches = self._pipeline(self.config.data.eval_split, False)
        models = [self.model]
        if self.average is not None:
            self.average.synchronise()
            models.append(self.average.module)
        results = evaluate_each(self.step_context, models, eval_batches, self.config.execution.limit_eval_batches)
        self.state.best_error = min(self.state.best_error, results[0].top1_error)
        steady = _steady_rate(stats, warm, started + train_seconds, self.world)
        record = epoch_record(self, epoch, stats, results, train_seconds, steady)
        record["skipped_samples"] = batches.skipped + eval_batches.skipped
        if self.tracking is not None:
            self.tracking.epoch(record, self.state.global_step)
        if self.first_step_seconds is not None:  # the attempt's first epoch: its evaluation graphs are compiled now
            self._save_compile_artifacts()
        self.first_step_seconds = None  # said once per attempt
        self.state.epoch, self.state.next_batch, self.state.history = epoch + 1, 0, ()
        with tempfile.TemporaryDirectory() as directory:
            save_checkpoint(self, directory)
            ray.train.report(record, checkpoint=ray.train.Checkpoint.from_directory(directory))
        return record

    def _set_lr(self, epoch: int, index: int, steps: int) -> float:
        warmup = self.config.recipe.warmup
        rate = learning_rate(self.config.optim, self.config.data.dataset, epoch, index, steps, warmup)
        for group in self.optimizer.param_groups:
            group["lr"] = rate
        return rate

    def _after_step(self, epoch: int, index: int, steps: int, stats: TrainStats, warm: dict[str, float]) -> None:
        self.state.global_step += 1
        if not self.first_step_time:
            self.first_step_time, self.first_step_seconds = time.time(), time.perf_counter() - self.started
            self._save_compile_artifacts()
        if stats.steps == WARMUP_STEPS:
            warm.update(time=time.perf_counter(), samples=stats.samples)
        if self.progress is not None:
            self.progress.update(epoch, index + 1, steps, stats, self.world)
        if self.tracking is not None:
            self.tracking.step(self.state.global_step, stats, self.optimizer.param_groups[0]["lr"])
        maybe_inject_fault(self.state.global_step, self.rank)
        # Checkpoints fall between optimizer steps: an accumulation group is never split by a resume.
        every = self.config.execution.checkpoint_every_steps * self.config.recipe.accumulate
        if every and (index + 1) % every == 0 and index + 1 < steps:
            self._mid_epoch_checkpoint(epoch, index + 1, stats)

    def _save_compile_artifacts(self) -> None:
        if self.rank == 0 and self.run_directory is not None and not self.artifacts_loaded:
            save_compile_artifacts(self.run_directory)

    def _mid_epoch_checkpoint(self, epoch: int, next_batch: int, stats: TrainStats) -> None:
        import ray.train

        self.state.epoch, self.state.next_batch = epoch, next_batch
        with tempfile.TemporaryDirectory() as directory:
            save_checkpoint(self, directory)
            record = MidEpochRecord(epoch=epoch, step=self.state.global_step, loss=stats.loss, world_size=self.world)
            metrics = {key: value for key, value in record.__dict__.items() if value is not None}
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(directory))


def _steady_rate(stats: TrainStats, warm: dict[str, float], ended: float, world: int) -> float | None:
    """Images per second after the warm-up steps, over all ranks; None when the epoch was too short."""
    if not warm or stats.steps <= WARMUP_STEPS:
        return None
    return (stats.samples - warm["samples"]) * world / max(ended - warm["time"], 1e-9)


def train_loop(document: dict[str, Any]) -> dict[str, Any]:
    """``train_loop_per_worker`` for ``TorchTrainer``: the resolved config's document in, rank 0's last epoch
    record out."""
    return WorkerLoop(ResolvedConfig.from_document(document)).run()
