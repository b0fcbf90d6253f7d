"""Training options and their resolution: paper defaults, YAML < flags, types and ranges checked in one line, the
resolved config's groups, and the original learning-rate schedules."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import pytest

from densenet_ray.errors import UserError
from densenet_ray.paths import RUNS_ROOT, dataset_cache
from densenet_ray.train.config.options import TrainConfig, training_options
from densenet_ray.train.config.resolved import ResolvedConfig, anchored, derive, resolve
from densenet_ray.train.launcher import cluster_needs
from densenet_ray.train.schedule import learning_rate


def test_paper_defaults_per_dataset() -> None:
    cifar = resolve(TrainConfig(dataset="cifar10"))
    assert (cifar.options.model, cifar.options.batch_size, cifar.options.epochs) == ("densenet_bc100_k12", 64, 300)
    assert (cifar.options.eval_split, cifar.options.data, cifar.num_classes) == ("test", dataset_cache("cifar10"), 10)
    assert (cifar.options.depth, cifar.options.growth_rate, cifar.options.bottleneck, cifar.options.reduction) == (
        100,
        12,
        True,
        0.5,
    )
    assert cifar.options.storage == RUNS_ROOT and cifar.run_url == f"{RUNS_ROOT}/{cifar.options.name}"
    imagenet = resolve(TrainConfig(dataset="imagenet", workers=4, data="/no/data"))
    assert (imagenet.options.model, imagenet.options.batch_size, imagenet.options.epochs) == ("densenet121", 256, 90)
    assert (imagenet.options.eval_split, imagenet.num_classes) == ("val", 1000)
    assert resolve(TrainConfig(dataset="svhn")).options.epochs == 40
    assert resolve(TrainConfig(dataset="cifar100")).num_classes == 100


def test_relative_locations_become_absolute_once(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    config = resolve(TrainConfig(data="shards", storage="runs", name="a", init_from=None))
    assert config.options.data == str(tmp_path / "shards")
    assert config.run_url == str(tmp_path / "runs" / "a")
    s3 = resolve(TrainConfig(data="s3://b/shards", storage="s3://b/runs?endpoint_override=h:1", name="a"))
    assert s3.run_url == "s3://b/runs/a?endpoint_override=h:1" and s3.options.data == "s3://b/shards"


def test_the_document_round_trips_and_flattens_to_the_options() -> None:
    config = resolve(TrainConfig(depth=40, precision="bf16", name="x", worker_resources={"fake_gpu": 1}))
    assert ResolvedConfig.from_document(config.to_document()) == config
    flat = config.flat()
    assert (flat["model"], flat["depth"], flat["precision"], flat["name"], flat["epochs"]) == (
        "densenet_bc100_k12",
        40,
        "bf16",
        "x",
        300,
    )
    assert resolve(TrainConfig(**flat)) == config


@pytest.mark.parametrize(("amp", "precision"), [("off", "fp32"), ("bf16", "bf16")])
def test_a_document_written_before_precision_still_loads(amp: str, precision: str) -> None:
    """Run configs saved with ``amp`` (evaluate reads them from old checkpoints) load with its precision."""
    document = resolve(TrainConfig(depth=40, name="old")).to_document()
    execution = {key: value for key, value in document["execution"].items() if key != "precision"}
    old = {**document, "execution": {**execution, "amp": amp}}
    assert ResolvedConfig.from_document(old).options.precision == precision
    assert "amp" in old["execution"]  # the caller's document is left as it was


def test_a_trial_derives_from_the_anchored_base_options(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    options = TrainConfig(depth=40, epochs=3, name="base", data="shards")
    base = anchored(options, resolve(options))
    assert base.data == str(tmp_path / "shards") and base.name is None
    trial = derive(base, {"growth_rate": 24, "lr": 0.05}, "/sweeps/s/trials", "train-1")
    assert (trial.options.depth, trial.options.growth_rate, trial.options.lr, trial.options.epochs) == (40, 24, 0.05, 3)
    assert trial.run_url == "/sweeps/s/trials/train-1" and trial.options.data == str(tmp_path / "shards")
    wide = derive(
        anchored(TrainConfig(epochs=3), resolve(TrainConfig(epochs=3))), {"model": "wide_densenet_bc40_k36"}, "/s", "t"
    )
    assert (wide.options.model, wide.options.depth, wide.options.growth_rate) == ("wide_densenet_bc40_k36", 40, 36)
    with pytest.raises(UserError, match="depth: 'forty' in the trial must be an integer"):
        derive(base, {"depth": "forty"}, "/s", "t")


def test_yaml_then_flags() -> None:
    config = TrainConfig.from_sources({"epochs": 10, "lr": 0.05}, {"epochs": 3, "lr": None, "workers": 1})
    assert (config.epochs, config.lr, config.workers) == (3, 0.05, 1)
    assert TrainConfig.from_sources({"lr": 1}, {}).lr == 1.0 and isinstance(
        TrainConfig.from_sources({"lr": 1}, {}).lr, float
    )
    with pytest.raises(UserError, match="unknown option\\(s\\) in config file: epoks"):
        TrainConfig.from_sources({"epoks": 3}, {})
    dashed = TrainConfig.from_sources({"batch-size": 32, "workers": "2-4"}, {"loader-workers": 0})  # as flags are
    assert (dashed.batch_size, dashed.min_workers, dashed.workers, dashed.loader_workers) == (32, 2, 4, 0)
    with pytest.raises(UserError, match="^unknown option\\(s\\) in config file: batch_sise$"):
        TrainConfig.from_sources({"batch-sise": 3}, {})


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"depth": "forty"}, "depth: 'forty' in --config c.yaml must be an integer"),
        ({"epochs": 2.5}, "epochs: 2.5 in --config c.yaml must be an integer"),
        ({"lr": "fast"}, "lr: 'fast' in --config c.yaml must be a number"),
        ({"gpu": "yes"}, "gpu: 'yes' in --config c.yaml must be true or false"),
        ({"workers": True}, "workers: True in --config c.yaml must be an integer"),
        ({"model": 121}, "model: 121 in --config c.yaml must be a string"),
    ],
)
def test_wrong_types_in_yaml_are_one_line(values: dict, message: str) -> None:
    with pytest.raises(UserError) as raised:
        TrainConfig.from_sources(values, {}, origins=("--config c.yaml", "flags"))
    assert str(raised.value) == message


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"dataset": "mnist"}, "--dataset 'mnist' is not one of: cifar10, cifar100, svhn, imagenet"),
        ({"batch_size": 3, "workers": 4}, "global --batch-size 3 is smaller than --workers 4; every worker needs at"),
        ({"lr_schedule": "linear"}, "--lr-schedule 'linear' is not one of: step, cosine"),
        ({"precision": "fp8"}, "--precision 'fp8' is not one of: auto, fp32, bf16, fp16"),
        ({"decode": "nvjpeg"}, "--decode 'nvjpeg' is not one of: cpu, gpu"),
        (
            {"decode": "gpu", "gpu": True},
            "--decode gpu decodes ImageNet JPEGs on the workers' GPUs; it needs "
            "--dataset imagenet and --gpu (got cifar10 with --gpu)",
        ),
        (
            {"decode": "gpu", "dataset": "imagenet", "data": "/d"},
            "--decode gpu decodes ImageNet JPEGs on the "
            "workers' GPUs; it needs --dataset imagenet and "
            "--gpu (got imagenet without --gpu)",
        ),
        ({"epochs": 0}, "--epochs 0 must be at least 1"),
        ({"keep_checkpoints": 0}, "--keep-checkpoints 0 must be at least 1"),
        ({"weight_decay": -1.0}, "--weight-decay -1.0 must be >= 0"),
        ({"sync_bn": True, "workers": 2}, "--sync-bn needs --gpu"),
        ({"dataset": "imagenet"}, "--data is required for ImageNet"),
        ({"depth": 101}, "depth 101 does not fit a DenseNet-BC/B"),
        ({"label_smoothing": 1.0}, "--label-smoothing 1.0 must be in [0.0, 1.0)"),
        ({"mix_prob": 1.5}, "--mix-prob 1.5 must be in [0.0, 1.0]"),
        ({"ema": 1.0}, "--ema 1.0 must be in [0.0, 1.0)"),
        ({"randaugment_magnitude": 31}, "--randaugment-magnitude 31 must be in [0, 30]"),
        ({"mixup": -0.2}, "--mixup -0.2 must be >= 0 (0 is off)"),
        ({"accumulate": 0}, "--accumulate 0 must be at least 1"),
        ({"augment_policy": "augmix"}, "--augment-policy 'augmix' is not one of: none, randaugment, trivialaugment"),
        (
            {"dataset": "imagenet", "data": "/d", "gpu": True, "decode": "gpu", "augment_policy": "randaugment"},
            "--randaugment augments one image at a time in the loader processes, which --decode gpu bypasses: use "
            "--decode cpu",
        ),
        ({"log": "mlflow,comet"}, "--log 'mlflow,comet': 'comet' is not one of: mlflow, wandb"),
        ({"log": "mlflow", "storage": "s3://b/runs"}, "--log mlflow with --storage s3://b/runs needs --tracking-uri"),
    ],
)
def test_bad_values_are_one_line_errors(changes: dict, message: str) -> None:
    with pytest.raises(UserError) as raised:
        resolve(TrainConfig(**changes))
    assert str(raised.value).startswith(message) and "\n" not in str(raised.value)


def test_decode_gpu_reaches_the_resolved_config() -> None:
    config = resolve(TrainConfig(dataset="imagenet", data="/d", gpu=True, decode="gpu", name="x"), False)
    assert config.options.decode == "gpu"
    assert ResolvedConfig.from_document(config.to_document()).options.decode == "gpu"


def test_cifar_step_schedule_is_149_75_76() -> None:
    options = resolve(TrainConfig(dataset="cifar10")).options
    rates = [learning_rate(options, epoch, 0, 782) for epoch in range(300)]
    assert [rates.count(0.1), rates.count(pytest.approx(0.01)), rates.count(pytest.approx(0.001))] == [149, 75, 76]


@pytest.mark.parametrize("epochs", [1, 2])
def test_a_run_too_short_for_the_epoch_drops_divides_at_half_and_three_quarters_of_its_steps(epochs) -> None:
    """The epoch rule would train a 1-epoch run at lr / 100 from its first step, and a 2-epoch run at lr / 10."""
    from densenet_ray.train.schedule import mean_rate

    options = resolve(TrainConfig(dataset="cifar10", epochs=epochs)).options
    steps = 40
    rates = [learning_rate(options, epoch, index, steps) for epoch in range(epochs) for index in range(steps)]
    total = epochs * steps
    assert rates == pytest.approx([0.1] * (total // 2) + [0.01] * (total // 4) + [0.001] * (total // 4))
    assert mean_rate(options, 0, steps) == pytest.approx(sum(rates[:steps]) / steps)


def test_three_epochs_keep_the_epoch_rule() -> None:
    options = resolve(TrainConfig(dataset="cifar10", epochs=3)).options
    assert [learning_rate(options, epoch, 5, 10) for epoch in range(3)] == pytest.approx([0.1, 0.01, 0.001])


def test_imagenet_step_and_cosine() -> None:
    step = resolve(TrainConfig(dataset="imagenet", workers=4, data="/no/data")).options
    assert [learning_rate(step, e, 0, 10) for e in (0, 29, 30, 60)] == pytest.approx([0.1, 0.1, 0.01, 0.001])
    cosine = resolve(TrainConfig(dataset="imagenet", workers=4, lr_schedule="cosine", epochs=100, data="/d")).options
    assert learning_rate(cosine, 0, 0, 10) == pytest.approx(0.1)
    assert learning_rate(cosine, 50, 0, 10) == pytest.approx(0.05)
    assert learning_rate(cosine, 25, 5, 10) == pytest.approx(0.05 * (1 + math.cos(math.pi * 255 / 1000)))


def test_holdout_split_errors(fixture_tar) -> None:
    from densenet_ray.data.building.sources import imagefolder_source, split_holdout

    with pytest.raises(UserError, match="--holdout-per-class 50 leaves no training images for class\\(es\\) airplane"):
        split_holdout(imagefolder_source(fixture_tar), 50)


def test_a_worker_range_makes_the_run_elastic() -> None:
    flags = TrainConfig.from_sources({"workers": 4}, {"workers": "2-6"}, origins=("c.yaml", "flags"))
    assert (flags.workers, flags.min_workers) == (6, 2)
    elastic = resolve(TrainConfig.from_sources(None, {"workers": "2-6"}), False)
    assert (elastic.least_workers, elastic.options.workers) == (2, 6)
    needs = cluster_needs(elastic)  # a cluster must fit the least; a private instance gets room for the most
    assert (needs.cpus, needs.private_cpus, needs.what) == (2, 6, "2 workers x 1 CPU")
    fixed = resolve(TrainConfig.from_sources({"workers": "3"}, {}), False)
    assert (fixed.least_workers, fixed.options.workers) == (3, 3)
    document = resolve(TrainConfig(), False).to_document()
    del document["execution"]["min_workers"]  # a run saved before elastic training
    assert ResolvedConfig.from_document(document).least_workers == 2
    with pytest.raises(UserError, match=r"^workers: '2-x' in flags must be N or MIN-MAX, e.g. 4 or 2-4$"):
        TrainConfig.from_sources(None, {"workers": "2-x"})
    with pytest.raises(UserError, match=r"^--workers 5-3: the least workers must be between 1 and the most$"):
        TrainConfig.from_sources(None, {"workers": "5-3"}).validate()


def test_recipe_options_reach_config_yaml_and_old_documents_load_with_them_off(tmp_path) -> None:
    options = TrainConfig(label_smoothing=0.1, mixup=0.2, ema=0.999, augment_policy="randaugment", name="r")
    config = resolve(dataclasses.replace(options, storage=str(tmp_path), log="mlflow"))
    document = config.to_document()
    assert document["recipe"]["label_smoothing"] == 0.1 and document["recipe"]["augment_policy"] == "randaugment"
    assert document["tracking"] == {
        "log": "mlflow",
        "tracking_uri": f"sqlite:///{tmp_path}/mlflow.db",
        **{"log_every_steps": 50},
    }
    assert ResolvedConfig.from_document(document) == config
    assert config.flat()["ema"] == 0.999  # a sweep's labels and tables see them as options
    old = {key: value for key, value in document.items() if key not in ("recipe", "tracking")}
    recipe = [option.name for option in training_options() if option.group == "recipe"]
    loaded = ResolvedConfig.from_document(old).options  # runs from before the options: all off
    assert [getattr(loaded, name) for name in recipe] == [getattr(TrainConfig(), name) for name in recipe]


def test_a_missing_tracking_extra_is_one_line_naming_it(monkeypatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    with pytest.raises(UserError, match=r"^--log wandb needs the wandb package: pip install 'densenet-ray\[wandb\]'$"):
        resolve(TrainConfig(log="wandb"))


def test_recipe_flags_parse_as_their_options() -> None:
    import argparse

    from densenet_ray.cli.train_options import add_training_options

    parser = argparse.ArgumentParser()
    add_training_options(parser)
    args = parser.parse_args(["--ema", "--randaugment", "--mixup", "0.2", "--no-decay-norm-bias", "--warmup", "1"])
    assert (args.ema, args.augment_policy, args.mixup, args.no_decay_norm_bias, args.warmup) == (
        0.9998,
        "randaugment",
        0.2,
        True,
        1.0,
    )
    assert parser.parse_args(["--ema", "0.99"]).ema == 0.99 and parser.parse_args([]).ema is None


def test_python_values_are_held_to_what_yaml_values_are() -> None:
    config = TrainConfig(workers="2-8", lr=1)
    assert (config.workers, config.min_workers, config.lr) == (8, 2, 1.0)
    with pytest.raises(UserError, match=r"^epochs: '3' in TrainConfig\(...\) must be an integer$"):
        TrainConfig(epochs="3")


def test_resolve_checks_each_value_and_the_relations_once(monkeypatch) -> None:
    """One pass of each check: every option's value as given, the rules between them with the defaults filled in."""
    from densenet_ray.train.config import options as module

    calls: dict[str, int] = {"value": 0, "relations": 0}

    def counted(name: str, check: Callable[..., None]) -> Callable[..., None]:
        def spy(*args: Any, **kwargs: Any) -> None:
            calls[name] += 1
            return check(*args, **kwargs)

        return spy

    monkeypatch.setattr(module, "check_value", counted("value", module.check_value))
    monkeypatch.setattr(module, "check_relations", counted("relations", module.check_relations))
    resolve(TrainConfig(early_stop="test_error:3"), check_weights=False)
    assert calls == {"value": len(training_options()), "relations": 1}
