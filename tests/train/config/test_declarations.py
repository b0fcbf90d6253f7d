"""Every declared training option reaches every place derived from its declaration: its flag in ``--help`` (and in
``tune --help`` unless a sweep owns it), the YAML loader's type check, its group in ``config.yaml``, the run
identity or the options a resume may change, and a ``tune custom`` space where it is searchable."""

from __future__ import annotations

import argparse
import dataclasses

import pytest

from densenet_ray.cli import build_parser
from densenet_ray.cli.tune import SWEEP_DATASETS, shared_training_options
from densenet_ray.errors import UserError
from densenet_ray.train.config.declaration import Range, declared_options, option
from densenet_ray.train.config.options import TrainConfig, training_options
from densenet_ray.train.config.resolved import ResolvedConfig, derive, resolve
from densenet_ray.train.run.guard import check_identity, run_identity
from densenet_ray.tune.sweeps import SWEEP_OWNED, load_space

OPTIONS = {option.name: option for option in training_options()}
WRONG_TYPE = {"str": 12, "int": "many", "float": "fast", "bool": "yes", "dict": [1]}
EXPECTED = {"str": "a string", "int": "an integer", "float": "a number", "bool": "true or false"}


def _subparser(*path: str) -> argparse.ArgumentParser:
    parser = build_parser()
    for name in path:
        action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = action.choices[name]
    return parser


@pytest.fixture(scope="module")
def resolved() -> ResolvedConfig:
    return resolve(TrainConfig(name="walk", storage="/runs", data="/shards"), check_weights=False)


@pytest.mark.parametrize("name", OPTIONS)
def test_every_option_has_its_flags_in_train_help(name: str) -> None:
    option = OPTIONS[name]
    text = " ".join(_subparser("train", "cifar").format_help().split())
    flags = [option.flag] if option.kind != "bool" or option.default is not True else []
    flags += [flag for flag in (option.declaration.negative,) if flag] + [a for a, _ in option.declaration.aliases]
    assert flags and all(flag in text for flag in flags)
    if name != "min_workers":  # given as --workers MIN-MAX, whose help says so
        assert " ".join(option.declaration.help.split()) in text


@pytest.mark.parametrize("name", OPTIONS)
def test_every_option_a_sweep_does_not_own_is_a_tune_flag(name: str) -> None:
    option = OPTIONS[name]
    flags = {flag for action in _subparser("tune", "wide")._actions for flag in action.option_strings}
    expected = option.flag if name not in ("workers", "min_workers") else "--workers-per-trial"
    if option.kind == "bool" and option.default is True:
        expected = option.declaration.negative
    owned = option.declaration.sweep == "owned"
    if option.declaration.datasets and not set(option.declaration.datasets) & set(SWEEP_DATASETS):
        assert name not in shared_training_options() and expected not in flags  # only for datasets sweeps skip
        return
    assert (name in shared_training_options() or name in ("workers", "min_workers")) != owned
    assert owned or expected in flags  # an owned option's flag, if any, is the sweep's own (--storage, --name)


@pytest.mark.parametrize("name", OPTIONS)
def test_a_wrong_type_in_yaml_is_one_line_naming_the_option(name: str) -> None:
    option = OPTIONS[name]
    bad = WRONG_TYPE[option.kind]
    with pytest.raises(UserError) as raised:
        TrainConfig.from_sources({name: bad}, {}, origins=("--config c.yaml", "flags"))
    expected = EXPECTED.get(option.kind, "a mapping of names to numbers")
    if name == "workers":  # a string is a range: N or MIN-MAX
        expected = "N or MIN-MAX, e.g. 4 or 2-4"
    assert str(raised.value) == f"{name}: {bad!r} in --config c.yaml must be {expected}"


@pytest.mark.parametrize("name", [name for name, option in OPTIONS.items() if option.declaration.range])
def test_a_value_out_of_its_declared_range_is_one_line_naming_the_flag(name: str) -> None:
    limits: Range = OPTIONS[name].declaration.range
    bad = limits.low - 1 if not limits.low_open else limits.low
    config = TrainConfig(**{name: bad})
    with pytest.raises(UserError) as raised:
        config.validate()
    held = getattr(config, name)  # as a flag or YAML gives it: a number option holds a float
    assert str(raised.value).startswith(f"{OPTIONS[name].flag} {held} must be") and held == bad


@pytest.mark.parametrize("name", OPTIONS)
def test_every_option_is_in_its_config_yaml_group_and_round_trips(name: str, resolved: ResolvedConfig) -> None:
    option = OPTIONS[name]
    document = resolved.to_document()
    assert document[option.group][option.key] == getattr(resolved.options, name)
    assert ResolvedConfig.from_document(document) == resolved


@pytest.mark.parametrize("name", OPTIONS)
def test_every_option_is_in_the_run_identity_or_may_change_on_resume(name: str, resolved: ResolvedConfig) -> None:
    identity = run_identity(resolved, "fingerprint")
    assert (name in identity) == (OPTIONS[name].declaration.resume == "fixed")
    if name in identity:  # a resume that changes it is refused in one line naming it
        saved = {**identity, name: "something else"}
        with pytest.raises(UserError, match=f"--{name.replace('_', '-')} 'something else'"):
            check_identity(saved, identity, "walk")


@pytest.mark.parametrize("name", OPTIONS)
def test_every_searchable_option_can_be_searched_in_a_custom_space(name: str, resolved, tmp_path) -> None:
    value = getattr(resolved.options, name)
    space = tmp_path / "space.yaml"
    space.write_text(f"space:\n  {name}: {{choice: [{_yaml(value)}]}}\n")
    if OPTIONS[name].declaration.sweep != "searchable":
        assert name in SWEEP_OWNED
        with pytest.raises(UserError, match=f"'{name}' is set by the sweep itself"):
            load_space(str(space))
        return
    sweep = load_space(str(space))
    assert sweep.space[name].values == (value,)
    base = dataclasses.replace(TrainConfig(), data="/shards", worker_resources={})
    trial = derive(base, {name: value}, "/sweeps/s/trials", "train-1")
    assert getattr(trial.options, name) == value


def _yaml(value: object) -> str:
    import json

    return json.dumps(value)


def test_an_options_group_is_the_class_that_declares_it() -> None:
    owners = {item.name: base.GROUP for base in TrainConfig.__mro__[1:-1] for item in dataclasses.fields(base)}
    assert {option.name: option.group for option in training_options()} == owners
    assert [option.group for option in training_options()][:1] == ["model"] and len(set(owners.values())) == 7

    @dataclasses.dataclass(frozen=True)
    class Ungrouped:
        speed: int = option(1, "how fast")

    with pytest.raises(TypeError, match="^Ungrouped declares options without a GROUP of"):
        declared_options(Ungrouped)
