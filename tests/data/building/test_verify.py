"""``data verify``'s checks: a good split passes; a changed byte, a truncated shard, a bad label, an image that
does not decode and a miscounted manifest are each one problem line naming the shard."""

from __future__ import annotations

import dataclasses
import io

from PIL import Image

from densenet_ray.data.building.shards import write_shard
from densenet_ray.data.building.verify import verify_manifest
from densenet_ray.data.format.manifest import Manifest
from densenet_ray.data.storage import open_storage


def _jpeg() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (4, 4), (10, 20, 30)).save(out, format="JPEG")
    return out.getvalue()


def _split(tmp_path, labels=(0, 1, 0)) -> tuple[object, Manifest]:
    storage = open_storage(str(tmp_path))
    info = write_shard(
        storage, "train-000000.tar", iter((f"0000000{i}", _jpeg(), "jpg", label) for i, label in enumerate(labels))
    )
    manifest = Manifest(
        dataset="cifar10",
        split="train",
        classes=["a", "b"],
        num_samples=len(labels),
        image_size=[4, 4],
        mean=[0.0] * 3,
        std=[1.0] * 3,
        image_format="jpg",
        shards=[info],
    )
    return storage, manifest


def test_a_good_split_passes(tmp_path) -> None:
    storage, manifest = _split(tmp_path)
    report = verify_manifest(storage, manifest)
    assert (report.samples, report.shards, report.problems) == (3, 1, [])


def test_each_problem_is_one_line(tmp_path) -> None:
    storage, manifest = _split(tmp_path, labels=(0, 5, 0))
    shard = tmp_path / "train-000000.tar"
    report = verify_manifest(storage, manifest)
    assert report.problems == [f"{shard}: sample 00000001: cls 5 is outside 0..1"]
    data = bytearray(shard.read_bytes())
    data[700] ^= 0xFF  # inside the first image's bytes
    shard.write_bytes(bytes(data))
    problems = verify_manifest(storage, manifest).problems
    assert f"{shard}: SHA-256 does not match the manifest" in problems
    shard.write_bytes(bytes(data[:1024]))
    problems = verify_manifest(storage, manifest).problems
    assert f"{shard}: truncated (1024 of {manifest.shards[0].bytes} bytes)" in problems
    miscounted = dataclasses.replace(manifest, num_samples=4)
    assert "manifest train.json: shards hold 3, says 4" in verify_manifest(storage, miscounted).problems
