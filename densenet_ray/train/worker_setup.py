"""What a Ray Train worker builds once, when its attempt starts: its :class:`Attempt` (rank, device, how its steps
run), its :class:`TrainingState` (fresh or restored), the :class:`StepContext` every epoch trains with, its data
pipelines and the compile artifacts it shares with other attempts."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

import torch

from densenet_ray.data.format.manifest import load_manifest
from densenet_ray.data.reading.epoch_plan import Layout, train_batches_per_rank
from densenet_ray.data.reading.pipeline import Loader, PipelineConfig, make_loader
from densenet_ray.data.reading.transforms import ExtraAugment, for_dataset
from densenet_ray.train.acceleration import DDP_OPTIONS, Acceleration, choose
from densenet_ray.train.checkpoint.compile_cache import load_compile_artifacts, save_compile_artifacts
from densenet_ray.train.checkpoint.state import Position, TrainingState, build_model, checkpoint_files, restore, unwrap
from densenet_ray.train.config.resolved import ResolvedConfig
from densenet_ray.train.engine import StepContext, StepSettings
from densenet_ray.train.progress.records import Attempt
from densenet_ray.train.recipe import WeightAverage, make_optimizer, parameter_groups
from densenet_ray.train.run.directory import AttemptRecord, RunDirectory

if TYPE_CHECKING:
    from ray.train import Checkpoint


def start_attempt(config: ResolvedConfig, started: float) -> Attempt:
    """This worker's rank, world size and device, its seeds set (``seed + rank``), and how its steps run."""
    import ray.train
    import ray.train.torch

    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    torch.manual_seed(config.options.seed + rank)
    random.seed(config.options.seed + rank)
    device = ray.train.torch.get_device()
    return Attempt(rank, world, device, _acceleration(config, device), started=started)


def record_attempt(config: ResolvedConfig, attempt: Attempt, position: Position, resumed: bool) -> None:
    """The run's record of this start of the worker group: its world size and where training starts."""
    RunDirectory(config.run_url).append(AttemptRecord(attempt.world, position.epoch, position.next_batch, resumed))


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


def layout(config: ResolvedConfig, attempt: Attempt) -> Layout:
    """How the attempt's ranks split each epoch (a checkpoint saves it: a resume on another layout replans)."""
    assert config.options.batch_size is not None, "resolve() fills in the batch size"
    return Layout(attempt.world, config.options.loader_workers, config.options.batch_size)


def training_state(config: ResolvedConfig, attempt: Attempt, checkpoint: Checkpoint | None) -> TrainingState:
    """The model (DDP-wrapped), optimizer, scaler and moving average: fresh at position zero without a
    ``checkpoint`` (Ray's), else restored from it."""
    import ray.train.torch

    options, acceleration = config.options, attempt.acceleration
    model = build_model(config, attempt.world, checkpoint is None, acceleration)
    model = ray.train.torch.prepare_model(model, parallel_strategy_kwargs=DDP_OPTIONS)
    groups = parameter_groups(model, options.weight_decay, options.no_decay_norm_bias, options.backbone_lr_scale)
    optimizer = make_optimizer(groups, options.optimizer, options.lr, options.momentum)
    scaler = torch.amp.GradScaler(attempt.device.type) if acceleration.precision == "fp16" else None
    average = WeightAverage(unwrap(model), options.ema) if options.ema else None
    state = TrainingState(model, optimizer, scaler, average)
    if checkpoint is not None:
        with checkpoint_files(config, checkpoint) as read:
            restore(state, read, attempt.rank, layout(config, attempt), attempt.device)
    return state


def step_context(config: ResolvedConfig, attempt: Attempt, state: TrainingState) -> StepContext:
    """How every step of the run trains ``state``'s model: the attempt's numerics and the run's step settings."""
    options, acceleration = config.options, attempt.acceleration
    assert options.batch_size is not None, "resolve() fills in the batch size"
    average = state.average
    after = (lambda: average.update(unwrap(state.model))) if average is not None else None
    weights = torch.tensor(config.loss_weights, device=attempt.device) if config.loss_weights else None
    settings = StepSettings(
        multi_label=config.multi_label,
        loss_weights=weights,
        label_smoothing=options.label_smoothing,
        accumulate=options.accumulate,
        clip_grad_norm=options.clip_grad_norm,
        after_optimizer_step=after,
    )
    return StepContext(
        state.model,
        attempt.device,
        precision=acceleration.precision,
        channels_last=acceleration.channels_last,
        optimizer=state.optimizer,
        scaler=state.scaler,
        rows_per_rank=options.batch_size / attempt.world,
        settings=settings,
    )


class Pipelines:
    """The attempt's training and evaluation loaders, each epoch's from the run's transforms."""

    def __init__(self, config: ResolvedConfig, attempt: Attempt) -> None:
        self.options, self.attempt = config.options, attempt
        options = self.options
        extra = ExtraAugment(
            options.augment_policy, options.randaugment_ops, options.randaugment_magnitude, options.random_erasing
        )
        spec = config.input_spec()
        self.train_transform = for_dataset(options.dataset, True, options.augment, extra, spec)
        self.eval_transform = for_dataset(options.dataset, train=False, spec=spec)

    def train(self, epoch: int, position: Position) -> Loader:
        """``epoch``'s training batches for this rank, from ``position``'s batch on (a resume's)."""
        return make_loader(self._config("train", True, epoch, position), self.train_transform)

    def evaluation(self) -> Loader:
        """Every sample of the evaluation split once, over all ranks."""
        assert self.options.eval_split is not None, "resolve() fills in the evaluation split"
        return make_loader(self._config(self.options.eval_split, False, 0, Position()), self.eval_transform)

    def _config(self, split: str, train: bool, epoch: int, position: Position) -> PipelineConfig:
        options, attempt = self.options, self.attempt
        assert options.data is not None and options.batch_size is not None, "resolve() fills in the data and batch size"
        return PipelineConfig(
            data=options.data,
            split=split,
            batch_size=options.batch_size,
            rank=attempt.rank,
            world_size=attempt.world,
            loader_workers=options.loader_workers,
            epoch=epoch,
            seed=options.seed,
            train=train,
            start_batch=position.next_batch,
            history=position.history,
            pin_memory=attempt.device.type == "cuda",
            decode_device=str(attempt.device) if options.decode == "gpu" else None,
            tensor_decode=options.dataset == "images",
        )


class CompileArtifacts:
    """The run's compiled graphs (``--compile``): loaded before anything compiles, wherever an earlier attempt ran;
    rank 0 saves its own when it compiled afresh."""

    def __init__(self, config: ResolvedConfig, attempt: Attempt) -> None:
        self.run = RunDirectory(config.run_url) if attempt.acceleration.compile else None
        self.saves = attempt.rank == 0 and self.run is not None
        self.loaded = self.run is not None and load_compile_artifacts(self.run, config.options.trust_storage)

    def save(self) -> None:
        """After the first step (the training graphs) and the first epoch (the evaluation graphs)."""
        if self.saves and self.run is not None and not self.loaded:
            save_compile_artifacts(self.run)
