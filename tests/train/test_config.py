"""Training configuration: paper defaults, YAML < flags, one-line errors, the original learning-rate schedules."""

from __future__ import annotations

import math

import pytest

from densenet_ray.train.config import TrainConfig, learning_rate


def test_paper_defaults_per_dataset() -> None:
    cifar = TrainConfig(dataset="cifar10").resolved()
    assert (cifar.model, cifar.batch_size, cifar.epochs, cifar.eval_split) == ("densenet_bc100_k12", 64, 300, "test")
    imagenet = TrainConfig(dataset="imagenet", workers=4).resolved()
    assert (imagenet.model, imagenet.batch_size, imagenet.epochs, imagenet.eval_split) == (
        "densenet121",
        256,
        90,
        "val",
    )
    assert TrainConfig(dataset="svhn").resolved().epochs == 40
    assert TrainConfig(dataset="cifar100").num_classes == 100


def test_yaml_then_flags() -> None:
    config = TrainConfig.from_sources({"epochs": 10, "lr": 0.05}, {"epochs": 3, "lr": None, "workers": 1})
    assert (config.epochs, config.lr, config.workers) == (3, 0.05, 1)
    with pytest.raises(ValueError, match="unknown option\\(s\\) in config file: epoks"):
        TrainConfig.from_sources({"epoks": 3}, {})


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"dataset": "mnist"}, "unknown dataset 'mnist'; choose one of: cifar10, cifar100, svhn, imagenet"),
        ({"batch_size": 63, "workers": 2}, "global --batch-size 63 is not divisible by --workers 2"),
        ({"lr_schedule": "linear"}, "--lr-schedule 'linear' is not one of: step, cosine"),
        ({"amp": "fp8"}, "--amp 'fp8' is not one of: bf16, fp16"),
        ({"epochs": 0}, "--epochs 0 must be at least 1"),
        ({"sync_bn": True, "workers": 2}, "--sync-bn needs --gpu"),
    ],
)
def test_bad_values_are_one_line_errors(changes: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", "\\(").replace(")", "\\)")):
        TrainConfig(**changes).resolved()


def test_cifar_step_schedule_is_149_75_76() -> None:
    config = TrainConfig(dataset="cifar10").resolved()
    rates = [learning_rate(config, epoch, 0, 782) for epoch in range(300)]
    assert [rates.count(0.1), rates.count(pytest.approx(0.01)), rates.count(pytest.approx(0.001))] == [149, 75, 76]


def test_imagenet_step_and_cosine() -> None:
    config = TrainConfig(dataset="imagenet", workers=4).resolved()
    assert [learning_rate(config, e, 0, 10) for e in (0, 29, 30, 60)] == pytest.approx([0.1, 0.1, 0.01, 0.001])
    cosine = TrainConfig(dataset="imagenet", workers=4, lr_schedule="cosine", epochs=100, lr=0.1).resolved()
    assert learning_rate(cosine, 0, 0, 10) == pytest.approx(0.1)
    assert learning_rate(cosine, 50, 0, 10) == pytest.approx(0.05)
    assert learning_rate(cosine, 25, 5, 10) == pytest.approx(0.05 * (1 + math.cos(math.pi * 255 / 1000)))


def test_first_use_builds_the_dataset_with_a_holdout(tmp_path, fixture_tar, monkeypatch) -> None:
    from densenet_ray.data.manifest import load_manifest
    from densenet_ray.train import launcher

    monkeypatch.setattr(launcher, "DATA_CACHE", str(tmp_path))
    monkeypatch.setattr(launcher, "HOLDOUT_PER_CLASS", 10)
    config = TrainConfig(dataset="cifar10", source=fixture_tar).resolved()
    lines: list[str] = []
    directory = launcher.ensure_data(config, lines.append)
    assert directory == str(tmp_path / "cifar10")
    assert load_manifest(directory, "train")[1].num_samples == 400
    assert load_manifest(directory, "test")[1].num_samples == 100
    assert any("holding out the last 10 images per class" in line for line in lines)
    assert launcher.ensure_data(config, lines.append) == directory  # built once
    assert sum("first use" in line for line in lines) == 1
    from densenet_ray.data.build import build_dataset
    from densenet_ray.data.sources import imagefolder_source

    build_dataset(imagefolder_source(fixture_tar), directory, shard_size=1000, order_seed=None)  # an old cache
    launcher.ensure_data(config, lines.append)
    assert sum("first use" in line for line in lines) == 2  # class-sorted shards are rebuilt
    assert load_manifest(directory, "train")[1].order_seed == 0
    with pytest.raises(ValueError, match="--data is required for ImageNet"):
        launcher.ensure_data(TrainConfig(dataset="imagenet", workers=4).resolved())


def test_holdout_split_errors(fixture_tar) -> None:
    from densenet_ray.data.sources import imagefolder_source, split_holdout

    with pytest.raises(ValueError, match="--holdout-per-class 50 leaves no training images for class\\(es\\) airplane"):
        split_holdout(imagefolder_source(fixture_tar), 50)


def test_orphan_checkpoints_are_removed(tmp_path) -> None:
    import json

    from densenet_ray.train.launcher import remove_orphan_checkpoints

    for name in ("checkpoint_a", "checkpoint_b", "checkpoint_c"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "state.pt").write_bytes(b"x")
    snapshot = {
        "checkpoint_results": [{"checkpoint_dir_name": "checkpoint_a"}, {"checkpoint_dir_name": "checkpoint_c"}]
    }
    (tmp_path / "checkpoint_manager_snapshot.json").write_text(json.dumps(snapshot))
    assert remove_orphan_checkpoints(str(tmp_path)) == ["checkpoint_b"]
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == ["checkpoint_a", "checkpoint_c"]
    assert remove_orphan_checkpoints(str(tmp_path / "missing")) == []
