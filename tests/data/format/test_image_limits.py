"""A 69-byte PNG declaring 30000x30000 pixels is judged from its header: the shard builder skips it as a file that
does not decode, named and counted, the loader's decoders (PIL's and torchvision.io's, which would allocate 2.7 GB
and, on this header, crash the process) return nothing for it as for a corrupt sample, and a file over the shard
member limit is skipped before it is decoded. ``--decode gpu`` never receives it: the loader worker that reads the
header drops it. The real photographs beside it are unaffected."""

from __future__ import annotations

from pathlib import Path

import pytest

from densenet_ray.data.building.build import build_dataset
from densenet_ray.data.building.folder_source import imagefolder_source
from densenet_ray.data.format.image_check import UNREADABLE, check_image, over_pixel_limit
from densenet_ray.data.format.manifest import load_manifest
from densenet_ray.data.format.tar_members import MAX_MEMBER_BYTES
from densenet_ray.data.reading.samples import decode, encode
from tests.data.hostile import photos, png_bomb

BOMB_DETAIL = "Image size (900000000 pixels) exceeds limit of 178956970 pixels, could be decompression bomb DOS attack."


@pytest.fixture(scope="module")
def two_photos(fixture_tar: str) -> list[tuple[str, bytes]]:
    return photos(fixture_tar, 2)


def test_the_builder_skips_the_bomb_as_a_file_that_does_not_decode(
    tmp_path: Path, two_photos: list[tuple[str, bytes]]
) -> None:
    assert len(png_bomb()) == 69 and over_pixel_limit(png_bomb())
    assert check_image(png_bomb(), "png") == (UNREADABLE, BOMB_DETAIL)
    folder = tmp_path / "photos"
    for name, data in two_photos:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    bomb_class = two_photos[0][0].split("/")[0]
    (folder / bomb_class / "huge.png").write_bytes(png_bomb())
    build_dataset(imagefolder_source(str(folder)), str(tmp_path / "shards"), shard_size=10)
    _, manifest = load_manifest(str(tmp_path / "shards"), "train")
    assert manifest.num_samples == 2 and manifest.skipped == {UNREADABLE: 1}
    assert manifest.skipped_files == [f"{bomb_class}/huge.png: {UNREADABLE} ({BOMB_DETAIL})"]


@pytest.mark.parametrize("tensors", [False, True], ids=["PIL", "torchvision.io"])
def test_the_loader_decodes_the_photo_and_returns_nothing_for_the_bomb(
    two_photos: list[tuple[str, bytes]], tensors: bool
) -> None:
    photo = decode(two_photos[0][1], None, seed=0, tensors=tensors)
    assert photo is not None and tuple(photo.shape) == (3, 32, 32)
    assert decode(png_bomb(), None, seed=0, tensors=tensors) is None


def test_decoding_on_the_device_never_gets_the_bomb(two_photos: list[tuple[str, bytes]]) -> None:
    encoded = encode(two_photos[0][1], None, seed=0)  # --decode gpu: the loader worker reads the header only
    assert encoded is not None and bytes(encoded[0].tolist()) == two_photos[0][1]
    assert encode(png_bomb(), None, seed=0) is None  # counted as a sample that failed to decode


def test_a_file_over_the_member_limit_is_skipped_before_it_is_decoded(two_photos: list[tuple[str, bytes]]) -> None:
    photo = two_photos[0][1]
    padded = photo + b"\0" * (MAX_MEMBER_BYTES + 1 - len(photo))  # a JPEG with trailing bytes still decodes
    size = f"{MAX_MEMBER_BYTES + 1:,}"
    assert check_image(padded, "jpg") == (UNREADABLE, f"{size} bytes, more than a shard member's 64 MiB")
    assert not isinstance(check_image(photo, "jpg"), tuple)
