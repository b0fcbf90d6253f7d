"""Tar members that declare more than they hold: a GNU sparse member (a 2 KB archive declaring 256 MiB) and a plain
header over the member limit end every reader of members in one line naming the archive and the member, before
the member's bytes are read; the real photographs before them read as they are, and alone they build."""

from __future__ import annotations

import hashlib
import tracemalloc
from pathlib import Path

import pytest

from densenet_ray.data.building.folder_source import imagefolder_source
from densenet_ray.data.building.verify import verify_shard
from densenet_ray.data.format.manifest import ShardInfo
from densenet_ray.data.format.shard_index import index_tar, parse_index
from densenet_ray.data.format.tar_members import MAX_MEMBER_BYTES
from densenet_ray.data.reading.images import RefusedMember, image_opener, image_paths
from densenet_ray.data.reading.shard_reader import read_positions, read_shard
from densenet_ray.data.storage import open_storage
from densenet_ray.errors import DataError, UserError
from tests.data.hostile import SPARSE_BYTES, oversized_member, photos, sparse_member, tar_of

LIMIT = f"members must be plain files of at most {MAX_MEMBER_BYTES >> 20} MiB"


@pytest.fixture(scope="module")
def two_photos(fixture_tar: str) -> list[tuple[str, bytes]]:
    return photos(fixture_tar, 2)


def _samples(two_photos: list[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
    """Two shard samples of real photographs: ``00000000.jpg``, ``00000000.cls``, ``00000001.jpg``, ..."""
    return [
        (f"{key:08d}.{extension}", data if extension == "jpg" else str(key).encode())
        for key, (_, data) in enumerate(two_photos)
        for extension in ("jpg", "cls")
    ]


@pytest.mark.parametrize(
    ("bad", "problem"),
    [
        (sparse_member("00000002.jpg"), "is a sparse file"),
        (oversized_member("00000002.jpg", MAX_MEMBER_BYTES + 1), f"declares {MAX_MEMBER_BYTES + 1:,} bytes"),
    ],
)
def test_a_shard_read_ends_in_one_line_at_the_member_and_reads_the_photos_before_it(
    tmp_path: Path, two_photos: list[tuple[str, bytes]], bad: bytes, problem: str
) -> None:
    data = tar_of(_samples(two_photos), bad)
    assert len(data) < 32 * 1024
    (tmp_path / "train-000000.tar").write_bytes(data)
    storage = open_storage(str(tmp_path))
    shard = ShardInfo("train-000000.tar", 3, len(data), "")
    read = []
    tracemalloc.start()
    try:
        with pytest.raises(DataError) as refused:
            read.extend(read_shard(storage, shard))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert str(refused.value) == f"shard {tmp_path}/train-000000.tar: member 00000002.jpg {problem}; {LIMIT}"
    assert read == [("00000000", two_photos[0][1], 0)]  # the second sample was still gathering its members
    assert peak < 8 << 20  # the 256 MiB of zeros are never made


def test_an_indexed_read_refuses_a_member_over_the_limit_before_reading_the_span(
    tmp_path: Path, two_photos: list[tuple[str, bytes]]
) -> None:
    data = tar_of(_samples(two_photos))
    (tmp_path / "train-000000.tar").write_bytes(data)
    storage = open_storage(str(tmp_path))
    shard = ShardInfo("train-000000.tar", 2, len(data), "")
    with open(tmp_path / "train-000000.tar", "rb") as stream:
        index = index_tar(stream)
    assert [position for position, _ in read_positions(storage, shard, [0, 1], index)] == [0, 1]
    claimed = index.to_text().replace(f" {len(two_photos[1][1])} 00000001.jpg", f" {SPARSE_BYTES} 00000001.jpg")
    forged = parse_index(claimed, "train-000000.idx")
    with pytest.raises(DataError, match=f"member 00000001.jpg declares {SPARSE_BYTES:,} bytes; {LIMIT}"):
        list(read_positions(storage, shard, [1], forged))


def test_a_class_folder_tar_with_a_sparse_member_is_refused_naming_it(
    tmp_path: Path, two_photos: list[tuple[str, bytes]]
) -> None:
    archive = tmp_path / "photos.tar"
    archive.write_bytes(tar_of(two_photos, sparse_member("bird/big.jpg")))
    with pytest.raises(UserError) as refused:
        imagefolder_source(str(archive))
    assert str(refused.value) == f"{archive}: member bird/big.jpg is a sparse file; {LIMIT}"
    archive.write_bytes(tar_of(two_photos))  # the same photographs alone build
    assert len(imagefolder_source(str(archive))) == 2


def test_predict_s_tar_opener_refuses_the_member_and_opens_the_others(
    tmp_path: Path, two_photos: list[tuple[str, bytes]]
) -> None:
    shard = tmp_path / "new.tar"
    shard.write_bytes(tar_of(_samples(two_photos), sparse_member("00000002.jpg")))
    paths = image_paths([str(shard)])
    assert paths == [f"{shard}/00000000.jpg", f"{shard}/00000001.jpg", f"{shard}/00000002.jpg"]
    with image_opener() as open_image:
        assert [open_image(path).size for path in paths[:2]] == [(32, 32), (32, 32)]
        with pytest.raises(RefusedMember) as refused:
            open_image(paths[2])
    assert str(refused.value) == f"{shard}: member 00000002.jpg is a sparse file; {LIMIT}"


def test_verify_names_the_member_as_a_problem_without_reading_it(
    tmp_path: Path, two_photos: list[tuple[str, bytes]]
) -> None:
    data = tar_of(_samples(two_photos), sparse_member("00000002.jpg"))
    (tmp_path / "train-000000.tar").write_bytes(data)
    shard = ShardInfo("train-000000.tar", 3, len(data), hashlib.sha256(data).hexdigest())
    tracemalloc.start()
    try:
        good, problems = verify_shard(open_storage(str(tmp_path)), shard, num_classes=10)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    url = f"{tmp_path}/train-000000.tar"
    assert good == 2 and problems[0] == f"{url}: member 00000002.jpg is a sparse file; {LIMIT}"
    assert peak < 8 << 20
