"""A trained model out of its run: a checkpoint (or a run directory's best or last one) as a network in evaluation
mode, with what anyone using it needs: its dataset's evaluation input (size, normalisation) and its class names.
``evaluate``, ``export`` and ``predict`` all load models through here."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from torch import nn

from densenet_ray.data.reading.input_spec import InputSpec
from densenet_ray.data.storage import StorageError, open_storage
from densenet_ray.errors import DataError, UserError
from densenet_ray.models.weights import load_checkpoint, load_initial_weights, state_dict_of
from densenet_ray.paths import absolute_location
from densenet_ray.train.config.choices import NUM_CLASSES, WEIGHTS, WHICH
from densenet_ray.train.config.options import TrainConfig
from densenet_ray.train.config.resolved import ARCHITECTURE_KEYS
from densenet_ray.train.run.directory import SNAPSHOT_FILE, RunDirectory, read_config_document


@dataclass
class TrainedModel:
    """A network in evaluation mode on the CPU and what describes it.

    Attributes:
        network: the model, weights loaded.
        name: its registered model name.
        dataset: the dataset it was trained on (its evaluation transform and class count).
        weights: ``raw`` or ``ema`` (the moving average of the weights, ``--ema`` runs).
        source: the checkpoint it was loaded from.
        classes: class names (from the run's manifest), or the class indices as strings.
        create_kwargs: what ``create_model(name, **create_kwargs)`` builds the network from.
        options: the run's training options (every default, ``TrainConfig()``, for a plain state_dict).
        input: what a model trained on your own images is fed (None: its paper dataset's evaluation input).
        multi_label: the model scores each class on its own (sigmoid outputs), for multi-label data.
    """

    network: nn.Module
    name: str
    dataset: str
    weights: str
    source: str
    classes: list[str]
    create_kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)
    options: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    input: InputSpec | None = None
    multi_label: bool = False

    @property
    def input_size(self) -> int:
        """The side of the square images the model is evaluated on."""
        return self.input.size if self.input else _eval_input(self.dataset)[0]

    def describe(self) -> dict[str, Any]:
        """The model card written beside an export: what a loader needs to feed and read the model."""
        size, mean, std = (
            (self.input.size, self.input.mean, self.input.std) if self.input else _eval_input(self.dataset)
        )
        crop = {"crop_pct": self.input.crop_pct} if self.input else {}
        return {
            "model": self.name,
            "dataset": self.dataset,
            "num_classes": len(self.classes),
            "classes": self.classes,
            "input_size": [3, size, size],
            "mean": list(mean),
            "std": list(std),
            **crop,
            "multi_label": self.multi_label,
            "outputs": "sigmoid" if self.multi_label else "softmax",
            "weights": self.weights,
            "source": self.source,
            "create_model": {"name": self.name, **self.create_kwargs},
        }


def _eval_input(dataset: str) -> tuple[int, tuple[float, ...], tuple[float, ...]]:
    # imported here: a training driver finds its run's checkpoints through this module, and needs no torchvision (2 s)
    from densenet_ray.data.reading.transforms import eval_input

    return eval_input(dataset)


def checkpoint_location(location: str, which: str = "last", weights: str | None = None) -> str:
    """``location`` itself, or for a run directory its last committed checkpoint, or its best: the lowest test error
    of its epoch-end checkpoints (of the moving average's, unless ``weights`` is ``raw``, when the run has one)."""
    if which not in WHICH:
        raise UserError(f"--which {which!r} is not one of: {', '.join(WHICH)}")
    location = absolute_location(location)
    try:
        is_run = open_storage(location).exists(SNAPSHOT_FILE)
    except StorageError as error:
        raise UserError(f"{location}: {error}") from None
    if not is_run:
        return location
    run = RunDirectory(location)
    committed = run.committed_checkpoints()
    if not committed:
        raise UserError(f"run {location} has no committed checkpoint yet")
    if which == "last":
        return run.checkpoint_url(committed[0])
    metrics, best = run.checkpoint_metrics(), None
    for name in committed:  # newest first: a tie goes to the newer checkpoint
        test_error = _error(metrics.get(name, {}), weights)
        if test_error is not None and (best is None or test_error < best[0]):
            best = (test_error, name)
    if best is None:
        raise UserError(f"run {location} has no epoch-end checkpoint with a test error; use --which last")
    return run.checkpoint_url(best[1])


def _error(metrics: dict[str, Any], weights: str | None) -> float | None:
    if weights != "raw" and metrics.get("ema_test_error") is not None:
        return metrics["ema_test_error"]
    return metrics.get("test_error")


def load_trained(
    location: str,
    which: str = "last",
    weights: str | None = None,
    model: str | None = None,
    dataset: str | None = None,
    flag: str = "checkpoint",
) -> TrainedModel:
    """The model in ``location`` (a run checkpoint, a run directory, or a torchvision-format state_dict with
    ``model`` and ``dataset`` given). ``weights``: ``ema``, ``raw``, or None for the moving average when the
    checkpoint has one."""
    from densenet_ray.models import create_model

    if weights is not None and weights not in WEIGHTS:
        raise UserError(f"--weights {weights!r} is not one of: {', '.join(WEIGHTS)}")
    source = checkpoint_location(location, which, weights)
    loaded = load_checkpoint(source, flag)
    try:
        resolved = read_config_document(loaded.get("config")) if isinstance(loaded, dict) else None
    except ValueError as error:
        raise UserError(f"{source}: {error}") from None
    saved = resolved.options if resolved else TrainConfig()
    dataset = dataset or saved.dataset
    if dataset == "images" and (resolved is None or not resolved.classes):
        raise UserError(f"{location} holds no run configuration: a model of your own images loads from its run")
    name = model or saved.model
    if not name:
        raise UserError(f"{location} is a plain state_dict: give --model (and --dataset)")
    if weights is None:
        weights = "ema" if isinstance(loaded, dict) and isinstance(loaded.get("ema"), dict) else "raw"
    num_classes = resolved.num_classes if resolved and resolved.num_classes else NUM_CLASSES[dataset]
    architecture = {key: getattr(saved, key) for key in ARCHITECTURE_KEYS if getattr(saved, key) is not None}
    kwargs = {"num_classes": num_classes, **architecture}
    network = create_model(name, **kwargs)
    load_initial_weights(network, state_dict_of(loaded, source, flag, weights == "ema"), flag)
    network.eval()
    return TrainedModel(
        network=network,
        name=name,
        dataset=dataset,
        weights=weights,
        source=source,
        classes=list(resolved.classes) if resolved and resolved.classes else class_names(saved, dataset),
        create_kwargs=kwargs,
        options=saved,
        input=resolved.input_spec() if resolved and dataset == "images" else None,
        multi_label=bool(resolved and resolved.multi_label),
    )


def class_names(options: TrainConfig, dataset: str) -> list[str]:
    """The class names in the run's manifest (its evaluation split's, else its training split's); the class
    indices when the data is not reachable from here. The checkpoint may be someone else's: its data URL is read
    through this machine's own storage settings, never an endpoint the URL names."""
    from densenet_ray.data.format.manifest import load_manifest
    from densenet_ray.data.storage import without_endpoint

    count = NUM_CLASSES[dataset]
    data = without_endpoint(options.data) if options.data else None
    for split in (options.eval_split, "train"):
        if not data or not split:
            continue
        try:
            _, manifest = load_manifest(data, split)
        except (UserError, DataError, StorageError, OSError, ValueError):
            continue
        if len(manifest.classes) == count:
            return list(manifest.classes)
    return [str(index) for index in range(count)]
