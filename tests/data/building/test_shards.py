"""Tar shards: names, keys, byte-identical rebuilds, the recorded size and SHA-256, pixel statistics."""

from __future__ import annotations

import hashlib
import io
import tarfile

import numpy as np
from PIL import Image

from densenet_ray.data.building.shards import PixelStats, sample_key, shard_name, write_shard
from densenet_ray.data.storage import open_storage


def _png(color: tuple[int, int, int], size: tuple[int, int] = (4, 4)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, format="PNG")
    return out.getvalue()


def test_names_and_keys() -> None:
    assert shard_name("train", 7) == "train-000007.tar" and sample_key(42) == "00000042"


def test_a_shard_records_its_count_size_and_digest_and_rebuilds_identically(tmp_path) -> None:
    storage = open_storage(str(tmp_path))
    samples = [(sample_key(i), _png((i, 0, 0)), "png", i % 2) for i in range(3)]
    stats = PixelStats()
    info = write_shard(storage, "train-000000.tar", iter(samples), stats)
    data = (tmp_path / "train-000000.tar").read_bytes()
    assert (info.samples, info.bytes, info.sha256) == (3, len(data), hashlib.sha256(data).hexdigest())
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        assert archive.getnames() == [f"{sample_key(i)}.{ext}" for i in range(3) for ext in ("png", "cls")]
        assert archive.extractfile(f"{sample_key(1)}.cls").read() == b"1"
    again = write_shard(storage, "copy.tar", iter(samples))
    assert again.sha256 == info.sha256  # fixed mtimes, owners and modes
    assert (stats.images, stats.sizes, stats.formats, stats.undecodable) == (3, {(4, 4)}, {"png"}, [])


def test_pixel_statistics_merge_and_undecodable_images_are_listed(tmp_path) -> None:
    first, second = PixelStats(), PixelStats()
    first.add(_png((255, 0, 0)))
    second.add(_png((0, 0, 255)))
    first.merge(second)
    mean, std = first.mean_std()
    np.testing.assert_allclose(mean, [0.5, 0.0, 0.5])
    np.testing.assert_allclose(std, [0.5, 0.0, 0.5])
    stats = PixelStats()
    write_shard(open_storage(str(tmp_path)), "bad.tar", iter([("00000003", b"not an image", "jpg", 0)]), stats)
    assert stats.undecodable == ["00000003"]
