"""Shard indexes (DALI's wds2idx format): written at build, added to old shards, verified, and used to read spans
from the middle of a shard on local disk and over S3 with connection resets."""

from __future__ import annotations

import dataclasses
import io
import json
import tarfile
from pathlib import Path

import pytest
import torch

from densenet_ray.cli import main
from densenet_ray.data.building.build import build_dataset
from densenet_ray.data.building.sources import imagefolder_source
from densenet_ray.data.format.manifest import Manifest, ShardInfo, load_manifest, write_manifest
from densenet_ray.data.format.shard_index import index_name, index_tar, parse_index
from densenet_ray.data.reading.pipeline import PipelineConfig, make_loader
from densenet_ray.data.reading.shard_reader import load_index, read_positions
from densenet_ray.data.reading.transforms import cifar_eval
from densenet_ray.data.storage import open_storage


@pytest.fixture(scope="module")
def shards(tmp_path_factory, fixture_tar) -> str:
    out = tmp_path_factory.mktemp("indexed")
    build_dataset(imagefolder_source(fixture_tar), str(out), shard_size=64)  # 7 shards of 64 and one of 52
    return str(out)


def test_build_writes_an_index_whose_offsets_are_tarfiles(shards) -> None:
    storage, manifest = load_manifest(shards, "train")
    shard = manifest.shards[3]
    assert shard.index == "train-000003.idx" == index_name(shard.name)
    raw = Path(shards, shard.name).read_bytes()
    text = Path(shards, shard.index).read_text()
    assert text.startswith("v1.2 64\n") and len(text.splitlines()) == 65
    index = parse_index(text, shard.index)
    assert index == index_tar(io.BytesIO(raw))  # the same offsets tarfile reports when reading the shard
    with tarfile.open(fileobj=io.BytesIO(raw)) as archive:
        members = {m.name: archive.extractfile(m).read() for m in archive.getmembers()}
    for sample in index.samples:
        for member in sample.members:
            assert raw[member.offset : member.offset + member.size] == members[member.name]
    assert index.samples[-1].end <= len(raw) and index.samples[0].start == 0


def test_a_span_from_the_middle_of_a_shard_reads_what_a_scan_reads(shards) -> None:
    storage, manifest = load_manifest(shards, "train")
    shard = manifest.shards[2]
    positions = [5, 6, 7, 20, 63]
    indexed = list(read_positions(storage, shard, positions, load_index(storage, shard)))
    scanned = list(read_positions(storage, shard, positions, None))
    assert [p for p, _ in indexed] == positions and indexed == scanned
    with storage.open_range(shard.name, 1000, 1600) as stream:
        assert stream.read() == Path(shards, shard.name).read_bytes()[1000:1600]


def _strip_indexes(source: str, target: Path) -> None:
    """A copy of ``source`` as a build from before indexes left it: no .idx files, no index in the manifest."""
    target.mkdir()
    for path in Path(source).iterdir():
        if path.suffix != ".idx":
            (target / path.name).write_bytes(path.read_bytes())
    storage, manifest = load_manifest(str(target), "train")
    old = [dataclasses.replace(shard, index="") for shard in manifest.shards]
    write_manifest(storage, dataclasses.replace(manifest, shards=old))


def test_unindexed_shards_train_alike_with_a_notice_and_data_index_adds_indexes(shards, tmp_path, capsys) -> None:
    old = tmp_path / "old"
    _strip_indexes(shards, old)
    config = PipelineConfig(str(old), "train", 30, 1, 2, loader_workers=2, epoch=3, seed=2)
    from_old = list(make_loader(config, cifar_eval()))
    assert capsys.readouterr().err.count("have no index") == 1
    list(make_loader(config, cifar_eval()))  # once per process and dataset, not per epoch
    assert "have no index" not in capsys.readouterr().err
    from_indexed = list(make_loader(dataclasses.replace(config, data=shards), cifar_eval()))
    assert len(from_old) == len(from_indexed) == 16
    for a, b in zip(from_old, from_indexed, strict=True):
        assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))

    assert main(["data", "index", str(old)]) == 0
    assert capsys.readouterr().out.strip() == f"train: wrote 8 of 8 shard indexes at {old}"
    assert [s.index for s in load_manifest(str(old), "train")[1].shards] == [f"train-00000{i}.idx" for i in range(8)]
    assert (old / "train-000007.idx").read_text() == Path(shards, "train-000007.idx").read_text()
    assert main(["data", "index", str(old)]) == 0  # nothing left to do
    assert capsys.readouterr().out.strip() == f"train: wrote 0 of 8 shard indexes at {old}"
    assert main(["data", "verify", str(old)]) == 0


def test_verify_finds_an_index_that_does_not_match_its_shard(shards, tmp_path, capsys) -> None:
    copy = tmp_path / "copy"
    copy.mkdir()
    for path in Path(shards).iterdir():
        (copy / path.name).write_bytes(path.read_bytes())
    text = (copy / "train-000001.idx").read_text().replace("jpg 512 ", "jpg 1024 ", 1)
    (copy / "train-000001.idx").write_text(text)
    (copy / "train-000002.idx").write_text("v1.2 64\n")
    assert main(["data", "verify", str(copy)]) == 1
    out = capsys.readouterr().out
    assert f"bad: {copy}/train-000001.idx does not match its shard" in out
    assert f"bad: {copy}/train-000002.idx is not a WebDataset index (header says 64 samples, lines hold 0" in out


def _generated_manifest(directory: Path, shards: int, per_shard: int) -> str:
    infos = [ShardInfo(f"train-{i:06d}.tar", per_shard, 0, "", f"train-{i:06d}.idx") for i in range(shards)]
    manifest = Manifest(
        dataset="imagefolder",
        split="train",
        classes=["c"] * 1000,
        num_samples=shards * per_shard,
        image_size=None,
        mean=[0.0] * 3,
        std=[1.0] * 3,
        image_format="jpg",
        shards=infos,
    )
    write_manifest(open_storage(str(directory)), manifest)
    return str(directory / "train.json")


@pytest.mark.parametrize(("world_size", "workers"), [(64, 8), (2, 2), (8, 8), (256, 8)])
def test_data_plan_at_imagenet_scale_repeats_nothing(tmp_path, capsys, world_size, workers) -> None:
    url = _generated_manifest(tmp_path, 1282, 1000)  # the plan reads no shard, so none need exist
    batch = 32 * world_size
    args = ["data", "plan", url, "--world-size", str(world_size), "--loader-workers", str(workers)]
    assert main([*args, "--batch-size", str(batch), "--json"]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert figures["repeated"] == 0 and figures["left_out"] < batch
    assert figures["used_once"] == 1_282_000 // batch * batch
    assert main(args + ["--batch-size", str(batch)]) == 0
    assert "  repeated                  0\n" in capsys.readouterr().out


def test_data_plan_errors_are_one_line(tmp_path, capsys) -> None:
    url = _generated_manifest(tmp_path, 3, 10)
    assert main(["data", "plan", url, "--world-size", "8", "--batch-size", "4"]) == 1
    assert capsys.readouterr().err.strip() == (
        "error: global --batch-size 4 is smaller than --world-size 8; every worker needs at least one sample a batch"
    )


@pytest.mark.integration
def test_spans_over_s3_with_resets_read_the_same_bytes_for_less_traffic(
    tmp_path, fixture_tar, bucket, moto_server, monkeypatch
) -> None:
    from tests.data.faultproxy import CutProxy

    build_dataset(imagefolder_source(fixture_tar), str(tmp_path), shard_size=250)  # 2 shards of about 400 KB
    target = open_storage(f"s3://{bucket}/indexed")
    for path in sorted(tmp_path.iterdir()):
        target.write_bytes(path.name, path.read_bytes())
    local, manifest = load_manifest(str(tmp_path), "train")
    shard = manifest.shards[1]
    positions = list(range(100, 160))  # a span of about 100 KB from the middle of the shard
    expected = list(read_positions(local, shard, positions, load_index(local, shard)))
    # The reader pulls 64 KB a read; a connection cut after 70 KB resets inside the span. One cut only: a reset
    # throws away whatever the client had not read yet (up to 70 KB), so each further cut could waste as much again.
    proxy = CutProxy(int(moto_server.rsplit(":", 1)[1]), cut_after=70_000, max_cuts=1)
    try:
        monkeypatch.setenv("AWS_ENDPOINT_URL_S3", proxy.url)
        remote = open_storage(f"s3://{bucket}/indexed")
        index = load_index(remote, shard)
        before = proxy.downstream
        assert list(read_positions(remote, shard, positions, index)) == expected
        span_traffic = proxy.downstream - before
        assert proxy.cuts == 1
        proxy.max_cuts = 1_000_000
        assert list(read_positions(remote, shard, positions, None)) == expected  # no index: from the shard's start
        assert proxy.cuts > 1
    finally:
        proxy.stop()
    span = index.samples[positions[-1]].end - index.samples[positions[0]].start
    # the span, what the one cut wasted and two responses' headers; not the shard
    assert span <= span_traffic < span + 72_000 < shard.bytes
