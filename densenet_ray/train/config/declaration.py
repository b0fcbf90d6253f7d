"""How a training option is declared: one dataclass field of
:class:`~densenet_ray.train.config.options.TrainConfig` whose metadata says everything else derives from it (its
flag, help, range, per-dataset default, and its place in the run's identity and in sweeps). Its group is the class it
is declared in: each group's class names it once, as its ``GROUP``.

Written with dataclass field metadata rather than pydantic or jsonargparse: the config stays a plain, frozen
dataclass that imports nothing (``import densenet_ray`` stays light), and its checks keep the one-line errors that
name the flag or YAML key (pydantic's validation errors are multi-line reports; jsonargparse would own the parser).
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal

from densenet_ray.errors import UserError

Group = Literal["model", "data", "optim", "execution", "storage", "recipe", "tracking"]  # config.yaml's, in its order
GROUPS: tuple[Group, ...] = typing.get_args(Group)
# fixed: part of the run's identity, a resume cannot change it; free: may change on resume.
Resume = Literal["fixed", "free"]
# searchable: a sweep takes it as a flag and may search it or fix it for every trial; shared: a sweep takes it as a
# flag, once for every trial, and cannot search it (where the data is); owned: the sweep sets it for each trial.
Sweep = Literal["searchable", "shared", "owned"]


@dataclass(frozen=True)
class Range:
    """The values an option accepts: ``low`` (and ``high``) inclusive unless ``*_open``; ``note`` ends the message."""

    low: float
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    note: str = ""

    def holds(self, value: float) -> bool:
        above = value > self.low if self.low_open else value >= self.low
        below = self.high is None or (value < self.high if self.high_open else value <= self.high)
        return above and below

    def describe(self) -> str:
        """``must be at least 1``, ``must be >= 0``, ``must be positive``, ``must be in [0.0, 1.0)``."""
        if self.high is not None:
            return f"must be in {'(' if self.low_open else '['}{self.low}, {self.high}{')' if self.high_open else ']'}"
        if self.low_open:
            return "must be positive" if self.low == 0 else f"must be > {self.low}"
        return f"must be at least {self.low}" if self.low >= 1 else f"must be >= {self.low}{self.note}"


@dataclass(frozen=True)
class Option:
    """What a field's declaration says besides its name, type, default and group.

    ``flag`` defaults to ``--name-with-dashes``;
    ``negative`` names a flag that sets False (``--no-bottleneck``, helped by ``negative_help``);
    ``aliases`` are flags that set one choice (``--randaugment``); ``cli`` are extra ``add_argument`` keywords (a
    flag with an optional value). ``per_dataset`` is the paper's default per dataset when the default is ``None``.
    ``key`` is the option's name in its ``config.yaml`` group where that differs (``model`` is ``model.name``).
    ``datasets`` names the only datasets the option applies to (empty: all); for others it keeps its default.
    """

    help: str
    resume: Resume = "free"
    sweep: Sweep = "searchable"
    range: Range | None = None
    flag: str | None = None
    negative: str | None = None
    negative_help: str = ""
    aliases: tuple[tuple[str, str], ...] = ()
    metavar: str | None = None
    cli: tuple[tuple[str, Any], ...] = ()
    per_dataset: dict[str, Any] | None = None
    key: str | None = None
    default_text: str | None = None
    datasets: tuple[str, ...] = ()


def option(default: Any, help: str, **declaration: Any) -> Any:
    """A :class:`TrainConfig` field: its default and its :class:`Option` (the keywords). Its group is its class's."""
    return field(default=default, metadata={"option": Option(help, **declaration)})


@dataclass(frozen=True)
class Declared:
    """One declared option as the rest of the package sees it: name, group, default, type and declaration."""

    name: str
    group: Group  # the GROUP of the class that declares it
    default: Any
    kind: str  # str, int, float, bool, dict
    choices: tuple[str, ...]
    optional: bool  # None is a value (the dataset's default, or auto)
    declaration: Option

    @property
    def flag(self) -> str:
        return self.declaration.flag or "--" + self.name.replace("_", "-")

    @property
    def key(self) -> str:
        return self.declaration.key or self.name


def _kind(annotation: Any) -> tuple[str, tuple[str, ...], bool]:
    """(kind, choices, optional) of a field's annotation: ``int | None``, ``Precision``, ``dict[str, float] | None``."""
    arguments = typing.get_args(annotation)
    union = typing.get_origin(annotation) in (typing.Union, types.UnionType)
    members = [member for member in arguments if member is not type(None)] if union else [annotation]
    optional = union and len(members) < len(arguments)
    (member,) = members
    if typing.get_origin(member) is Literal:
        return "str", tuple(typing.get_args(member)), optional
    origin = typing.get_origin(member) or member
    return origin.__name__, (), optional


def _groups(config_class: type) -> dict[str, Group]:
    """Each field's group: the ``GROUP`` of the class in ``config_class``'s bases that declares it."""
    groups: dict[str, Group] = {}
    for owner in reversed(config_class.__mro__):
        names = [name for name in inspect.get_annotations(owner) if name != "GROUP"]
        if not names:
            continue
        group = vars(owner).get("GROUP")
        if group not in GROUPS:
            raise TypeError(f"{owner.__name__} declares options without a GROUP of {GROUPS}")
        groups.update(dict.fromkeys(names, group))
    return groups


@functools.cache
def declared_options(config_class: type) -> tuple[Declared, ...]:
    """Every option ``config_class`` (a dataclass of :func:`option` fields, in classes that name their ``GROUP``)
    declares, in declaration order."""
    hints = typing.get_type_hints(config_class)
    groups = _groups(config_class)
    options = []
    for item in dataclasses.fields(config_class):
        kind, choices, optional = _kind(hints[item.name])
        options.append(
            Declared(
                name=item.name,
                group=groups[item.name],
                default=item.default,
                kind=kind,
                choices=choices,
                optional=optional,
                declaration=item.metadata["option"],
            )
        )
    return tuple(options)


_TYPE_NAMES = {"str": "a string", "int": "an integer", "float": "a number", "bool": "true or false"}


def check_type(option: Declared, value: Any, origin: str) -> Any:
    """``value`` as ``option`` holds it (an integer where a number is wanted becomes a float); a one-line
    :class:`UserError` naming the key, the value and ``origin`` when it has the wrong type. Bools are not numbers."""
    kind = option.kind
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
        raise UserError(f"{option.name}: {value!r} in {origin} must be {expected}")
    return float(value) if kind == "float" else value


def check_value(option: Declared, value: Any) -> None:
    """``value`` is one of the option's choices and in its range (one line naming the flag and what would be right)."""
    if value is None:
        return
    if option.choices and value not in option.choices:
        raise UserError(f"{option.flag} {value!r} is not one of: {', '.join(option.choices)}")
    limits = option.declaration.range
    if limits is not None and not limits.holds(value):
        raise UserError(f"{option.flag} {value} {limits.describe()}")


def default_text(option: Declared) -> str:
    """What ``--help`` says of the default: the declared text, the per-dataset defaults, or the value."""
    declaration = option.declaration
    if declaration.default_text is not None:
        return f"default: {declaration.default_text}"
    if declaration.per_dataset:
        by_value: dict[Any, list[str]] = {}
        for dataset, value in declaration.per_dataset.items():
            by_value.setdefault(value, []).append(dataset)
        return "default: " + ", ".join(f"{value} for {'/'.join(names)}" for value, names in by_value.items())
    if option.default is None or option.kind == "bool" or (option.kind in ("str", "dict") and not option.default):
        return ""
    return f"default: {option.default}"


def check_dataset(option: Declared, value: Any, dataset: str, names: dict[str, str]) -> None:
    """An option declared for some datasets only keeps its default for the others (one line naming where it
    applies, by ``names``)."""
    applies = option.declaration.datasets
    if applies and dataset not in applies and value is not None and value != option.default:
        where = " and ".join(names.get(name, name) for name in applies)
        raise UserError(f"{option.flag} applies to {where} only, not to {dataset}")


def merge_sources(config_class: type, sources: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """The options of ``sources`` (``(origin, values)`` pairs, later ones overriding earlier ones; ``None`` values do
    not override), each type-checked against ``config_class``'s declarations; ``origin`` names a source in errors."""
    declared = {option.name: option for option in declared_options(config_class)}
    merged: dict[str, Any] = {}
    for origin, values in sources:
        unknown = sorted(set(values) - set(declared))
        if unknown:
            raise UserError(f"unknown option(s) in {origin}: {', '.join(unknown)}")
        for key, value in values.items():
            if value is not None:
                merged[key] = check_type(declared[key], value, origin)
    return merged
