"""The training configuration: typed, with the paper's recipe per dataset as defaults, YAML < CLI flags."""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass
from typing import Any

DATASETS = ("cifar10", "cifar100", "svhn", "imagenet")
DEFAULT_MODEL = {"cifar10": "densenet_bc100_k12", "cifar100": "densenet_bc100_k12", "svhn": "densenet_bc100_k12"}
DEFAULT_MODEL["imagenet"] = "densenet121"
# Paper section 4.2: batch 64 / 300 epochs on CIFAR, 64 / 40 on SVHN, 256 / 90 on ImageNet.
DEFAULT_BATCH = {"cifar10": 64, "cifar100": 64, "svhn": 64, "imagenet": 256}
DEFAULT_EPOCHS = {"cifar10": 300, "cifar100": 300, "svhn": 40, "imagenet": 90}
EVAL_SPLIT = {"cifar10": "test", "cifar100": "test", "svhn": "test", "imagenet": "val"}
NUM_CLASSES = {"cifar10": 10, "cifar100": 100, "svhn": 10, "imagenet": 1000}


@dataclass
class TrainConfig:
    """Everything a training run needs; ``None`` fields take the paper's default for the dataset.

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
    gpu: bool = False
    cpus_per_worker: int = 1
    worker_resources: dict[str, float] | None = None
    loader_workers: int = 1
    amp: str | None = None
    channels_last: bool = False
    compile: bool = False
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

    def resolved(self) -> TrainConfig:
        """A copy with every dataset default filled in and every value checked (``ValueError``, one line)."""
        if self.dataset not in DATASETS:
            raise ValueError(f"unknown dataset {self.dataset!r}; choose one of: {', '.join(DATASETS)}")
        config = dataclasses.replace(
            self,
            model=self.model or DEFAULT_MODEL[self.dataset],
            batch_size=DEFAULT_BATCH[self.dataset] if self.batch_size is None else self.batch_size,
            epochs=DEFAULT_EPOCHS[self.dataset] if self.epochs is None else self.epochs,
            eval_split=self.eval_split or EVAL_SPLIT[self.dataset],
            storage=self.storage or os.path.join(os.path.expanduser("~"), "densenet-ray", "runs"),
        )
        config.validate()
        from densenet_ray.models import resolve_config

        resolve_config(config.model, **config.model_overrides())  # a bad model is a one-line error before Ray starts
        if config.init_from and config.pretrained:
            raise ValueError("give --init-from FILE or --pretrained, not both")
        if config.init_from or config.pretrained:
            # Load once here, so a bad file or missing weights is a one-line error before Ray starts.
            from densenet_ray.models import create_model
            from densenet_ray.train.checkpoint import load_initial_weights, pretrained_state_dict

            model = create_model(config.model, **config.model_overrides())
            if config.pretrained:
                load_initial_weights(model, pretrained_state_dict(config.model), "--pretrained")
            else:
                assert config.init_from is not None
                if "://" not in config.init_from:
                    config.init_from = os.path.abspath(os.path.expanduser(config.init_from))
                load_initial_weights(model, config.init_from)
        return config

    def validate(self) -> None:
        positive = {"batch_size": self.batch_size, "epochs": self.epochs, "workers": self.workers}
        positive["cpus_per_worker"] = self.cpus_per_worker
        for name, value in positive.items():
            if value is not None and value < 1:
                raise ValueError(f"--{name.replace('_', '-')} {value} must be at least 1")
        if self.batch_size is not None and self.batch_size % self.workers:
            raise ValueError(
                f"global --batch-size {self.batch_size} is not divisible by --workers {self.workers}; "
                f"use a multiple of {self.workers}"
            )
        if self.lr_schedule not in ("step", "cosine"):
            raise ValueError(f"--lr-schedule {self.lr_schedule!r} is not one of: step, cosine")
        if self.amp not in (None, "bf16", "fp16"):
            raise ValueError(f"--amp {self.amp!r} is not one of: bf16, fp16")
        if self.worker_resources is not None and (
            not isinstance(self.worker_resources, dict)
            or not all(
                isinstance(k, str) and isinstance(v, int | float) and not isinstance(v, bool) and v >= 0
                for k, v in self.worker_resources.items()
            )
            or {"CPU", "GPU"} & set(self.worker_resources)
        ):
            raise ValueError(
                f"--worker-resources {self.worker_resources!r} must map custom resource names to amounts >= 0, "
                'e.g. {"fake_gpu": 1} (CPU and GPU come from --cpus-per-worker and --gpu)'
            )
        if self.sync_bn and not self.gpu and self.workers > 1:
            # torch.nn.SyncBatchNorm raises on CPU tensors as soon as it would synchronise.
            raise ValueError("--sync-bn needs --gpu: PyTorch's SyncBatchNorm synchronises GPU tensors only")
        if self.lr <= 0:
            raise ValueError(f"--lr {self.lr} must be positive")
        for name in ("loader_workers", "max_failures", "checkpoint_every_steps", "limit_train_batches"):
            if getattr(self, name) < 0 and not (name == "max_failures" and self.max_failures == -1):
                raise ValueError(f"--{name.replace('_', '-')} {getattr(self, name)} must be >= 0")
        if self.limit_eval_batches < 0:
            raise ValueError(f"--limit-eval-batches {self.limit_eval_batches} must be >= 0")

    @property
    def num_classes(self) -> int:
        return NUM_CLASSES[self.dataset]

    @property
    def per_worker_batch(self) -> int:
        assert self.batch_size is not None
        return self.batch_size // self.workers

    def model_overrides(self) -> dict[str, Any]:
        """The model options for ``create_model`` (``None`` means: the registered model's value)."""
        return {
            "num_classes": self.num_classes,
            "depth": self.depth,
            "growth_rate": self.growth_rate,
            "bottleneck": self.bottleneck,
            "reduction": self.reduction,
            "drop_rate": self.drop_rate,
            "memory_efficient": self.memory_efficient,
        }

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_sources(cls, yaml_values: dict[str, Any] | None, cli_values: dict[str, Any]) -> TrainConfig:
        """Code defaults < YAML file < CLI flags (flags the user did not give are ``None`` and do not override)."""
        fields = {f.name for f in dataclasses.fields(cls)}
        merged: dict[str, Any] = {}
        for origin, values in (("config file", yaml_values or {}), ("flags", cli_values)):
            unknown = sorted(set(values) - fields)
            if unknown:
                raise ValueError(f"unknown option(s) in {origin}: {', '.join(unknown)}")
            merged.update({key: value for key, value in values.items() if value is not None})
        return cls(**merged)


def read_yaml_mapping(path: str, flag: str, expected: str) -> dict[str, Any]:
    """The mapping in the YAML file ``path`` (given as ``flag``); ``ValueError`` with one line when it cannot be read,
    is not YAML, or is not a mapping (``expected`` says what it should hold)."""
    import yaml

    try:
        with open(path) as handle:
            document = yaml.safe_load(handle)
    except OSError as error:
        raise ValueError(f"{flag} {path}: {error.strerror}") from None
    except yaml.YAMLError as error:
        raise ValueError(f"{flag} {path} is not valid YAML ({str(error).splitlines()[0]})") from None
    if document is None:
        document = {}
    if not isinstance(document, dict):
        raise ValueError(f"{flag} {path} must hold {expected}")
    return document


def learning_rate(config: TrainConfig, epoch: int, iteration: int, iterations_per_epoch: int) -> float:
    """The learning rate for 0-indexed ``epoch`` and ``iteration`` under the original code's schedules.

    step, CIFAR/SVHN: divided by 10 once the 1-indexed epoch reaches 50 % and again at 75 % of the epochs (for 300
    epochs: 149 at 0.1, 75 at 0.01, 76 at 0.001). step, ImageNet: 0.1 ** floor(epoch / 30). cosine: per iteration,
    0.5 * lr * (1 + cos(pi * t / T)) with t counted over the whole run.
    """
    assert config.epochs is not None
    if config.lr_schedule == "cosine":
        total = config.epochs * iterations_per_epoch
        current = epoch * iterations_per_epoch + iteration
        return 0.5 * config.lr * (1 + math.cos(math.pi * current / total))
    if config.dataset == "imagenet":
        return config.lr * 0.1 ** (epoch // 30)
    one_indexed = epoch + 1
    drops = int(one_indexed >= 0.5 * config.epochs) + int(one_indexed >= 0.75 * config.epochs)
    return config.lr * 0.1**drops
