"""Building shards from a user's own image folder: modes become RGB and are counted, bad files are skipped and
counted (named under ``--verbose``), and the manifest records classes, counts and sizes."""

from __future__ import annotations

import io
import json
import tarfile

import pytest
from PIL import Image

from densenet_ray.cli import main
from densenet_ray.data.building.build import build_dataset
from densenet_ray.data.building.sources import imagefolder_source
from densenet_ray.data.format.image_check import NOT_AN_IMAGE, UNREADABLE, check_image
from densenet_ray.errors import UserError
from tests.data.own_images import OWN_CLASSES, write_own_folder


@pytest.fixture(scope="module")
def own_folder(tmp_path_factory, fixture_tar) -> str:
    return str(write_own_folder(fixture_tar, tmp_path_factory.mktemp("own") / "photos", per_class=6))


def test_build_converts_modes_and_skips_bad_files(own_folder, tmp_path, capsys) -> None:
    out = tmp_path / "shards"
    argv = ["data", "build", "imagefolder", "--source", own_folder, "--out", str(out), "--shard-size", "8"]
    assert main([*argv, "--holdout-per-class", "2", "--verbose"]) == 0
    printed = capsys.readouterr().out
    train, test = (json.loads((out / f"{split}.json").read_text()) for split in ("train", "test"))
    assert train["classes"] == test["classes"] == OWN_CLASSES and train["num_samples"] == 21
    assert train["class_counts"] == [4, 4, 4, 5, 4] and train["image_size"] == [96, 96] and not train["multi_label"]
    assert test["class_counts"] == [2, 2, 2, 1, 2]  # cat's broken.jpg sorts last: held out, skipped
    assert train["converted"] == {"CMYK": 1, "I;16": 1, "L": 1, "P": 1, "RGBA": 1}
    assert train["skipped"] == {NOT_AN_IMAGE: 1} and test["skipped"] == {UNREADABLE: 1}
    assert "converted 5 image(s) to RGB (1 CMYK, 1 I;16, 1 L, 1 P, 1 RGBA)" in printed
    assert "skipped 1 file(s): 1 not an image" in printed and "skipped 1 file(s): 1 does not decode" in printed
    assert "skipped bird/notes.txt: not an image" in printed and "skipped cat/broken.jpg: does not decode" in printed
    for shard in sorted(out.glob("train-*.tar")):
        with tarfile.open(shard) as archive:
            for member in archive.getmembers():
                if not member.name.endswith(".cls"):
                    with Image.open(io.BytesIO(archive.extractfile(member).read())) as image:
                        assert image.mode == "RGB" and image.size == (96, 96)
    assert main(["data", "verify", str(out)]) == 0


def test_sixteen_bit_greyscale_keeps_its_range() -> None:
    import numpy as np

    wide = Image.fromarray(np.array([[0, 32896, 65535]], dtype=np.uint16))
    buffer = io.BytesIO()
    wide.save(buffer, format="PNG")
    checked = check_image(buffer.getvalue(), "png")
    assert not isinstance(checked, tuple) and checked.converted_from == "I;16"
    pixels = np.asarray(Image.open(io.BytesIO(checked.data)))
    assert pixels[0, :, 0].tolist() == [0, 128, 255]  # PIL's own convert would clip all but 0 to 255


def test_variable_sizes_are_summarised(tmp_path, fixture_tar) -> None:
    root = write_own_folder(fixture_tar, tmp_path / "photos", per_class=3)
    for side, path in zip((40, 64, 120), sorted(root.glob("airplane/*")), strict=False):
        Image.open(path).convert("RGB").resize((side + 10, side)).save(path.with_suffix(".png"))
        path.unlink() if path.suffix != ".png" else None
    manifest = build_dataset(imagefolder_source(str(root)), str(tmp_path / "out"), shard_size=50)
    assert manifest.image_size is None and manifest.short_side == [40, 96, 120]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda root: (root / "empty").mkdir(), r"class folder .*/empty has no images; add some or remove it"),
        (lambda root: [p.unlink() for p in root.glob("*") if p.is_file()], r"has one class \(only\); a classifier"),
    ],
)
def test_empty_class_and_single_class_are_one_line_errors(tmp_path, fixture_tar, make, message) -> None:
    root = tmp_path / "photos"
    source = next(p for p in write_own_folder(fixture_tar, tmp_path / "src", per_class=1).rglob("*.png"))
    (root / "only").mkdir(parents=True)
    (root / "only" / "a.png").write_bytes(source.read_bytes())
    if "empty" in message:
        (root / "other").mkdir()
        (root / "other" / "b.png").write_bytes(source.read_bytes())
    make(root)
    with pytest.raises(UserError, match=message):
        imagefolder_source(str(root))


def test_a_class_with_only_bad_files_is_refused(tmp_path, fixture_tar) -> None:
    root = write_own_folder(fixture_tar, tmp_path / "photos", per_class=2)
    for path in (root / "deer").iterdir():
        path.write_bytes(b"\x89PNG damaged")
    with pytest.raises(UserError, match=r"class 'deer' has no readable image in .*; add some or remove it"):
        build_dataset(imagefolder_source(str(root)), str(tmp_path / "out"), shard_size=50)
