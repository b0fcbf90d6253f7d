"""The resolved training configuration: every default filled in, every value checked, grouped by concern.

:class:`~densenet_ray.train.config.TrainConfig` is what a user writes (flat options, ``None`` meaning "the paper's
default"); :func:`resolve` turns it, once, at the entry point, into a :class:`ResolvedConfig` with no optional
fields. Everything after that (the launcher, the workers, a sweep's trials) takes the resolved config; a sweep
derives each trial's with :func:`derive` from its base options, checked once. ``config.yaml`` in every run directory is
:meth:`ResolvedConfig.to_document`.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import time
from dataclasses import dataclass
from typing import Any

from densenet_ray.data.storage import child_url
from densenet_ray.errors import UserError
from densenet_ray.paths import RUNS_ROOT, absolute_location, dataset_cache
from densenet_ray.train.config import (
    DEFAULT_BATCH,
    DEFAULT_EPOCHS,
    DEFAULT_MODEL,
    EVAL_SPLIT,
    NUM_CLASSES,
    TrainConfig,
    trackers,
)


@dataclass(frozen=True)
class ModelSpec:
    """The network and its starting weights (``init_from`` empty: fresh initialisation)."""

    name: str
    num_classes: int
    depth: int
    growth_rate: int
    bottleneck: bool
    reduction: float
    drop_rate: float
    memory_efficient: bool
    init_from: str
    pretrained: bool

    def create_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of ``create_model(name, **kwargs)``."""
        fields = ("num_classes", "depth", "growth_rate", "bottleneck", "reduction", "drop_rate", "memory_efficient")
        return {name: getattr(self, name) for name in fields}


@dataclass(frozen=True)
class DataSpec:
    """Where the shards are and how they are read; ``source`` builds the default cache on first use."""

    dataset: str
    data: str
    eval_split: str
    augment: bool
    loader_workers: int
    source: str
    decode: str = "cpu"  # not part of the run's identity: both decoders augment every sample alike


@dataclass(frozen=True)
class OptimSpec:
    """SGD with Nesterov momentum (paper section 4.2) and the schedule; ``batch_size`` is global."""

    batch_size: int
    epochs: int
    lr: float
    lr_schedule: str
    momentum: float
    weight_decay: float
    seed: int


@dataclass(frozen=True)
class ExecutionSpec:
    """How the run executes: workers and their resources, numerics, checkpoints, debugging limits.

    ``precision`` is one of ``PRECISIONS``; it, ``channels_last`` and ``compile`` (``None``: auto) are resolved on
    each worker for its own device (:func:`densenet_ray.train.acceleration.choose`). When the newest committed
    checkpoint does not load and an older one does, the launcher sets ``skip_checkpoint`` to the bad one's directory
    name and ``resume_from`` to the good one's URL (both empty: resume from Ray's latest checkpoint, if any)."""

    workers: int
    gpu: bool
    cpus_per_worker: int
    worker_resources: dict[str, float]
    precision: str
    channels_last: bool | None
    compile: bool | None
    sync_bn: bool
    max_failures: int
    checkpoint_every_steps: int
    keep_checkpoints: int
    limit_train_batches: int
    limit_eval_batches: int
    resume_from: str = ""
    skip_checkpoint: str = ""
    min_workers: int = 0  # elastic when below ``workers``; 0 (and runs saved before elastic training): fixed

    @property
    def least_workers(self) -> int:
        return self.min_workers or self.workers


@dataclass(frozen=True)
class StorageSpec:
    """The run directory: ``run_url`` is ``<root>/<name>``, absolute, computed once on the driver."""

    root: str
    name: str
    run_url: str


@dataclass(frozen=True)
class RecipeSpec:
    """Training options beyond the paper's recipe, each from a maintained library; the defaults are all off.

    Batches: ``label_smoothing`` (``F.cross_entropy``), MixUp/CutMix alphas (``transforms.v2.MixUp``/``CutMix``,
    0 off) mixing a ``mix_prob`` share of batches, CutMix with ``mix_switch_prob`` when both are on. Samples:
    ``augment_policy`` (``transforms.v2`` RandAugment, TrivialAugmentWide or AutoAugment) and ``random_erasing``.
    Weights: ``ema`` decay (``swa_utils.AveragedModel``, 0 off). Steps: ``warmup`` epochs, ``clip_grad_norm`` (0
    off), ``accumulate`` batches per optimizer step, ``no_decay_norm_bias``."""

    label_smoothing: float = 0.0
    mixup: float = 0.0
    cutmix: float = 0.0
    mix_prob: float = 1.0
    mix_switch_prob: float = 0.5
    augment_policy: str = "none"
    randaugment_ops: int = 2
    randaugment_magnitude: int = 9
    random_erasing: float = 0.0
    ema: float = 0.0
    warmup: float = 0.0
    clip_grad_norm: float = 0.0
    accumulate: int = 1
    no_decay_norm_bias: bool = False


@dataclass(frozen=True)
class TrackingSpec:
    """Where metrics go besides ``metrics.jsonl`` and TensorBoard: ``log`` names services (``mlflow,wandb``)."""

    log: str = ""
    tracking_uri: str = ""
    log_every_steps: int = 50


@dataclass(frozen=True)
class ResolvedConfig:
    """A training run's complete, checked configuration (runs saved before ``recipe`` and ``tracking`` existed
    load with their defaults)."""

    model: ModelSpec
    data: DataSpec
    optim: OptimSpec
    execution: ExecutionSpec
    storage: StorageSpec
    recipe: RecipeSpec = RecipeSpec()
    tracking: TrackingSpec = TrackingSpec()

    def to_document(self) -> dict[str, Any]:
        """The nested mapping saved as ``config.yaml`` and handed to the workers."""
        return dataclasses.asdict(self)

    @classmethod
    def from_document(cls, document: dict[str, Any]) -> ResolvedConfig:
        """The inverse of :meth:`to_document`."""
        groups = {"model": ModelSpec, "data": DataSpec, "optim": OptimSpec}
        groups.update(execution=ExecutionSpec, storage=StorageSpec)
        execution = document.get("execution")
        if isinstance(execution, dict) and "amp" in execution:  # written before --precision replaced --amp
            amp = execution["amp"]
            execution = {key: value for key, value in execution.items() if key != "amp"}
            execution["precision"] = "fp32" if amp == "off" else amp
            document = {**document, "execution": execution}
        optional = {
            name: spec for name, spec in (("recipe", RecipeSpec), ("tracking", TrackingSpec)) if name in document
        }
        groups.update(optional)
        try:
            return cls(**{name: spec(**document[name]) for name, spec in groups.items()})
        except (KeyError, TypeError) as error:
            raise UserError(f"not a densenet-ray run configuration ({error})") from None

    def flat(self) -> dict[str, Any]:
        """The options as a user writes them (the fields of ``TrainConfig``), for labels and tables."""
        values: dict[str, Any] = {}
        for group in (self.model, self.data, self.optim, self.execution, self.storage, self.recipe, self.tracking):
            values.update(dataclasses.asdict(group))
        values["model"] = self.model.name
        fields = {field.name for field in dataclasses.fields(TrainConfig)}
        return {key: value for key, value in values.items() if key in fields}

    def with_execution(self, **changes: Any) -> ResolvedConfig:
        return dataclasses.replace(self, execution=dataclasses.replace(self.execution, **changes))


def _model_spec(options: TrainConfig, model_name: str) -> ModelSpec:
    from densenet_ray.models import resolve_config

    overrides = {"depth": options.depth, "growth_rate": options.growth_rate, "bottleneck": options.bottleneck}
    overrides.update(reduction=options.reduction, drop_rate=options.drop_rate)
    model = resolve_config(model_name, num_classes=NUM_CLASSES[options.dataset], **overrides)
    init_from = absolute_location(options.init_from) if options.init_from else ""
    if init_from and options.pretrained:
        raise UserError("give --init-from FILE or --pretrained, not both")
    return ModelSpec(
        model_name, NUM_CLASSES[options.dataset], model.depth, model.growth_rate, model.bottleneck,
        model.reduction, model.drop_rate, bool(options.memory_efficient), init_from, bool(options.pretrained),
    )  # fmt: skip


def check_initial_weights(model: ModelSpec) -> None:
    """Load ``--init-from`` or ``--pretrained`` once into a fresh model, so a bad file or missing weights is one line
    before Ray starts."""
    if not (model.init_from or model.pretrained):
        return
    from densenet_ray.models import create_model
    from densenet_ray.train.checkpoint import load_initial_weights, pretrained_state_dict

    network = create_model(model.name, **model.create_kwargs())
    if model.pretrained:
        load_initial_weights(network, pretrained_state_dict(model.name), "--pretrained")
    else:
        load_initial_weights(network, model.init_from)


def _data_location(options: TrainConfig) -> str:
    if options.data:
        return absolute_location(options.data)
    if options.dataset == "imagenet":
        raise UserError("--data is required for ImageNet (build shards with `densenet-ray data build imagefolder`)")
    return dataset_cache(options.dataset)


def resolve(options: TrainConfig, check_weights: bool = True) -> ResolvedConfig:
    """The resolved form of ``options``: dataset defaults, absolute locations, a run name, every value checked
    (:class:`UserError`, one line). ``check_weights`` loads the starting weights once to check them."""
    options.validate()
    dataset = options.dataset
    model = _model_spec(options, options.model or DEFAULT_MODEL[dataset])
    if check_weights:
        check_initial_weights(model)
    data = DataSpec(
        dataset, _data_location(options), options.eval_split or EVAL_SPLIT[dataset], options.augment,
        options.loader_workers, absolute_location(options.source) if options.source else "", options.decode,
    )  # fmt: skip
    optim = OptimSpec(
        DEFAULT_BATCH[dataset] if options.batch_size is None else options.batch_size,
        DEFAULT_EPOCHS[dataset] if options.epochs is None else options.epochs,
        options.lr, options.lr_schedule, options.momentum, options.weight_decay, options.seed,
    )  # fmt: skip
    execution = ExecutionSpec(
        options.workers, options.gpu, options.cpus_per_worker, dict(options.worker_resources or {}),
        options.precision, options.channels_last, options.compile, options.sync_bn, options.max_failures,
        options.checkpoint_every_steps, options.keep_checkpoints, options.limit_train_batches,
        options.limit_eval_batches, min_workers=options.min_workers or options.workers,
    )  # fmt: skip
    root = absolute_location(options.storage or RUNS_ROOT)
    name = options.name or f"{dataset}-{model.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    recipe = RecipeSpec(**{field.name: getattr(options, field.name) for field in dataclasses.fields(RecipeSpec)})
    tracking = _tracking(options, root)
    storage = StorageSpec(root, name, child_url(root, name))
    return ResolvedConfig(model, data, optim, execution, storage, recipe, tracking)


def _tracking(options: TrainConfig, root: str) -> TrackingSpec:
    """The tracking services, each checked to be installed, and MLflow's tracking URI: ``--tracking-uri``, else
    ``$MLFLOW_TRACKING_URI``, else a SQLite database in a local storage root (MLflow 3 keeps its plain-file store
    in maintenance mode, refusing it unless ``MLFLOW_ALLOW_FILE_STORE`` is set, and recommends a database)."""
    services = trackers(options.log)
    for service in services:
        if importlib.util.find_spec(service) is None:
            raise UserError(f"--log {service} needs the {service} package: pip install 'densenet-ray[{service}]'")
    uri = options.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI", "")
    if "mlflow" in services and not uri:
        if "://" in root:
            raise UserError(
                f"--log mlflow with --storage {root} needs --tracking-uri (an MLflow server or database) or "
                "MLFLOW_TRACKING_URI; a local database is made only for local storage"
            )
        uri = f"sqlite:///{os.path.join(root, 'mlflow.db')}"
    elif uri and ":" not in uri:  # a plain path: absolute, since workers run elsewhere
        uri = absolute_location(uri)
    return TrackingSpec(",".join(services), uri, options.log_every_steps)


def anchored(options: TrainConfig, config: ResolvedConfig) -> TrainConfig:
    """``options`` with the locations ``config`` resolved them to (absolute on this driver) and no run name: the
    base a sweep's trials are derived from. Model and schedule options stay as the user gave them, so a trial that
    changes ``model`` gets that model's own depth and growth rate."""
    return dataclasses.replace(
        options, data=config.data.data, storage=config.storage.root, name=None,
        init_from=config.model.init_from or None, source=config.data.source or None,
    )  # fmt: skip


def derive(base: TrainConfig, changes: dict[str, Any], storage_root: str, name: str) -> ResolvedConfig:
    """A sweep trial's resolved config: the sweep's :func:`anchored` base options with ``changes`` (the searched
    options) applied, checked, in the run directory ``<storage_root>/<name>``. The starting weights were checked
    with the base and are not reloaded."""
    options = TrainConfig.from_sources(dataclasses.asdict(base), changes, origins=("the sweep's options", "the trial"))
    options = dataclasses.replace(options, storage=storage_root, name=name)
    return resolve(options, check_weights=False)
