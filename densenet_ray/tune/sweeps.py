"""What a sweep is: its trials (a grid of model options, or a search space from YAML) and its scheduler. No Ray.

The named sweeps are the paper's studies: ``wide`` (the Wide-DenseNet-BC table of the authors' reference
implementation, github.com/liuzhuang13/DenseNet), ``deep`` (BC, k=12, growing depth) and ``growth`` (BC,
L=100, growing k). ``custom`` reads a space file::

    scheduler: asha            # fifo or asha
    grace_period: 1            # ASHA: epochs before a trial can be stopped
    reduction_factor: 2        # ASHA: keep 1/reduction_factor at each rung
    num_samples: 1             # how many times the space is sampled (a grid is repeated that often)
    options:                   # fixed training options of every trial
      epochs: 4
    space:                     # searched training options, one distribution each
      lr: {loguniform: [0.01, 0.3]}
      growth_rate: {grid: [12, 24]}
      drop_rate: {uniform: [0.0, 0.2]}
      depth: {choice: [40, 100]}
      seed: {randint: [0, 1000]}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from densenet_ray.errors import UserError
from densenet_ray.train.config.choices import DEFAULT_MODEL
from densenet_ray.train.config.options import TrainConfig, training_options
from densenet_ray.train.config.values import read_yaml_mapping

SCHEDULERS = ("fifo", "asha")
DISTRIBUTIONS = ("grid", "choice", "uniform", "loguniform", "randint")
# Options a space cannot search or fix (declared so): every trial gets its own run name and directory and reports
# once per epoch, and the data and starting weights are the sweep's.
SWEEP_OWNED = tuple(option.name for option in training_options() if option.declaration.sweep != "searchable")


@dataclass(frozen=True)
class Distribution:
    """One searched option: ``kind`` is one of :data:`DISTRIBUTIONS`; ``values`` its choices or ``[low, high]``."""

    kind: str
    values: tuple[Any, ...]


@dataclass
class Sweep:
    """A sweep's definition: a grid of trials (named sweeps) or a space (custom), and how trials are scheduled."""

    kind: str
    grid: list[dict[str, Any]] = field(default_factory=list)
    space: dict[str, Distribution] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    scheduler: str = "fifo"
    grace_period: int = 1
    reduction_factor: int = 2
    num_samples: int = 1
    baseline: dict[str, Any] | None = None


def _bc(depth: int, growth_rate: int) -> dict[str, Any]:
    return {"model": "densenet_bc100_k12", "depth": depth, "growth_rate": growth_rate}


BC100 = {"model": "densenet_bc100_k12"}
NAMED_SWEEPS: dict[str, tuple[str, list[dict[str, Any]]]] = {
    "wide": (
        "the reference implementation's Wide-DenseNet-BC table: BC L=100 k=12 against Wide-BC L=40 k=36, 48, 60",
        [BC100, *({"model": f"wide_densenet_bc40_k{k}"} for k in (36, 48, 60))],
    ),
    "deep": ("DenseNet-BC k=12 at L = 40, 100, 160, 250", [_bc(depth, 12) for depth in (40, 100, 160, 250)]),
    "growth": ("DenseNet-BC L=100 at k = 12, 24, 32, 40", [_bc(100, k) for k in (12, 24, 32, 40)]),
}


def named_sweep(kind: str, scheduler: str = "fifo") -> Sweep:
    """The sweep called ``kind`` (``wide``, ``deep`` or ``growth``); its first trial, BC-100-12, is the baseline."""
    if kind not in NAMED_SWEEPS:
        raise UserError(f"unknown sweep {kind!r}; choose one of: {', '.join(NAMED_SWEEPS)}, custom")
    _, grid = NAMED_SWEEPS[kind]
    baseline = next(trial for trial in grid if trial in (BC100, _bc(100, 12)))
    return Sweep(kind, grid=[dict(trial) for trial in grid], scheduler=scheduler, baseline=dict(baseline))


def _training_options() -> set[str]:
    return {option.name for option in training_options()} - set(SWEEP_OWNED)


def _check_option(name: str, where: str) -> None:
    if name in SWEEP_OWNED:
        raise UserError(f"{where}: {name!r} is set by the sweep itself and cannot be searched or fixed")
    if name not in _training_options():
        raise UserError(f"{where}: {name!r} is not a training option (see densenet-ray train cifar --help)")


def _distribution(name: str, spec: Any, path: str) -> Distribution:
    where = f"{path}: space.{name}"
    if not isinstance(spec, dict) or len(spec) != 1:
        raise UserError(f"{where} must be one of {{{', '.join(DISTRIBUTIONS)}: ...}}, not {spec!r}")
    kind, values = next(iter(spec.items()))
    if kind not in DISTRIBUTIONS:
        raise UserError(f"{where}: unknown distribution {kind!r}; use one of: {', '.join(DISTRIBUTIONS)}")
    if not isinstance(values, list) or not values:
        raise UserError(f"{where}: {kind} takes a non-empty list, not {values!r}")
    if kind in ("uniform", "loguniform", "randint"):
        if len(values) != 2 or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
            raise UserError(f"{where}: {kind} takes [low, high] numbers, not {values!r}")
        if not values[0] < values[1] or (kind == "loguniform" and values[0] <= 0):
            raise UserError(f"{where}: {kind} needs 0 < low < high (low > 0 for loguniform), not {values!r}")
    return Distribution(kind, tuple(values))


def load_space(path: str, scheduler: str | None = None) -> Sweep:
    """The custom sweep in the YAML file ``path``; one-line :class:`UserError` naming what is wrong."""
    return space_sweep(read_yaml_mapping(path, "--space", "a mapping with a 'space' entry"), path, scheduler)


def space_sweep(document: dict[str, Any], path: str, scheduler: str | None = None) -> Sweep:
    """The custom sweep a space document describes (a YAML file's mapping; ``path`` names it in errors)."""
    known = {"scheduler", "grace_period", "reduction_factor", "num_samples", "options", "space"}
    unknown = sorted(set(document) - known)
    if unknown:
        raise UserError(f"{path}: unknown entry {unknown[0]!r}; expected some of: {', '.join(sorted(known))}")
    space_spec, options = document.get("space"), document.get("options") or {}
    if not isinstance(space_spec, dict) or not space_spec:
        raise UserError(f"{path}: 'space' must map training options to distributions, e.g. lr: {{grid: [0.1]}}")
    if not isinstance(options, dict):
        raise UserError(f"{path}: 'options' must map training options to values")
    for name in options:
        _check_option(str(name), f"{path}: options")
    space = {}
    for name, spec in space_spec.items():
        _check_option(str(name), f"{path}: space")
        space[str(name)] = _distribution(str(name), spec, path)
    sweep = Sweep(
        "custom",
        space=space,
        options=dict(options),
        scheduler=scheduler or document.get("scheduler", "fifo"),
        grace_period=document.get("grace_period", 1),
        reduction_factor=document.get("reduction_factor", 2),
        num_samples=document.get("num_samples", 1),
    )
    if sweep.scheduler not in SCHEDULERS:
        raise UserError(f"{path}: scheduler {sweep.scheduler!r} is not one of: {', '.join(SCHEDULERS)}")
    for name in ("grace_period", "reduction_factor", "num_samples"):
        value = getattr(sweep, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < (2 if name == "reduction_factor" else 1):
            low = 2 if name == "reduction_factor" else 1
            raise UserError(f"{path}: {name} must be an integer >= {low}, not {value!r}")
    return sweep


def describe(options: TrainConfig) -> str:
    """A short label for a trial's model: ``BC L=100 k=12``, ``Wide-BC L=40 k=36``, ``L=40 k=12``."""
    from densenet_ray.models import resolve_config

    model = resolve_config(
        options.model or DEFAULT_MODEL[options.dataset],
        depth=options.depth,
        growth_rate=options.growth_rate,
        bottleneck=options.bottleneck,
        reduction=options.reduction,
    )
    if model.form == "imagenet":
        return f"DenseNet-{model.depth} k={model.growth_rate}"
    form = ("B" if model.bottleneck else "") + ("C" if model.reduction < 1 else "")
    if form == "BC" and model.depth == 40 and model.growth_rate > 24:
        form = "Wide-BC"  # the reference implementation's name for shallow, wide BC models
    return f"{form} L={model.depth} k={model.growth_rate}".strip()


def trial_label(options: TrainConfig, searched: list[str] | None = None) -> str:
    """The model's label plus the searched options that are not about the model: ``BC L=100 k=12 lr=0.05``."""
    model_keys = {"model", "depth", "growth_rate", "bottleneck", "reduction"}  # what describe() shows
    values = searched_values(options, [key for key in searched or [] if key not in model_keys])
    return " ".join([describe(options), *(f"{key}={_short(value)}" for key, value in values.items())])


def searched_values(options: TrainConfig, searched: list[str]) -> dict[str, Any]:
    """The values of the searched options (names a sweep saved; those that are not training options are left out)."""
    values = options.to_dict()
    return {key: values[key] for key in searched if key in values}


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)
