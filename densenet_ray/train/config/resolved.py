"""The resolved training configuration: every default filled in, every value checked, computed once.

:class:`~densenet_ray.train.config.options.TrainConfig` is what a user writes (``None`` meaning "the paper's default");
:func:`resolve` turns it, once, at the entry point, into a :class:`ResolvedConfig`: the same options with every
default filled in, plus what follows from them (the class count, the run directory's URL). Everything after that
(the launcher, the workers, a sweep's trials) takes the resolved config; a sweep derives each trial's with
:func:`derive`. ``config.yaml`` in every run directory is :meth:`ResolvedConfig.to_document`: the options grouped
as their declarations say.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any

from densenet_ray.data.reading.input_spec import InputSpec
from densenet_ray.data.storage import child_url
from densenet_ray.errors import UserError
from densenet_ray.paths import RUNS_ROOT, absolute_location, dataset_cache
from densenet_ray.train.config.choices import NUM_CLASSES
from densenet_ray.train.config.dataset_fit import own_images
from densenet_ray.train.config.declaration import GROUPS
from densenet_ray.train.config.options import TrainConfig, training_options
from densenet_ray.train.config.tracking_uri import tracking_options, without_password

ARCHITECTURE_KEYS = ("depth", "growth_rate", "bottleneck", "reduction", "drop_rate")  # None: the named model's
MODEL_KEYS = ("num_classes", *ARCHITECTURE_KEYS, "memory_efficient")
REQUIRED_GROUPS = ("model", "data", "optim", "execution", "storage")  # runs saved before recipe/tracking lack those


def _derived(group: str) -> Any:
    return field(default="", metadata={"group": group})


@dataclass(frozen=True)
class ResolvedConfig:
    """A training run's complete, checked configuration.

    ``options`` holds every option with its default filled in (``None`` is left only where it means auto:
    ``channels_last``, ``compile``; the elastic least ``min_workers`` is always set). ``run_url`` is
    ``<storage>/<name>``, absolute, computed once on the driver. When the newest committed checkpoint does not load
    and an older one does, the launcher sets ``skip_checkpoint`` to the bad one's directory name and
    ``resume_from`` to the good one's URL (both empty: resume from Ray's latest checkpoint, if any)."""

    options: TrainConfig
    num_classes: int = field(default=0, metadata={"group": "model"})
    classes: list[str] = field(default_factory=list, metadata={"group": "data"})  # own images: the manifest's
    mean: list[float] = field(default_factory=list, metadata={"group": "data"})  # own images: per channel, 0-1
    std: list[float] = field(default_factory=list, metadata={"group": "data"})
    multi_label: bool = field(default=False, metadata={"group": "data"})
    loss_weights: list[float] = field(
        default_factory=list, metadata={"group": "optim"}
    )  # --class-weights, --pos-weight
    run_url: str = _derived("storage")
    resume_from: str = _derived("execution")
    skip_checkpoint: str = _derived("execution")

    @property
    def least_workers(self) -> int:
        """An elastic run's fewest workers (its most, ``options.workers``, for a fixed-size run)."""
        return self.options.min_workers or self.options.workers

    def input_spec(self) -> InputSpec | None:
        """What the model is fed, for your own images (None: a paper dataset's fixed transforms)."""
        options = self.options
        if options.dataset != "images":
            return None
        assert options.image_size and options.crop_pct, "resolve() fills in the image size and crop"
        return InputSpec(options.image_size, tuple(self.mean), tuple(self.std), options.crop_pct)

    def model_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of ``create_model(options.model, **kwargs)``."""
        return {"num_classes": self.num_classes, **{name: getattr(self.options, name) for name in MODEL_KEYS[1:]}}

    def to_document(self) -> dict[str, Any]:
        """The nested mapping saved as ``config.yaml`` and handed to the workers: each option under its group."""
        document: dict[str, dict[str, Any]] = {group: {} for group in GROUPS}
        for declared in training_options():
            document[declared.group][declared.key] = getattr(self.options, declared.name)
        for derived in dataclasses.fields(self)[1:]:
            document[derived.metadata["group"]][derived.name] = getattr(self, derived.name)
        return document

    @classmethod
    def from_document(cls, document: dict[str, Any]) -> ResolvedConfig:
        """The inverse of :meth:`to_document`, for documents written by any earlier version too."""
        missing = [group for group in REQUIRED_GROUPS if not isinstance(document.get(group), dict)]
        if missing:
            raise UserError(f"not a densenet-ray run configuration (no {missing[0]!r} group)")
        by_key = {(d.group, d.key): d.name for d in training_options()}
        derived = {(item.metadata["group"], item.name) for item in dataclasses.fields(cls)[1:]}
        options: dict[str, Any] = {}
        extra: dict[str, Any] = {}
        for group in GROUPS:
            for key, value in _upgraded(group, document.get(group) or {}).items():
                if (group, key) in by_key:
                    options[by_key[group, key]] = value
                elif (group, key) in derived:
                    extra[key] = value
                else:
                    raise UserError(f"not a densenet-ray run configuration (unknown {group}.{key})")
        return cls(TrainConfig(**options), **extra)

    def flat(self) -> dict[str, Any]:
        """The options as a user writes them (``TrainConfig``'s fields), for labels and tables."""
        return self.options.to_dict()

    def resuming_from(self, resume_from: str, skip_checkpoint: str) -> ResolvedConfig:
        return dataclasses.replace(self, resume_from=resume_from, skip_checkpoint=skip_checkpoint)


def _upgraded(group: str, values: dict[str, Any]) -> dict[str, Any]:
    """A saved group as today's keys: ``execution.amp`` was written before ``--precision`` replaced ``--amp``."""
    if group == "execution" and "amp" in values:
        amp = values["amp"]
        values = {key: value for key, value in values.items() if key != "amp"}
        return {**values, "precision": "fp32" if amp == "off" else amp}
    return values


def check_initial_weights(config: ResolvedConfig) -> None:
    """Load ``--init-from`` or ``--pretrained`` once into a fresh model, so a bad file or missing weights is one line
    before Ray starts."""
    options = config.options
    if not (options.init_from or options.pretrained):
        return
    from densenet_ray.models import create_model
    from densenet_ray.models.weights import load_initial_weights, pretrained_state_dict

    network = create_model(options.model, **config.model_kwargs())
    if options.pretrained:
        assert options.model is not None, "resolve() fills in the model"
        load_initial_weights(network, pretrained_state_dict(options.model), "--pretrained")
    elif options.init_from:
        load_initial_weights(network, options.init_from)


def _data_location(options: TrainConfig) -> str:
    if options.data:
        return absolute_location(options.data)
    if options.dataset in ("imagenet", "images"):
        what = "ImageNet" if options.dataset == "imagenet" else "your own images"
        raise UserError(f"--data is required for {what} (build shards with `densenet-ray data build imagefolder`)")
    return dataset_cache(options.dataset)


def _dataset_defaults(options: TrainConfig) -> TrainConfig:
    """``options`` with the dataset's default for every option declared with one and not given."""
    filled = {
        declared.name: declared.declaration.per_dataset[options.dataset]
        for declared in training_options()
        if declared.declaration.per_dataset and getattr(options, declared.name) is None
    }
    return dataclasses.replace(options, **filled)


def _architecture(options: TrainConfig, num_classes: int) -> dict[str, Any]:
    """The model's depth, growth rate, bottleneck, reduction and dropout: the options given, else the model's."""
    from densenet_ray.models import resolve_config

    given = {name: getattr(options, name) for name in ARCHITECTURE_KEYS}
    model = resolve_config(options.model, num_classes=num_classes, **given)
    return {name: getattr(model, name) for name in ARCHITECTURE_KEYS}


def resolve(options: TrainConfig, check_weights: bool = True) -> ResolvedConfig:
    """The resolved form of ``options``: dataset defaults, absolute locations, a run name, every value checked
    (:class:`UserError`, one line). ``check_weights`` loads the starting weights once to check them.

    Each check runs once: each value as given (its choices, range, form) before anything is derived from it, the
    options against each other and their dataset once every default is filled in and the data's classes are known."""
    options.check_values()
    options = dataclasses.replace(options, data=_data_location(options))
    own = None
    if options.dataset == "images":
        options, own = own_images(options)
    options = _dataset_defaults(options)
    num_classes = len(own.classes) if own else NUM_CLASSES[options.dataset]
    root = absolute_location(options.storage or RUNS_ROOT)
    name = options.name or f"{options.dataset}-{options.model}-{time.strftime('%Y%m%d-%H%M%S')}"
    options = dataclasses.replace(
        options,
        **_architecture(options, num_classes),
        source=absolute_location(options.source) if options.source else "",
        init_from=absolute_location(options.init_from) if options.init_from else "",
        min_workers=options.min_workers or options.workers,
        worker_resources=dict(options.worker_resources or {}),
        storage=root,
        name=name,
        **tracking_options(options, root),
    )
    options.check_consistency(own.multi_label if own else False, num_classes)
    described = dataclasses.asdict(own) if own else {}
    config = ResolvedConfig(options, num_classes, run_url=child_url(root, name), **described)
    if check_weights:
        check_initial_weights(config)
    return config


def anchored(options: TrainConfig, config: ResolvedConfig) -> TrainConfig:
    """``options`` with the locations ``config`` resolved them to (absolute on this driver) and no run name: the
    base a sweep's trials are derived from, saved with the sweep's state: the tracking URI without its password.
    Model and schedule options stay as the user gave them, so a trial that changes ``model`` gets that model's own
    depth and growth rate."""
    resolved = config.options
    return dataclasses.replace(
        options,
        data=resolved.data,
        storage=resolved.storage,
        name=None,
        init_from=resolved.init_from or None,
        source=resolved.source or None,
        tracking_uri=resolved.tracking_uri or without_password(options.tracking_uri or "") or None,
    )


def derive(base: TrainConfig, changes: dict[str, Any], storage_root: str, name: str) -> ResolvedConfig:
    """A sweep trial's resolved config: the sweep's :func:`anchored` base options with ``changes`` (the searched
    options) applied, checked, in the run directory ``<storage_root>/<name>``. The starting weights were checked
    with the base and are not reloaded."""
    options = TrainConfig.from_sources(base.to_dict(), changes, origins=("the sweep's options", "the trial"))
    options = dataclasses.replace(options, storage=storage_root, name=name)
    return resolve(options, check_weights=False)
