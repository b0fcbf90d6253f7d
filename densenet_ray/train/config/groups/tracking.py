"""Tracking: the services a run also logs to, and how often."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from densenet_ray.train.config.declaration import Group, option
from densenet_ray.train.config.groups.common import AT_LEAST_ONE


@dataclass(frozen=True)
class TrackingOptions:
    """The ``tracking`` group of :class:`~densenet_ray.train.config.options.TrainConfig`."""

    GROUP: ClassVar[Group] = "tracking"  # every field below is in config.yaml's tracking group

    log: str = option(
        "",
        "also log to mlflow, wandb or mlflow,wandb (through ray.air.integrations; "
        "extras densenet-ray[mlflow], [wandb]); TensorBoard is always written to <run>/tensorboard",
        metavar="SERVICES",
    )
    tracking_uri: str | None = option(
        None,
        "MLflow tracking URI",
        metavar="URI",
        default_text="$MLFLOW_TRACKING_URI, else sqlite:///<storage>/mlflow.db for local storage",
    )
    log_every_steps: int = option(
        50,
        "loss and learning rate to TensorBoard (and --log) every N steps",
        range=AT_LEAST_ONE,
        metavar="N",
    )
