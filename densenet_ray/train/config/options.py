"""The training options, each declared once: its type, default (the paper's recipe per dataset), range, help,
group, and whether it is part of the run's identity and may be searched by sweeps (:mod:`.options`). The flags
(``cli/train_options.py``), the YAML loader and its checks, ``config.yaml``'s groups, the run identity and resume
rules, the sweeps' flags and searchable keys and the command reference all derive from these fields. Precedence:
the defaults < a YAML file < command-line flags (:meth:`TrainConfig.from_sources`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from densenet_ray.train.config.choices import (
    DEFAULT_BATCH,
    DEFAULT_EPOCHS,
    DEFAULT_MODEL,
    EVAL_SPLIT,
    AugmentPolicy,
    Dataset,
    Decoder,
    LrSchedule,
    Precision,
)
from densenet_ray.train.config.declaration import Declared, Range, check_value, declared_options, merge_sources, option
from densenet_ray.train.config.relations import check_relations
from densenet_ray.train.config.values import split_worker_range

AT_LEAST_ONE, NOT_NEGATIVE, OFF_AT_ZERO = Range(1), Range(0), Range(0, note=" (0 is off)")
SHARE, OPEN_SHARE = Range(0.0, 1.0), Range(0.0, 1.0, high_open=True)
FIXED: Any = {"resume": "fixed"}  # changes what the run computes: part of its identity
OWNED: Any = {"sweep": "owned"}  # set by a sweep for each trial
SHARED: Any = {"sweep": "shared"}  # given to a sweep once for all its trials


@dataclass(frozen=True)
class TrainConfig:
    """A training run's options as a user writes them (YAML keys, flags, or ``TrainConfig(epochs=3)`` in Python);
    ``None`` takes the paper's default for the dataset (or ``auto``) when
    :func:`densenet_ray.train.config.resolved.resolve` turns them into a resolved config. Each field's declaration (its
    ``option(...)``) is the one place the option is described; ``densenet-ray train cifar --help`` prints them."""

    # model
    model: str | None = option(
        None,
        "model",
        "registered model name (see `densenet-ray models`)",
        **FIXED,
        per_dataset=DEFAULT_MODEL,
        key="name",
    )
    depth: int | None = option(None, "model", "L, the network depth", **FIXED, default_text="the model's")
    growth_rate: int | None = option(
        None, "model", "k, feature maps each dense layer adds", **FIXED, default_text="the model's"
    )
    bottleneck: bool | None = option(
        None,
        "model",
        "B: 1x1 bottleneck convolutions",
        **FIXED,
        negative="--no-bottleneck",
        negative_help="no bottleneck convolutions (the basic DenseNet)",
        default_text="the model's",
    )
    reduction: float | None = option(
        None,
        "model",
        "compression theta of the transition layers (0.5 for C)",
        **FIXED,
        default_text="the model's",
    )
    drop_rate: float | None = option(
        None,
        "model",
        "dropout after each convolution (paper: 0.2 without augmentation)",
        **FIXED,
        default_text="the model's",
    )
    memory_efficient: bool = option(
        False, "model", "recompute concatenation and BN in backward: memory grows linearly with depth", **FIXED
    )
    init_from: str | None = option(
        None,
        "model",
        "start from these weights: a run checkpoint or a torchvision-format "
        "state_dict (a classifier of another class count is re-initialised)",
        **FIXED,
        **SHARED,
    )
    pretrained: bool = option(
        False, "model", "start from torchvision's ImageNet weights (densenet121/161/169/201)", **FIXED
    )
    # data
    dataset: Dataset = option("cifar10", "data", "the dataset (its class count, transforms and defaults)", **FIXED)
    data: str | None = option(
        None,
        "data",
        "shard directory or s3:// prefix (from `densenet-ray data build`)",
        **SHARED,
        default_text="~/.cache/densenet-ray/<dataset>",
    )
    eval_split: str | None = option(None, "data", "evaluation split", **FIXED, per_dataset=EVAL_SPLIT)
    image_size: int | None = option(
        None,
        "data",
        "own images: the training crop in pixels (up to 64: CIFAR's pad-and-crop; larger: random-resized crops)",
        **FIXED,
        range=Range(8),
        default_text="the images' shorter side, at most 224",
    )
    crop_pct: float | None = option(
        None,
        "data",
        "own images over 64 pixels: evaluation resizes to image-size / crop-pct and center-crops",
        **FIXED,
        range=Range(0.0, 1.0, low_open=True),
        default_text="0.875",
    )
    augment: bool = option(
        True, "data", "train without the paper's augmentation (crops and flips)", **FIXED, negative="--no-augment"
    )
    loader_workers: int = option(
        1,
        "data",
        "DataLoader processes per worker decoding images (0 decodes in the training process)",
        range=NOT_NEGATIVE,
    )
    source: str | None = option(
        None,
        "data",
        "without --data: build ~/.cache/densenet-ray/<dataset> from this local "
        "copy on first use (official tarball, .mat directory, or class-folder dir/tar)",
        **SHARED,
    )
    decode: Decoder = option(
        "cpu",
        "data",
        "where ImageNet JPEGs are decoded and augmented: cpu (in the loader "
        "processes) or gpu (whole batches on each worker's GPU)",
    )
    # optim
    batch_size: int | None = option(
        None, "optim", "global batch size", **FIXED, range=AT_LEAST_ONE, per_dataset=DEFAULT_BATCH
    )
    epochs: int | None = option(None, "optim", "epochs", range=AT_LEAST_ONE, per_dataset=DEFAULT_EPOCHS)
    lr: float = option(0.1, "optim", "initial learning rate", **FIXED, range=Range(0, low_open=True))
    lr_schedule: LrSchedule = option("step", "optim", "step (the paper's /10 drops) or cosine per iteration", **FIXED)
    momentum: float = option(0.9, "optim", "Nesterov momentum of SGD", **FIXED, range=NOT_NEGATIVE)
    weight_decay: float = option(1e-4, "optim", "weight decay (L2) of SGD", **FIXED, range=NOT_NEGATIVE)
    seed: int = option(0, "optim", "seed of the initialisation, data order and augmentation", **FIXED)
    # execution
    workers: int = option(
        2,
        "execution",
        "Ray Train workers: N, or MIN-MAX to train elastically on as many as the "
        "cluster has (a lost node's workers are dropped, the run goes on)",
        range=AT_LEAST_ONE,
        metavar="[MIN-]MAX",
        cli=(("type", str),),
    )
    min_workers: int | None = option(
        None,
        "execution",
        "elastic: the least workers (given as --workers MIN-MAX)",
        flag="--workers",
        default_text="--workers",
    )
    gpu: bool = option(False, "execution", "one GPU per worker (NCCL DDP)")
    cpus_per_worker: int = option(1, "execution", "CPUs each Ray Train worker reserves", range=AT_LEAST_ONE)
    worker_resources: dict[str, float] | None = option(
        None,
        "execution",
        "custom resources each worker also needs, e.g. '{\"accelerator_type:A100\": 0.001}'",
        metavar="JSON",
    )
    precision: Precision = option(
        "auto",
        "execution",
        "auto: bf16 autocast where the worker's hardware multiplies "
        "bf16 natively, else fp32; fp32 is the exact reference",
        **FIXED,
    )
    channels_last: bool | None = option(
        None,
        "execution",
        "channels-last memory format",
        negative="--no-channels-last",
        negative_help="NCHW memory format",
        default_text="auto, where faster",
    )
    compile: bool | None = option(
        None,
        "execution",
        "torch.compile the model",
        negative="--no-compile",
        negative_help="run the model eagerly",
        default_text="auto, for runs of 500+ steps where inductor has a compiler",
    )
    sync_bn: bool = option(False, "execution", "synchronise BatchNorm statistics across GPU workers", **FIXED)
    max_failures: int = option(
        0,
        "execution",
        "worker-group restarts Ray may make (-1: unlimited)",
        **OWNED,
        range=Range(-1, note=" (-1: unlimited)"),
    )
    checkpoint_every_steps: int = option(
        0, "execution", "also checkpoint every N optimizer steps within an epoch", **OWNED, range=NOT_NEGATIVE
    )
    keep_checkpoints: int = option(2, "execution", "checkpoints kept in the run directory", range=AT_LEAST_ONE)
    limit_train_batches: int = option(
        0, "execution", "at most N training batches per epoch (debugging; 0: all)", range=NOT_NEGATIVE
    )
    limit_eval_batches: int = option(
        0, "execution", "at most N evaluation batches (debugging; 0: all)", range=NOT_NEGATIVE
    )
    # storage
    storage: str | None = option(
        None,
        "storage",
        "run storage: a local path or s3://",
        **OWNED,
        key="root",
        default_text="~/densenet-ray/runs",
    )
    name: str | None = option(
        None,
        "storage",
        "run name; the same name resumes the run (with options that do not change what it computes)",
        **OWNED,
        default_text="<dataset>-<model>-<time>",
    )
    # recipe: beyond the paper's recipe, each from a maintained library, all off by default
    label_smoothing: float = option(
        0.0,
        "recipe",
        "label smoothing of the training loss (F.cross_entropy; 0.1 is common)",
        **FIXED,
        range=OPEN_SHARE,
        metavar="EPS",
    )
    mixup: float = option(
        0.0,
        "recipe",
        "MixUp batches with Beta(ALPHA, ALPHA) (transforms.v2.MixUp; 0.2 is common; 0: off)",
        **FIXED,
        range=OFF_AT_ZERO,
        metavar="ALPHA",
    )
    cutmix: float = option(
        0.0,
        "recipe",
        "CutMix batches with Beta(ALPHA, ALPHA) (transforms.v2.CutMix; 1.0 is common; 0: off)",
        **FIXED,
        range=OFF_AT_ZERO,
        metavar="ALPHA",
    )
    mix_prob: float = option(1.0, "recipe", "share of batches MixUp/CutMix mixes", **FIXED, range=SHARE, metavar="P")
    mix_switch_prob: float = option(
        0.5,
        "recipe",
        "with --mixup and --cutmix: probability of CutMix for a mixed batch",
        **FIXED,
        range=SHARE,
        metavar="P",
    )
    augment_policy: AugmentPolicy = option(
        "none",
        "recipe",
        "per-sample augmentation policy from transforms.v2",
        **FIXED,
        aliases=(
            ("--randaugment", "randaugment"),
            ("--trivialaugment", "trivialaugment"),
            ("--autoaugment", "autoaugment"),
        ),
    )
    randaugment_ops: int = option(
        2, "recipe", "RandAugment operations per image", **FIXED, range=AT_LEAST_ONE, metavar="N"
    )
    randaugment_magnitude: int = option(
        9, "recipe", "RandAugment magnitude, 0-30", **FIXED, range=Range(0, 30), metavar="M"
    )
    random_erasing: float = option(
        0.0,
        "recipe",
        "erase a random rectangle of a training image with probability P (transforms.v2.RandomErasing)",
        **FIXED,
        range=SHARE,
        metavar="P",
    )
    ema: float = option(
        0.0,
        "recipe",
        "also keep, evaluate and checkpoint an exponential moving average of the "
        "weights and BN buffers (swa_utils.AveragedModel), updated every optimizer step",
        **FIXED,
        range=OPEN_SHARE,
        metavar="DECAY",
        cli=(("nargs", "?"), ("const", 0.9998)),
        default_text="off; DECAY 0.9998 when given alone",
    )
    warmup: float = option(
        0.0,
        "recipe",
        "linear learning-rate warmup over the first EPOCHS epochs, per iteration",
        **FIXED,
        range=OFF_AT_ZERO,
        metavar="EPOCHS",
    )
    clip_grad_norm: float = option(
        0.0,
        "recipe",
        "clip the gradients' total 2-norm to NORM before each optimizer step (0: off)",
        **FIXED,
        range=OFF_AT_ZERO,
        metavar="NORM",
    )
    accumulate: int = option(
        1,
        "recipe",
        "add up N batches' gradients per optimizer step: --batch-size B --accumulate N steps as batch N*B",
        **FIXED,
        range=AT_LEAST_ONE,
        metavar="N",
    )
    no_decay_norm_bias: bool = option(False, "recipe", "no weight decay on BatchNorm weights and biases", **FIXED)
    # tracking
    log: str = option(
        "",
        "tracking",
        "also log to mlflow, wandb or mlflow,wandb (through ray.air.integrations; "
        "extras densenet-ray[mlflow], [wandb]); TensorBoard is always written to <run>/tensorboard",
        metavar="SERVICES",
    )
    tracking_uri: str | None = option(
        None,
        "tracking",
        "MLflow tracking URI",
        metavar="URI",
        default_text="$MLFLOW_TRACKING_URI, else sqlite:///<storage>/mlflow.db for local storage",
    )
    log_every_steps: int = option(
        50,
        "tracking",
        "loss and learning rate to TensorBoard (and --log) every N steps",
        range=AT_LEAST_ONE,
        metavar="N",
    )

    def validate(self) -> None:
        """Every value of its type's choices and in its declared range, and the options consistent with each other
        (:class:`UserError`, one line naming the option and what would be right)."""
        for declared in declared_options(TrainConfig):
            check_value(declared, getattr(self, declared.name))
        check_relations(self.to_dict())

    @classmethod
    def from_sources(
        cls,
        yaml_values: dict[str, Any] | None,
        cli_values: dict[str, Any],
        origins: tuple[str, str] = ("config file", "flags"),
    ) -> TrainConfig:
        """Code defaults < YAML file < CLI flags (flags the user did not give are ``None`` and do not override).
        Every value's type is checked; ``origins`` name the two sources in errors."""
        sources = zip(origins, (yaml_values or {}, cli_values), strict=True)
        merged = merge_sources(cls, [(origin, split_worker_range(values, origin)) for origin, values in sources])
        return cls(**merged)

    def to_dict(self) -> dict[str, Any]:
        """The options by name, as YAML and ``from_sources`` take them."""
        return dataclasses.asdict(self)


def training_options() -> tuple[Declared, ...]:
    """Every declared training option, in declaration order."""
    return declared_options(TrainConfig)


def training_option(name: str) -> Declared:
    """The declared training option ``name``."""
    return next(option for option in training_options() if option.name == name)
