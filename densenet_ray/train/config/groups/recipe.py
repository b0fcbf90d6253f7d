"""The modern training recipe beyond the paper's: each part from a maintained library, all off by default (what they
do at training time: ``train/recipe.py`` and ``train/engine.py``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from densenet_ray.train.config.choices import AugmentPolicy
from densenet_ray.train.config.declaration import Group, Range, option
from densenet_ray.train.config.groups.common import AT_LEAST_ONE, FIXED, OFF_AT_ZERO, OPEN_SHARE, SHARE


@dataclass(frozen=True)
class RecipeOptions:
    """The ``recipe`` group of :class:`~densenet_ray.train.config.options.TrainConfig`."""

    GROUP: ClassVar[Group] = "recipe"  # every field below is in config.yaml's recipe group

    label_smoothing: float = option(
        0.0,
        "label smoothing of the training loss (F.cross_entropy; 0.1 is common)",
        **FIXED,
        range=OPEN_SHARE,
        metavar="EPS",
    )
    mixup: float = option(
        0.0,
        "MixUp batches with Beta(ALPHA, ALPHA) (transforms.v2.MixUp; 0.2 is common; 0: off)",
        **FIXED,
        range=OFF_AT_ZERO,
        metavar="ALPHA",
    )
    cutmix: float = option(
        0.0,
        "CutMix batches with Beta(ALPHA, ALPHA) (transforms.v2.CutMix; 1.0 is common; 0: off)",
        **FIXED,
        range=OFF_AT_ZERO,
        metavar="ALPHA",
    )
    mix_prob: float = option(1.0, "share of batches MixUp/CutMix mixes", **FIXED, range=SHARE, metavar="P")
    mix_switch_prob: float = option(
        0.5,
        "with --mixup and --cutmix: probability of CutMix for a mixed batch",
        **FIXED,
        range=SHARE,
        metavar="P",
    )
    augment_policy: AugmentPolicy = option(
        "none",
        "per-sample augmentation policy from transforms.v2",
        **FIXED,
        aliases=(
            ("--randaugment", "randaugment"),
            ("--trivialaugment", "trivialaugment"),
            ("--autoaugment", "autoaugment"),
        ),
    )
    randaugment_ops: int = option(2, "RandAugment operations per image", **FIXED, range=AT_LEAST_ONE, metavar="N")
    randaugment_magnitude: int = option(9, "RandAugment magnitude, 0-30", **FIXED, range=Range(0, 30), metavar="M")
    random_erasing: float = option(
        0.0,
        "erase a random rectangle of a training image with probability P (transforms.v2.RandomErasing)",
        **FIXED,
        range=SHARE,
        metavar="P",
    )
    ema: float = option(
        0.0,
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
        "linear learning-rate warmup over the first EPOCHS epochs, per iteration",
        **FIXED,
        range=OFF_AT_ZERO,
        metavar="EPOCHS",
    )
    clip_grad_norm: float = option(
        0.0,
        "clip the gradients' total 2-norm to NORM before each optimizer step (0: off)",
        **FIXED,
        range=OFF_AT_ZERO,
        metavar="NORM",
    )
    accumulate: int = option(
        1,
        "add up N batches' gradients per optimizer step: --batch-size B --accumulate N steps as batch N*B",
        **FIXED,
        range=AT_LEAST_ONE,
        metavar="N",
    )
    no_decay_norm_bias: bool = option(False, "no weight decay on BatchNorm weights and biases", **FIXED)
