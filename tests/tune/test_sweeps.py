"""Sweep definitions and space files: the paper's studies, and one-line errors for bad spaces."""

from __future__ import annotations

from pathlib import Path

import pytest

from densenet_ray.train.config.options import TrainConfig
from densenet_ray.tune.sweeps import NAMED_SWEEPS, load_space, named_sweep, trial_label

JOBS = Path(__file__).resolve().parents[2] / "jobs"


def _label(options: dict, searched: list[str] | None = None) -> str:
    """The label of a trial given as a sweep writes it (its options by name)."""
    return trial_label(TrainConfig.from_sources(options, {}), searched)


def test_named_sweeps_are_the_papers_studies() -> None:
    labels = {kind: [_label(trial) for trial in named_sweep(kind).grid] for kind in NAMED_SWEEPS}
    assert labels["wide"] == ["BC L=100 k=12", "Wide-BC L=40 k=36", "Wide-BC L=40 k=48", "Wide-BC L=40 k=60"]
    assert labels["deep"] == ["BC L=40 k=12", "BC L=100 k=12", "BC L=160 k=12", "BC L=250 k=12"]
    assert labels["growth"] == ["BC L=100 k=12", "BC L=100 k=24", "BC L=100 k=32", "BC L=100 k=40"]
    assert all(_label(named_sweep(kind).baseline or {}) == "BC L=100 k=12" for kind in NAMED_SWEEPS)
    with pytest.raises(ValueError, match="unknown sweep 'tall'; choose one of: wide, deep, growth, custom"):
        named_sweep("tall")


@pytest.mark.parametrize("name", ["tune-wide.yaml", "tune-deep.yaml", "tune-growth.yaml", "tune-custom.yaml"])
def test_the_job_examples_are_valid_spaces(name: str) -> None:
    sweep = load_space(str(JOBS / name))
    assert sweep.kind == "custom" and sweep.space
    kind = name.removeprefix("tune-").removesuffix(".yaml")
    if kind in NAMED_SWEEPS:  # the same trials as the named sweep
        grid = [{**sweep.options, next(iter(sweep.space)): value} for value in next(iter(sweep.space.values())).values]
        assert [_label(t) for t in grid] == [_label(t) for t in named_sweep(kind).grid]
    else:
        assert (sweep.scheduler, sweep.num_samples, sorted(sweep.space)) == ("asha", 8, ["drop_rate", "lr"])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("space: [1, 2]", "'space' must map training options to distributions"),
        ("space:\n  lrate: {grid: [0.1]}", "space: 'lrate' is not a training option"),
        ("space:\n  lr: {gaussian: [0.1, 0.01]}", "space.lr: unknown distribution 'gaussian'; use one of: grid"),
        ("space:\n  lr: {loguniform: [0, 0.1]}", "space.lr: loguniform needs 0 < low < high"),
        ("space:\n  lr: {uniform: [0.1]}", "space.lr: uniform takes [low, high] numbers"),
        ("space:\n  lr: 0.1", "space.lr must be one of {grid, choice, uniform, loguniform, randint: ...}"),
        ("space:\n  name: {grid: [a, b]}", "space: 'name' is set by the sweep itself"),
        ("scheduler: pbt\nspace:\n  lr: {grid: [0.1]}", "scheduler 'pbt' is not one of: fifo, asha"),
        ("grace_period: 0\nspace:\n  lr: {grid: [0.1]}", "grace_period must be an integer >= 1, not 0"),
        ("spaces:\n  lr: {grid: [0.1]}", "unknown entry 'spaces'"),
        ("space: {lr: [", "is not valid YAML"),
    ],
)
def test_bad_space_files_are_one_line_errors(tmp_path, text: str, message: str) -> None:
    path = tmp_path / "space.yaml"
    path.write_text(text)
    with pytest.raises(ValueError) as info:
        load_space(str(path))
    assert message in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(ValueError, match="No such file"):
        load_space(str(tmp_path / "missing.yaml"))


def test_labels_name_the_searched_options() -> None:
    options = {"model": "wide_densenet_bc40_k36", "lr": 0.0512345, "drop_rate": 0.1, "epochs": 3}
    assert _label(options, ["drop_rate", "lr"]) == "Wide-BC L=40 k=36 drop_rate=0.1 lr=0.0512"
    assert _label({"model": "densenet40_k12"}) == "L=40 k=12"
    assert _label({"model": "densenet121"}) == "DenseNet-121 k=32"


def test_a_custom_space_searches_recipe_options(tmp_path) -> None:
    from densenet_ray.train.config.options import TrainConfig
    from densenet_ray.train.config.resolved import anchored, derive, resolve

    space = tmp_path / "space.yaml"
    space.write_text(
        "options: {epochs: 2, augment_policy: randaugment}\n"
        "space:\n  label_smoothing: {grid: [0.0, 0.1]}\n  ema: {choice: [0.999, 0.9998]}\n"
        "  mixup: {uniform: [0.0, 0.4]}\n"
    )
    sweep = load_space(str(space))
    assert sorted(sweep.space) == ["ema", "label_smoothing", "mixup"]
    options = TrainConfig.from_sources(sweep.options, {})
    base = anchored(options, resolve(options))
    trial = derive(base, {"label_smoothing": 0.1, "ema": 0.999, "mixup": 0.25}, str(tmp_path), "t")
    assert (trial.options.label_smoothing, trial.options.ema, trial.options.mixup) == (0.1, 0.999, 0.25)
    assert trial.options.augment_policy == "randaugment"
    assert _label({"label_smoothing": 0.1, "ema": 0.999}, ["label_smoothing", "ema"]).endswith(
        "label_smoothing=0.1 ema=0.999"
    )
