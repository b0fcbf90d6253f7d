"""The model: which DenseNet, its architecture and its starting weights."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from densenet_ray.train.config.choices import DEFAULT_MODEL
from densenet_ray.train.config.declaration import Group, option
from densenet_ray.train.config.groups.common import FIXED, SHARED


@dataclass(frozen=True)
class ModelOptions:
    """The ``model`` group of :class:`~densenet_ray.train.config.options.TrainConfig`."""

    GROUP: ClassVar[Group] = "model"  # every field below is in config.yaml's model group

    model: str | None = option(
        None,
        "registered model name (see `densenet-ray models`)",
        **FIXED,
        per_dataset=DEFAULT_MODEL,
        key="name",
        default_text="densenet_bc100_k12 for cifar10/cifar100/svhn and own images up to 64 pixels, densenet121 for "
        "imagenet and larger own images",
    )
    depth: int | None = option(None, "L, the network depth", **FIXED, default_text="the model's")
    growth_rate: int | None = option(None, "k, feature maps each dense layer adds", **FIXED, default_text="the model's")
    bottleneck: bool | None = option(
        None,
        "B: 1x1 bottleneck convolutions",
        **FIXED,
        negative="--no-bottleneck",
        negative_help="no bottleneck convolutions (the basic DenseNet)",
        default_text="the model's",
    )
    reduction: float | None = option(
        None,
        "compression theta of the transition layers (0.5 for C)",
        **FIXED,
        default_text="the model's",
    )
    drop_rate: float | None = option(
        None,
        "dropout after each convolution (paper: 0.2 without augmentation)",
        **FIXED,
        default_text="the model's",
    )
    memory_efficient: bool = option(
        False, "recompute concatenation and BN in backward: memory grows linearly with depth", **FIXED
    )
    init_from: str | None = option(
        None,
        "start from these weights: a run checkpoint or a torchvision-format "
        "state_dict (a classifier of another class count is re-initialised)",
        **FIXED,
        **SHARED,
    )
    pretrained: bool = option(False, "start from torchvision's ImageNet weights (densenet121/161/169/201)", **FIXED)
