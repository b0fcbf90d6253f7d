"""The shard manifest: its JSON round trip, what is not a manifest, and how a split's manifest is found."""

from __future__ import annotations

import json

import pytest

from densenet_ray.data.format.manifest import FORMAT, Manifest, ShardInfo, find_manifests, load_manifest, write_manifest
from densenet_ray.data.storage import StorageError, open_storage
from densenet_ray.errors import UserError


def _manifest(split: str = "train") -> Manifest:
    shards = [ShardInfo(f"{split}-000000.tar", 3, 1024, "ab" * 32), ShardInfo(f"{split}-000001.tar", 2, 512, "cd" * 32)]
    return Manifest(
        dataset="cifar10",
        split=split,
        classes=["cat", "dog"],
        num_samples=5,
        image_size=[32, 32],
        mean=[0.5] * 3,
        std=[0.25] * 3,
        image_format="jpg",
        shards=shards,
        stats_samples=5,
    )


def test_round_trip_and_derived_figures(tmp_path) -> None:
    manifest = _manifest()
    assert Manifest.from_json(manifest.to_json()) == manifest
    assert (manifest.num_classes, manifest.total_bytes) == (2, 1536)
    write_manifest(open_storage(str(tmp_path)), manifest)
    assert json.loads((tmp_path / "train.json").read_text())["format"] == FORMAT


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ('{"format": "other/1"}', "format 'other/1' is not 'densenet-ray-shards/1'"),
        ("[1, 2]", "'list' object has no attribute 'get'"),
        ("not json", "Expecting value"),
    ],
)
def test_what_is_not_a_manifest_is_one_line(text: str, reason: str) -> None:
    with pytest.raises(UserError) as raised:
        Manifest.from_json(text, "s3://b/x.json")
    assert str(raised.value).startswith(f"s3://b/x.json is not a densenet-ray shard manifest ({reason}")


def test_finding_a_split(tmp_path) -> None:
    storage = open_storage(str(tmp_path))
    write_manifest(storage, _manifest("train"))
    write_manifest(storage, _manifest("test"))
    (tmp_path / "notes.json").write_text('{"other": true}')  # other JSON beside the shards is ignored
    assert sorted(m.split for _, m in find_manifests(str(tmp_path))) == ["test", "train"]
    assert load_manifest(str(tmp_path), "test")[1] == _manifest("test")
    assert load_manifest(str(tmp_path / "train.json"))[1] == _manifest("train")  # a manifest file itself
    with pytest.raises(UserError, match=r"holds several splits \(test, train\); choose one with --split"):
        load_manifest(str(tmp_path))
    with pytest.raises(StorageError, match=r"no shard manifest for split 'val' at .* \(build one with"):
        load_manifest(str(tmp_path), "val")
