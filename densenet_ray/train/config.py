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
AUGMENT_POLICIES = ("none", "randaugment", "trivialaugment", "autoaugment")  # torchvision.transforms.v2's
TRACKERS = ("mlflow", "wandb")  # through ray.air.integrations; TensorBoard is always written


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
    # Modern recipe options (all off by default; the paper's recipe is the default): see the README's "Recipes".
    label_smoothing: float = 0.0
    mixup: float = 0.0  # Beta(alpha, alpha) of MixUp; 0 is off
    cutmix: float = 0.0  # Beta(alpha, alpha) of CutMix; 0 is off
    mix_prob: float = 1.0  # the probability that a batch is mixed at all
    mix_switch_prob: float = 0.5  # with both on: the probability of CutMix rather than MixUp
    augment_policy: str = "none"
    randaugment_ops: int = 2
    randaugment_magnitude: int = 9
    random_erasing: float = 0.0  # the probability of erasing a rectangle of a training image
    ema: float = 0.0  # decay of the weights' exponential moving average; 0 is off
    warmup: float = 0.0  # epochs of linear learning-rate warmup, per iteration
    clip_grad_norm: float = 0.0  # the gradients' largest total 2-norm; 0 is off
    accumulate: int = 1  # batches whose gradients add up to one optimizer step
    no_decay_norm_bias: bool = False
    # Tracking: TensorBoard files in every run directory, optionally MLflow and W&B.
    log: str = ""  # comma-separated: mlflow, wandb
    tracking_uri: str | None = None
    log_every_steps: int = 50

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
        _validate_recipe(self)

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


def _validate_recipe(config: TrainConfig) -> None:
    """The modern recipe and tracking options in range (one line naming the option and what would be right)."""
    ranges = {
        "label_smoothing": (0.0, 1.0, False), "mix_prob": (0.0, 1.0, True), "mix_switch_prob": (0.0, 1.0, True),
        "random_erasing": (0.0, 1.0, True), "ema": (0.0, 1.0, False), "randaugment_magnitude": (0, 30, True),
    }  # fmt: skip
    for name, (low, high, closed) in ranges.items():
        value = getattr(config, name)
        if not (low <= value <= high if closed else low <= value < high):
            right = "]" if closed else ")"
            raise UserError(f"--{name.replace('_', '-')} {value} must be in [{low}, {high}{right}")
    for name in ("mixup", "cutmix", "warmup", "clip_grad_norm"):
        if getattr(config, name) < 0:
            raise UserError(f"--{name.replace('_', '-')} {getattr(config, name)} must be >= 0 (0 is off)")
    for name in ("accumulate", "randaugment_ops", "log_every_steps"):
        if getattr(config, name) < 1:
            raise UserError(f"--{name.replace('_', '-')} {getattr(config, name)} must be at least 1")
    if config.augment_policy not in AUGMENT_POLICIES:
        raise UserError(f"--augment-policy {config.augment_policy!r} is not one of: {', '.join(AUGMENT_POLICIES)}")
    if config.decode == "gpu" and (config.augment_policy != "none" or config.random_erasing):
        chosen = config.augment_policy if config.augment_policy != "none" else "random-erasing"
        raise UserError(
            f"--{chosen} augments one image at a time in the loader processes, which --decode gpu bypasses: use "
            "--decode cpu"
        )
    unknown = [name for name in trackers(config.log) if name not in TRACKERS]
    if unknown:
        raise UserError(f"--log {config.log!r}: {unknown[0]!r} is not one of: {', '.join(TRACKERS)}")


def trackers(log: str) -> list[str]:
    """The tracking services named in a ``--log`` value (``"mlflow,wandb"``)."""
    return [name.strip() for name in log.split(",") if name.strip()]


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


def learning_rate(
    optim: Any, dataset: str, epoch: int, iteration: int, iterations_per_epoch: int, warmup: float = 0.0
) -> float:
    """The learning rate for 0-indexed ``epoch`` and ``iteration`` (optimizer steps) under the original code's
    schedules, for an :class:`~densenet_ray.train.resolved.OptimSpec` ``optim``.

    step, CIFAR/SVHN: divided by 10 once the 1-indexed epoch reaches 50 % and again at 75 % of the epochs (for 300
    epochs: 149 at 0.1, 75 at 0.01, 76 at 0.001). step, ImageNet: 0.1 ** floor(epoch / 30). cosine: per iteration,
    0.5 * lr * (1 + cos(pi * t / T)) with t counted over the whole run.

    ``warmup`` epochs of linear warmup scale the schedule's rate by ``(t + 1) / T_w`` for the first ``T_w`` steps
    (Goyal et al. 2017, "Accurate, Large Minibatch SGD", section 2.2: gradual warmup).
    """
    current = epoch * iterations_per_epoch + iteration
    warmup_steps = round(warmup * iterations_per_epoch)
    factor = (current + 1) / warmup_steps if current < warmup_steps else 1.0
    if optim.lr_schedule == "cosine":
        total = optim.epochs * iterations_per_epoch
        return factor * 0.5 * optim.lr * (1 + math.cos(math.pi * current / total))
    if dataset == "imagenet":
        return factor * optim.lr * 0.1 ** (epoch // 30)
    one_indexed = epoch + 1
    drops = int(one_indexed >= 0.5 * optim.epochs) + int(one_indexed >= 0.75 * optim.epochs)
    return factor * optim.lr * 0.1**drops
