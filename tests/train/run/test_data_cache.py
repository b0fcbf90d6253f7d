"""The default dataset cache: built on first use from a class-folder source, once, and rebuilt when it is stale."""

from __future__ import annotations

import dataclasses

from densenet_ray.train.config.options import TrainConfig
from densenet_ray.train.config.resolved import resolve
from densenet_ray.train.run import data_cache


def test_first_use_builds_the_dataset_with_a_holdout(tmp_path, fixture_tar, monkeypatch) -> None:
    from densenet_ray.data.building.build import build_dataset
    from densenet_ray.data.building.sources import imagefolder_source
    from densenet_ray.data.format.manifest import load_manifest

    directory = str(tmp_path / "cifar10")
    monkeypatch.setattr(data_cache, "dataset_cache", lambda dataset: str(tmp_path / dataset))
    monkeypatch.setattr(data_cache, "HOLDOUT_PER_CLASS", 10)
    spec = dataclasses.replace(resolve(TrainConfig(dataset="cifar10", source=fixture_tar)).options, data=directory)
    lines: list[str] = []
    data_cache.ensure_data(spec, lines.append)
    assert load_manifest(directory, "train")[1].num_samples == 400
    assert load_manifest(directory, "test")[1].num_samples == 100
    assert any("holding out the last 10 images per class" in line for line in lines)
    data_cache.ensure_data(spec, lines.append)
    assert sum("first use" in line for line in lines) == 1  # built once
    build_dataset(imagefolder_source(fixture_tar), directory, shard_size=1000, order_seed=None)  # an old cache
    data_cache.ensure_data(spec, lines.append)
    assert sum("first use" in line for line in lines) == 2  # class-sorted shards are rebuilt
    assert load_manifest(directory, "train")[1].order_seed == 0
    elsewhere = dataclasses.replace(spec, data=str(tmp_path / "given"))
    data_cache.ensure_data(elsewhere, lines.append)  # --data is used as it is, never built
    assert sum("first use" in line for line in lines) == 2 and not (tmp_path / "given").exists()
