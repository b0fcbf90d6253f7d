"""``data build imagefolder`` reads a folder as torchvision's ``ImageFolder`` does: images at any depth below their
class folder count for that class, in ImageFolder's order (checked against ``ImageFolder(root).samples``); a top
level of train/val/test folders is read as splits; an ambiguous layout is refused in one line until ``--layout``
decides it."""

from __future__ import annotations

import json
import tarfile
from collections import Counter
from pathlib import Path

import pytest
from torchvision.datasets import ImageFolder

from densenet_ray.cli import main
from densenet_ray.data.building.sources import imagefolder_source
from densenet_ray.errors import UserError
from tests.data.own_images import write_nested_classes

CLASSES = ["airplane", "bird", "cat"]


def _shard_samples(out: Path, split: str) -> Counter[tuple[bytes, int]]:
    """``(image bytes, class index)`` of every sample in the split's shards."""
    samples: dict[str, dict[str, bytes]] = {}
    for shard in sorted(out.glob(f"{split}-*.tar")):
        with tarfile.open(shard) as archive:
            for member in archive.getmembers():
                key, _, extension = member.name.partition(".")
                samples.setdefault(key, {})[extension] = archive.extractfile(member).read()
    return Counter((sample["jpg"], int(sample["cls"])) for sample in samples.values())


def _torchvision_samples(root: Path) -> Counter[tuple[bytes, int]]:
    """``(file bytes, class index)`` of what torchvision's ``ImageFolder`` finds under ``root``."""
    return Counter((Path(path).read_bytes(), label) for path, label in ImageFolder(str(root)).samples)


def _build(source: Path, out: Path, *options: str) -> dict[str, dict]:
    """Build with the CLI; the manifests written, by split."""
    argv = ["data", "build", "imagefolder", "--source", str(source), "--out", str(out), "--shard-size", "10"]
    assert main([*argv, *options]) == 0
    return {path.stem: json.loads(path.read_text()) for path in out.glob("*.json")}


def test_images_at_any_depth_count_for_their_class_in_imagefolder_order(tmp_path, fixture_tar) -> None:
    root = write_nested_classes(fixture_tar, tmp_path / "photos", CLASSES, per_class=8)
    reference = ImageFolder(str(root))
    assert {len(Path(path).relative_to(root).parts) for path, _ in reference.samples} == {2, 3, 4}
    source = imagefolder_source(str(root))
    assert source.classes == reference.classes == CLASSES
    assert [(entry.path, entry.label) for entry in source.entries] == reference.samples  # the same order too
    manifests = _build(root, tmp_path / "shards")
    assert list(manifests) == ["train"] and manifests["train"]["class_counts"] == [8, 8, 8]
    assert _shard_samples(tmp_path / "shards", "train") == _torchvision_samples(root)


def test_split_folders_are_read_as_splits_with_one_class_list(tmp_path, fixture_tar, capsys) -> None:
    root = tmp_path / "photos"
    write_nested_classes(fixture_tar, root / "train", CLASSES, per_class=6)
    write_nested_classes(fixture_tar, root / "val", ["airplane", "cat"], per_class=3, start=6)
    source = imagefolder_source(str(root), split="train")
    assert [(entry.path, entry.label) for entry in source.entries] == ImageFolder(str(root / "train")).samples
    manifests = _build(root, tmp_path / "shards")  # no --split: every split folder
    assert sorted(manifests) == ["train", "val"] and "wrote 6 samples" in capsys.readouterr().out
    train, val = manifests["train"], manifests["val"]
    assert train["classes"] == val["classes"] == CLASSES and train["class_counts"] == [6, 6, 6]
    assert val["class_counts"] == [3, 0, 3]  # val has no bird: cat keeps train's index (ImageFolder(val) says 1)
    assert _shard_samples(tmp_path / "shards", "train") == _torchvision_samples(root / "train")
    val_images = Counter((data, CLASSES.index(path.parts[0])) for path, data in _files(root / "val"))
    assert _shard_samples(tmp_path / "shards", "val") == val_images
    only = _build(root, tmp_path / "val-only", "--split", "val")
    assert list(only) == ["val"] and only["val"]["num_samples"] == 6
    with pytest.raises(UserError, match=r"^--split test is not a split folder of .*photos; choose one of: train, val$"):
        imagefolder_source(str(root), split="test")


def _files(root: Path) -> list[tuple[Path, bytes]]:
    """Every file below ``root``, as a path relative to it and its bytes."""
    return [(path.relative_to(root), path.read_bytes()) for path in sorted(root.rglob("*")) if path.is_file()]


def _classes_and_a_test_folder(root: Path, fixture_tar: str) -> str:
    """airplane/ and bird/ beside test/: a third class named test, or a test split?"""
    write_nested_classes(fixture_tar, root, ["airplane", "bird"], per_class=4)
    write_nested_classes(fixture_tar, root / "test", ["cat"], per_class=4)
    return "test may be splits or classes (airplane, bird beside them)"


def _a_split_holding_images(root: Path, fixture_tar: str) -> str:
    """train/ and val/ of class folders, and photographs directly in train/ as well."""
    write_nested_classes(fixture_tar, root / "train", CLASSES, per_class=4)
    write_nested_classes(fixture_tar, root / "val", CLASSES, per_class=2, start=4)
    for path, data in _files(root / "train" / "cat")[:2]:
        (root / "train" / path.name).write_bytes(data)
    return "train, val may be splits or classes (images directly in train)"


@pytest.mark.parametrize("make", [_classes_and_a_test_folder, _a_split_holding_images])
def test_an_ambiguous_layout_is_refused_in_one_line_naming_layout(tmp_path, fixture_tar, capsys, make) -> None:
    root = tmp_path / "photos"
    why = make(root, fixture_tar)
    argv = ["data", "build", "imagefolder", "--source", str(root), "--out", str(tmp_path / "out")]
    assert main(argv) == 1
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and f"{root} is ambiguous: {why}" in error
    assert "pass --layout classes (every top-level folder is a class) or --layout splits" in error
    assert not (tmp_path / "out").exists()


def test_layout_classes_decides_an_ambiguous_folder(tmp_path, fixture_tar) -> None:
    root = tmp_path / "photos"
    _classes_and_a_test_folder(root, fixture_tar)
    manifests = _build(root, tmp_path / "shards", "--layout", "classes")
    assert list(manifests) == ["train"] and manifests["train"]["classes"] == ["airplane", "bird", "test"]
    assert manifests["train"]["class_counts"] == [4, 4, 4]
    assert _shard_samples(tmp_path / "shards", "train") == _torchvision_samples(root)


def test_layout_splits_decides_and_refuses_images_outside_a_class(tmp_path, fixture_tar) -> None:
    root = tmp_path / "photos"
    for split, start in (("train", 0), ("test", 4), ("extra", 6)):
        write_nested_classes(fixture_tar, root / split, CLASSES, per_class=2 if start else 4, start=start)
    with pytest.raises(UserError, match=r"test, train may be splits or classes \(extra beside them\)"):
        imagefolder_source(str(root))
    manifests = _build(root, tmp_path / "shards", "--layout", "splits")
    assert {split: manifest["class_counts"] for split, manifest in manifests.items()} == {
        "extra": [2, 2, 2],
        "test": [2, 2, 2],
        "train": [4, 4, 4],
    }
    for split in manifests:
        assert _shard_samples(tmp_path / "shards", split) == _torchvision_samples(root / split)
    _a_split_holding_images(tmp_path / "mixed", fixture_tar)
    with pytest.raises(UserError, match=r"split folder\(s\) train of .* hold images directly; with --layout splits"):
        imagefolder_source(str(tmp_path / "mixed"), layout="splits")


def test_one_folder_of_class_folders_is_its_split_as_before(tmp_path, fixture_tar) -> None:
    root = tmp_path / "photos"
    write_nested_classes(fixture_tar, root / "mine", CLASSES, per_class=2)
    source = imagefolder_source(str(root))
    assert source.split == "mine" and source.classes == CLASSES and len(source) == 6
    with tarfile.open(tmp_path / "photos.tar", "w") as archive:  # how `tar cf photos.tar photos/` stores a folder
        archive.add(root / "mine", arcname="photos")
    from_tar = imagefolder_source(str(tmp_path / "photos.tar"), split="train")
    assert (from_tar.split, from_tar.classes, len(from_tar)) == ("train", CLASSES, 6)
    with pytest.raises(UserError, match=r"has one class \(mine\); a classifier needs at least two class folders$"):
        imagefolder_source(str(root), layout="classes")


def test_links_are_followed_as_imagefolder_follows_them_but_never_round_a_loop(tmp_path, fixture_tar) -> None:
    root = write_nested_classes(fixture_tar, tmp_path / "photos", ["airplane"], per_class=4)
    write_nested_classes(fixture_tar, tmp_path / "elsewhere", ["bird"], per_class=4)
    (root / "bird").symlink_to(tmp_path / "elsewhere" / "bird", target_is_directory=True)
    (root / "airplane" / "2024" / "linked").symlink_to(tmp_path / "elsewhere" / "bird" / "2024")
    expected = ImageFolder(str(root)).samples
    assert len(expected) == 10 and [(e.path, e.label) for e in imagefolder_source(str(root)).entries] == expected
    # A link to its own parent: ImageFolder lists the folder's images again at every turn, to Linux's 40-link limit.
    (root / "airplane" / "2024" / "again").symlink_to(root / "airplane", target_is_directory=True)
    assert [(e.path, e.label) for e in imagefolder_source(str(root)).entries] == expected
