"""The training options, each declared once: its type, default (the paper's recipe per dataset), range, help,
group, and whether it is part of the run's identity and may be searched by sweeps (one module a group, in
:mod:`.groups`). The flags (``cli/train_options.py``), the YAML loader and its checks, ``config.yaml``'s groups, the
run identity and resume rules, the sweeps' flags and searchable keys and the command reference all derive from these
fields. Precedence: the defaults < a YAML file < command-line flags (:meth:`TrainConfig.from_sources`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from densenet_ray.train.config.choices import DATASET_NAMES
from densenet_ray.train.config.declaration import (
    Declared,
    check_dataset,
    check_type,
    check_value,
    declared_options,
    merge_sources,
)
from densenet_ray.train.config.groups.data import DataOptions
from densenet_ray.train.config.groups.execution import ExecutionOptions, StorageOptions
from densenet_ray.train.config.groups.model import ModelOptions
from densenet_ray.train.config.groups.optim import OptimOptions
from densenet_ray.train.config.groups.recipe import RecipeOptions
from densenet_ray.train.config.groups.tracking import TrackingOptions
from densenet_ray.train.config.relations import check_relations
from densenet_ray.train.config.values import (
    check_trackers,
    check_worker_resources,
    parse_profile_steps,
    split_worker_range,
)
from densenet_ray.train.stopping import parse_early_stop


# Fields come in the reverse of this order (dataclasses collect base classes' fields from the last base on): model,
# data, optim, execution, storage, recipe, tracking, as config.yaml lists its groups.
@dataclass(frozen=True)
class TrainConfig(
    TrackingOptions, RecipeOptions, StorageOptions, ExecutionOptions, OptimOptions, DataOptions, ModelOptions
):
    """A training run's options as a user writes them (YAML keys, flags, or ``TrainConfig(epochs=3)`` in Python);
    ``None`` takes the paper's default for the dataset (or ``auto``) when
    :func:`densenet_ray.train.config.resolved.resolve` turns them into a resolved config. Each field's declaration (its
    ``option(...)``) is the one place the option is described; ``densenet-ray train cifar --help`` prints them."""

    def __post_init__(self) -> None:
        """Values given in Python are held to what a YAML file's are: ``workers="2-8"`` is split into the most and
        the least workers, and each value's type is checked (one line naming the option)."""
        given = {"workers": self.workers, "min_workers": self.min_workers}
        split = split_worker_range(given, "TrainConfig(...)")
        for declared in declared_options(TrainConfig):
            value = split.get(declared.name, getattr(self, declared.name))
            if value is not None:
                object.__setattr__(self, declared.name, check_type(declared, value, "TrainConfig(...)"))

    def check_values(self) -> None:
        """Every value of its type's choices and in its declared range, and the texts and mappings an option parses
        well-formed (:class:`UserError`, one line naming the flag and what would be right)."""
        for declared in declared_options(TrainConfig):
            check_value(declared, getattr(self, declared.name))
        check_worker_resources(self.worker_resources)
        check_trackers(self.log)
        parse_profile_steps(self.profile_steps)
        if self.early_stop:
            parse_early_stop(self.early_stop)

    def check_consistency(self, multi_label: bool | None = None, classes: int | None = None) -> None:
        """The options against each other (:func:`check_relations`; ``multi_label`` and ``classes``: what the data
        holds, None where not known yet), then every option kept at its default where it does not apply to the
        dataset."""
        check_relations(self.to_dict(), multi_label, classes)
        for declared in declared_options(TrainConfig):
            check_dataset(declared, getattr(self, declared.name), self.dataset, DATASET_NAMES)

    def validate(self) -> None:
        """:meth:`check_values`, then :meth:`check_consistency` (:class:`UserError`, one line)."""
        self.check_values()
        self.check_consistency()

    @classmethod
    def from_sources(
        cls,
        yaml_values: dict[str, Any] | None,
        cli_values: dict[str, Any],
        origins: tuple[str, str] = ("config file", "flags"),
    ) -> TrainConfig:
        """Code defaults < YAML file < CLI flags (flags the user did not give are ``None`` and do not override).
        Every value's type is checked; ``origins`` name the two sources in errors. A key may be written as its flag
        is, with dashes (``batch-size``): the one place keys are normalised."""
        sources = zip(origins, (yaml_values or {}, cli_values), strict=True)
        named = [
            (origin, {str(key).replace("-", "_"): value for key, value in values.items()}) for origin, values in sources
        ]
        merged = merge_sources(cls, [(origin, split_worker_range(values, origin)) for origin, values in named])
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
