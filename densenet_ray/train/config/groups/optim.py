"""The optimisation: batch, epochs, learning rate and its schedule, the optimizer, fine-tuning, the seed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from densenet_ray.train.config.choices import DEFAULT_BATCH, DEFAULT_EPOCHS, LrSchedule, Optimizer, Weighting
from densenet_ray.train.config.declaration import Group, Range, option
from densenet_ray.train.config.groups.common import AT_LEAST_ONE, FIXED, NOT_NEGATIVE


@dataclass(frozen=True)
class OptimOptions:
    """The ``optim`` group of :class:`~densenet_ray.train.config.options.TrainConfig`."""

    GROUP: ClassVar[Group] = "optim"  # every field below is in config.yaml's optim group

    batch_size: int | None = option(None, "global batch size", **FIXED, range=AT_LEAST_ONE, per_dataset=DEFAULT_BATCH)
    epochs: int | None = option(None, "epochs", range=AT_LEAST_ONE, per_dataset=DEFAULT_EPOCHS)
    lr: float = option(0.1, "initial learning rate", **FIXED, range=Range(0, low_open=True))
    lr_schedule: LrSchedule = option("step", "step (the paper's /10 drops) or cosine per iteration", **FIXED)
    optimizer: Optimizer = option(
        "sgd", "sgd (Nesterov, the paper's) or adamw (torch.optim.AdamW, common for fine-tuning)", **FIXED
    )
    momentum: float = option(0.9, "Nesterov momentum of SGD", **FIXED, range=NOT_NEGATIVE)
    weight_decay: float = option(
        1e-4, "weight decay (SGD: L2 in the gradient; AdamW: decoupled)", **FIXED, range=NOT_NEGATIVE
    )
    backbone_lr_scale: float = option(
        1.0,
        "fine-tuning: the learning rate of every layer but the classifier, as a fraction of the classifier's",
        **FIXED,
        range=Range(0.0, 1.0, low_open=True),
        metavar="F",
    )
    freeze_epochs: int = option(
        0,
        "fine-tuning: train only the classifier for the first N epochs (the backbone's weights and BatchNorm "
        "statistics stay as loaded)",
        **FIXED,
        range=NOT_NEGATIVE,
        metavar="N",
    )
    class_weights: Weighting = option(
        "none",
        "balanced: weigh each class's loss by N / (classes x its samples) of the training split (imbalanced data)",
        **FIXED,
        datasets=("images",),
    )
    pos_weight: Weighting = option(
        "none",
        "multi-label, balanced: weigh each class's positive samples by its negatives / positives (BCEWithLogitsLoss)",
        **FIXED,
        datasets=("images",),
    )
    seed: int = option(0, "seed of the initialisation, data order and augmentation", **FIXED)
