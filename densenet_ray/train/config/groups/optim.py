"""The optimisation: batch, epochs, learning rate and its schedule, SGD, the seed."""

from __future__ import annotations

from dataclasses import dataclass

from densenet_ray.train.config.choices import DEFAULT_BATCH, DEFAULT_EPOCHS, LrSchedule
from densenet_ray.train.config.declaration import Range, option
from densenet_ray.train.config.groups.common import AT_LEAST_ONE, FIXED, NOT_NEGATIVE


@dataclass(frozen=True)
class OptimOptions:
    """The ``optim`` group of :class:`~densenet_ray.train.config.options.TrainConfig`."""

    batch_size: int | None = option(
        None, "optim", "global batch size", **FIXED, range=AT_LEAST_ONE, per_dataset=DEFAULT_BATCH
    )
    epochs: int | None = option(None, "optim", "epochs", range=AT_LEAST_ONE, per_dataset=DEFAULT_EPOCHS)
    lr: float = option(0.1, "optim", "initial learning rate", **FIXED, range=Range(0, low_open=True))
    lr_schedule: LrSchedule = option("step", "optim", "step (the paper's /10 drops) or cosine per iteration", **FIXED)
    momentum: float = option(0.9, "optim", "Nesterov momentum of SGD", **FIXED, range=NOT_NEGATIVE)
    weight_decay: float = option(1e-4, "optim", "weight decay (L2) of SGD", **FIXED, range=NOT_NEGATIVE)
    seed: int = option(0, "optim", "seed of the initialisation, data order and augmentation", **FIXED)
