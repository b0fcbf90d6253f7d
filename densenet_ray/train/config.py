"""The training configuration: typed, with the paper's recipe per dataset as defaults, YAML < CLI flags."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from densenet_ray.errors import UserError

DATASETS = ("cifar10", "cifar100", "svhn", "imagenet")
DEFAULT_MODEL = {"cifar10": "densenet_bc100_k12", "cifar100": "densenet_bc100_k12", "svhn": "densenet_bc100_k12"}
DEFAULT_MODEL["imagenet"] = "densenet121"
# Paper section 4.2: batch 64 / 300 epochs on CIFAR, 64 / 40 on SVHN, 256 / 90 on ImageNet.
DEFAULT_BATCH = {"cifar10": 64, "cifar100": 64, "svhn": 64, "imagenet": 256}
DEFAULT_EPOCHS = {"cifar10": 300, "cifar100": 300, "svhn": 40, "imagenet": 90}
EVAL_SPLIT = {"cifar10": "test", "cifar100": "test", "svhn": "test", "imagenet": "val"}
NUM_CLASSES = {"cifar10": 10, "cifar100": 100, "svhn": 10, "imagenet": 1000}
PRECISIONS = ("auto", "fp32", "bf16", "fp16")  # auto: resolved on each worker (train/acceleration.py)
DECODERS = ("cpu", "gpu")  # gpu: data/device_decode.py


@dataclass
class TrainConfig:
    """A training run's options as a user writes them (YAML keys and CLI flags); ``None`` fields take the paper's
    default for the dataset when :func:`densenet_ray.train.resolved.resolve` turns them into a resolved config.

    Model: ``model`` (a registered name) and optional overrides of its depth, growth rate, bottleneck, reduction
    and dropout. Optimisation: SGD with Nesterov momentum 0.9 and weight decay 1e-4 on all parameters; ``lr``
    with the ``step`` schedule (/10 at 50 % and 75 % of the epochs for CIFAR/SVHN, every 30 epochs for ImageNet)
    or ``cosine`` (per iteration, as the original code).
    """

    dataset: str = "cifar10"
    data: str | None = None
    eval_split: str | None = None
    model: str | None = None
    depth: int | None = None
    growth_rate: int | None = None
    bottleneck: bool | None = None
    reduction: float | None = None
    drop_rate: float | None = None
    memory_efficient: bool = False
    batch_size: int | None = None
    epochs: int | None = None
    lr: float = 0.1
    lr_schedule: str = "step"
    momentum: float = 0.9
    weight_decay: float = 1e-4
    augment: bool = True
    workers: int = 2
    min_workers: int | None = None  # elastic: Ray Train runs between min_workers and workers (``--workers MIN-MAX``)
    gpu: bool = False
    cpus_per_worker: int = 1
    worker_resources: dict[str, float] | None = None
    loader_workers: int = 1
    decode: str = "cpu"
    precision: str = "auto"
    channels_last: bool | None = None
    compile: bool | None = None
    sync_bn: bool = False
    storage: str | None = None
    name: str | None = None
    max_failures: int = 0
    checkpoint_every_steps: int = 0
    keep_checkpoints: int = 2
    seed: int = 0
    limit_train_batches: int = 0
    limit_eval_batches: int = 0
    init_from: str | None = None
    pretrained: bool = False
    source: str | None = None

    def validate(self) -> None:
        """Every value in range (:class:`UserError`, one line naming the option and what would be right)."""
        if self.dataset not in DATASETS:
            raise UserError(f"unknown dataset {self.dataset!r}; choose one of: {', '.join(DATASETS)}")
        positive = {"batch_size": self.batch_size, "epochs": self.epochs, "workers": self.workers}
        positive.update(cpus_per_worker=self.cpus_per_worker, keep_checkpoints=self.keep_checkpoints)
        for name, value in positive.items():
            if value is not None and value < 1:
                raise UserError(f"--{name.replace('_', '-')} {value} must be at least 1")
        if self.min_workers is not None and not 1 <= self.min_workers <= self.workers:
            raise UserError(
                f"--workers {self.min_workers}-{self.workers}: the least workers must be between 1 and the most"
            )
        if self.batch_size is not None and self.batch_size < self.workers:
            raise UserError(
                f"global --batch-size {self.batch_size} is smaller than --workers {self.workers}; every worker needs "
                f"at least one sample a batch"
            )
        if self.lr_schedule not in ("step", "cosine"):
            raise UserError(f"--lr-schedule {self.lr_schedule!r} is not one of: step, cosine")
        if self.decode not in DECODERS:
            raise UserError(f"--decode {self.decode!r} is not one of: {', '.join(DECODERS)}")
        if self.decode == "gpu" and (self.dataset != "imagenet" or not self.gpu):
            raise UserError(
                f"--decode gpu decodes ImageNet JPEGs on the workers' GPUs; it needs --dataset imagenet and --gpu "
                f"(got {self.dataset}{' with --gpu' if self.gpu else ' without --gpu'}): use --decode cpu"
            )
        if self.precision not in PRECISIONS:
            raise UserError(f"--precision {self.precision!r} is not one of: {', '.join(PRECISIONS)}")
        if self.worker_resources is not None and (
            not isinstance(self.worker_resources, dict)
            or not all(
                isinstance(k, str) and isinstance(v, int | float) and not isinstance(v, bool) and v >= 0
                for k, v in self.worker_resources.items()
            )
            or {"CPU", "GPU"} & set(self.worker_resources)
        ):
            raise UserError(
                f"--worker-resources {self.worker_resources!r} must map custom resource names to amounts >= 0, "
                'e.g. {"fake_gpu": 1} (CPU and GPU come from --cpus-per-worker and --gpu)'
            )
        if self.sync_bn and not self.gpu and self.workers > 1:
            # torch.nn.SyncBatchNorm raises on CPU tensors as soon as it would synchronise.
            raise UserError("--sync-bn needs --gpu: PyTorch's SyncBatchNorm synchronises GPU tensors only")
        if self.lr <= 0:
            raise UserError(f"--lr {self.lr} must be positive")
        for name in ("loader_workers", "max_failures", "checkpoint_every_steps", "limit_train_batches"):
            if getattr(self, name) < 0 and not (name == "max_failures" and self.max_failures == -1):
                raise UserError(f"--{name.replace('_', '-')} {getattr(self, name)} must be >= 0")
        for name in ("limit_eval_batches", "momentum", "weight_decay"):
            if getattr(self, name) < 0:
                raise UserError(f"--{name.replace('_', '-')} {getattr(self, name)} must be >= 0")

    @classmethod
    def from_sources(
        cls,
        yaml_values: dict[str, Any] | None,
        cli_values: dict[str, Any],
        origins: tuple[str, str] = ("config file", "flags"),
    ) -> TrainConfig:
        """Code defaults < YAML file < CLI flags (flags the user did not give are ``None`` and do not override).
        Every value's type is checked; ``origins`` name the two sources in errors."""
        fields = {f.name: f for f in dataclasses.fields(cls)}
        merged: dict[str, Any] = {}
        for origin, values in zip(origins, (yaml_values or {}, cli_values), strict=True):
            unknown = sorted(set(values) - set(fields))
            if unknown:
                raise UserError(f"unknown option(s) in {origin}: {', '.join(unknown)}")
            for key, value in _split_worker_range(values, origin).items():
                if value is not None:
                    _check_type(key, value, str(fields[key].type), origin)
                    merged[key] = float(value) if "float" in str(fields[key].type) and type(value) is int else value
        return cls(**merged)


def _split_worker_range(values: dict[str, Any], origin: str) -> dict[str, Any]:
    """``workers: "MIN-MAX"`` (a flag or YAML) as ``workers: MAX, min_workers: MIN``; other values as they are."""
    text = values.get("workers")
    if not isinstance(text, str):
        return values
    least, dash, most = text.strip().partition("-")
    try:
        low, high = (int(least), int(most)) if dash else (int(least), int(least))
    except ValueError:
        raise UserError(f"workers: {text!r} in {origin} must be N or MIN-MAX, e.g. 4 or 2-4") from None
    return {**values, "workers": high, "min_workers": low if dash else values.get("min_workers")}


_TYPE_NAMES = {"str": "a string", "int": "an integer", "float": "a number", "bool": "true or false"}


def _check_type(key: str, value: Any, annotation: str, origin: str) -> None:
    """``value`` fits the field's annotation (``int | None``, ``dict[str, float] | None``, ...); bools are not
    numbers here, integers are numbers."""
    kinds = [part.strip() for part in annotation.split("|") if part.strip() != "None"]
    kind = kinds[0].split("[")[0]
    if kind == "dict":
        fits = isinstance(value, dict)
    elif kind == "bool":
        fits = isinstance(value, bool)
    elif kind == "int":
        fits = isinstance(value, int) and not isinstance(value, bool)
    elif kind == "float":
        fits = isinstance(value, int | float) and not isinstance(value, bool)
    else:
        fits = isinstance(value, str)
    if not fits:
        expected = _TYPE_NAMES.get(kind, "a mapping of names to numbers")
        raise UserError(f"{key}: {value!r} in {origin} must be {expected}")


def read_yaml_mapping(path: str, flag: str, expected: str) -> dict[str, Any]:
    """The mapping in the YAML file ``path`` (given as ``flag``); ``ValueError`` with one line when it cannot be read,
    is not YAML, or is not a mapping (``expected`` says what it should hold)."""
    import yaml

    try:
        with open(path) as handle:
            document = yaml.safe_load(handle)
    except OSError as error:
        raise UserError(f"{flag} {path}: {error.strerror}") from None
    except yaml.YAMLError as error:
        raise UserError(f"{flag} {path} is not valid YAML ({str(error).splitlines()[0]})") from None
    if document is None:
        document = {}
    if not isinstance(document, dict):
        raise UserError(f"{flag} {path} must hold {expected}")
    return document


def learning_rate(optim: Any, dataset: str, epoch: int, iteration: int, iterations_per_epoch: int) -> float:
    """The learning rate for 0-indexed ``epoch`` and ``iteration`` under the original code's schedules, for an
    :class:`~densenet_ray.train.resolved.OptimSpec` ``optim``.

    step, CIFAR/SVHN: divided by 10 once the 1-indexed epoch reaches 50 % and again at 75 % of the epochs (for 300
    epochs: 149 at 0.1, 75 at 0.01, 76 at 0.001). step, ImageNet: 0.1 ** floor(epoch / 30). cosine: per iteration,
    0.5 * lr * (1 + cos(pi * t / T)) with t counted over the whole run.
    """
    if optim.lr_schedule == "cosine":
        total = optim.epochs * iterations_per_epoch
        current = epoch * iterations_per_epoch + iteration
        return 0.5 * optim.lr * (1 + math.cos(math.pi * current / total))
    if dataset == "imagenet":
        return optim.lr * 0.1 ** (epoch // 30)
    one_indexed = epoch + 1
    drops = int(one_indexed >= 0.5 * optim.epochs) + int(one_indexed >= 0.75 * optim.epochs)
    return optim.lr * 0.1**drops
