"""``data build csv``: images named by a list, single- and multi-label, local and on S3 (moto's server), with
one-line errors for what a list gets wrong."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from densenet_ray.cli import main
from densenet_ray.data.building.build import build_dataset
from densenet_ray.data.building.list_source import list_source
from densenet_ray.data.reading.pipeline import PipelineConfig, make_loader
from densenet_ray.data.reading.transforms import cifar_eval
from densenet_ray.errors import UserError
from tests.data.own_images import write_own_folder, write_pairs_list


@pytest.fixture(scope="module")
def pairs(tmp_path_factory, fixture_tar):
    return write_pairs_list(fixture_tar, tmp_path_factory.mktemp("pairs"), count=24)


def _single_list(tmp_path, fixture_tar) -> tuple[str, str]:
    photos = write_own_folder(fixture_tar, tmp_path / "photos", per_class=3)
    rows = ["path,label"] + [f"{p.relative_to(photos)},{p.parent.name}" for p in sorted(photos.glob("*/*.jpg"))]
    (tmp_path / "list.csv").write_text("\n".join(rows) + "\n")
    return str(tmp_path / "list.csv"), str(photos)


def test_a_single_label_list_builds_like_its_folders(tmp_path, fixture_tar) -> None:
    listing, root = _single_list(tmp_path, fixture_tar)
    argv = ["data", "build", "csv", "--source", listing, "--root", root, "--out", str(tmp_path / "shards")]
    assert main(argv) == 0
    manifest = json.loads((tmp_path / "shards" / "train.json").read_text())
    assert manifest["classes"] == ["airplane", "automobile", "bird", "cat", "deer"] and not manifest["multi_label"]
    # The listed .jpg files: 8, of which cat/broken.jpg does not decode.
    assert manifest["num_samples"] == sum(manifest["class_counts"]) == 7
    assert manifest["skipped"] == {"does not decode": 1} and manifest["class_counts"] == [2, 1, 1, 2, 1]


def test_a_multi_label_list_trains_from_multi_hot_rows(pairs, tmp_path) -> None:
    out = tmp_path / "shards"
    argv = ["data", "build", "csv", "--source", str(pairs), "--root", str(pairs.parent / "images")]
    argv += ["--path-column", "file", "--label-column", "findings", "--label-separator", "|", "--out", str(out)]
    assert main(argv) == 0
    manifest = json.loads((out / "train.json").read_text())
    assert manifest["multi_label"] and manifest["image_size"] == [64, 64]
    rows = [line.split(",")[1].split("|") for line in pairs.read_text().splitlines()[1:]]
    expected = [sum(name in labels for labels in rows) for name in manifest["classes"]]
    assert manifest["class_counts"] == expected and sum(expected) > len(rows)  # most images carry two labels
    assert main(["data", "verify", str(out)]) == 0
    loader = make_loader(PipelineConfig(str(out), "train", 24, loader_workers=0, train=False), cifar_eval())
    ((images, labels, mask),) = list(loader)
    assert labels.shape == (24, len(manifest["classes"])) and labels.dtype == torch.float32
    assert sorted(labels.sum(1).tolist()) == sorted(float(len(set(r))) for r in rows) and mask.all()


def test_a_list_on_s3_builds(bucket, aws_env, tmp_path, fixture_tar) -> None:
    from densenet_ray.data.storage import s3_client

    listing, root = _single_list(tmp_path, fixture_tar)
    client = s3_client()
    for line in Path(listing).read_text().splitlines()[1:]:
        path = line.split(",")[0]
        client.upload_file(f"{root}/{path}", bucket, f"photos/{path}")
    client.upload_file(listing, bucket, "lists/train.csv")
    source = list_source(f"s3://{bucket}/lists/train.csv", f"s3://{bucket}/photos")
    manifest = build_dataset(source, f"s3://{bucket}/shards", shard_size=4)
    assert manifest.num_samples == 7 and manifest.source == f"s3://{bucket}/lists/train.csv"


@pytest.mark.parametrize(
    ("text", "columns", "message"),
    [
        ("path,label\nairplane/0000.png,airplane\n", {"label_column": "class"}, r"--label-column 'class' is not a co"),
        ("path,label\nnowhere/1.png,a\nnowhere/2.png,b\n", {}, r"names 2 file\(s\) missing under .* \(nowhere/1.png, "),
        ("path,label\nairplane/0000.png,airplane\n", {}, r"has 1 class; a classifier needs at least two"),
        ("path,label\nairplane/0000.png,\n", {}, r"line 2 has no 'label'; every image needs a class"),
    ],
)
def test_list_errors_are_one_line(tmp_path, fixture_tar, text, columns, message) -> None:
    root = write_own_folder(fixture_tar, tmp_path / "photos", per_class=1)
    (tmp_path / "list.csv").write_text(text)
    with pytest.raises(UserError, match=message):
        list_source(str(tmp_path / "list.csv"), str(root), **columns)
