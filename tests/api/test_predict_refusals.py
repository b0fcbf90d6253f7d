"""``predict`` on hostile files beside real photographs: a 69-byte PNG declaring 30000x30000 pixels and a sparse
member of a ``.tar`` shard are each skipped in one line, as a file that does not decode is, and the photographs
around them are classified as they are alone."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from densenet_ray.cli import main
from densenet_ray.data.format.tar_members import MAX_MEMBER_BYTES
from tests.data.hostile import photos, png_bomb, sparse_member, tar_of

SAVED_RUN = Path(__file__).resolve().parents[1] / "fixtures" / "runs" / "run-from-9912cdd"


def test_a_bomb_and_a_sparse_member_are_skipped_in_one_line_each(
    tmp_path: Path, fixture_tar: str, capsys: pytest.CaptureFixture[str]
) -> None:
    run = shutil.copytree(SAVED_RUN, tmp_path / "run")
    (_, cat), (_, other) = photos(fixture_tar, 2)
    (tmp_path / "cat.jpg").write_bytes(cat)
    (tmp_path / "huge.png").write_bytes(png_bomb())
    shard = tmp_path / "new.tar"
    shard.write_bytes(tar_of([("00000000.jpg", other)], sparse_member("00000001.jpg")))
    images = [str(tmp_path / "cat.jpg"), str(tmp_path / "huge.png"), str(shard)]
    assert main(["predict", str(run), *images, "--top", "1"]) == 0
    printed = capsys.readouterr()
    assert printed.err.splitlines() == [
        f"skipped {tmp_path}/huge.png: does not decode (Image size (900000000 pixels) exceeds limit of 178956970 "
        "pixels, could be decompression bomb DOS attack.)",
        f"skipped {shard}/00000001.jpg: {shard}: member 00000001.jpg is a sparse file; members must be plain files "
        f"of at most {MAX_MEMBER_BYTES >> 20} MiB",
    ]
    classified = printed.out.splitlines()
    assert [line.split(": ")[0] for line in classified] == [f"{tmp_path}/cat.jpg", f"{shard}/00000000.jpg"]
    assert main(["predict", str(run), str(tmp_path / "cat.jpg"), "--top", "1"]) == 0
    assert capsys.readouterr().out.splitlines() == classified[:1]  # the same class and probability alone
