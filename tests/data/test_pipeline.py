"""The training/evaluation pipeline: equal batches per rank, exact resume, exact distributed evaluation."""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path

import pytest
import torch

from densenet_ray.data.build import build_dataset
from densenet_ray.data.pipeline import DataError, PipelineConfig, make_loader, train_batches_per_rank
from densenet_ray.data.sources import imagefolder_source
from densenet_ray.data.transforms import cifar_eval, cifar_train

SHARD_SIZE = 37  # 500 samples -> 13 shards of 37 and one of 19: shards divide unevenly over ranks and workers


@pytest.fixture(scope="module")
def shards(tmp_path_factory, fixture_tar) -> str:
    out = tmp_path_factory.mktemp("shards")
    build_dataset(imagefolder_source(fixture_tar), str(out), shard_size=SHARD_SIZE)
    return str(out)


def _row_hashes(images: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor | None = None) -> list[str]:
    rows = range(len(labels)) if mask is None else mask.nonzero().flatten().tolist()
    return [hashlib.sha1(images[i].numpy().tobytes() + bytes([int(labels[i])])).hexdigest() for i in rows]


@pytest.mark.parametrize("world_size", [1, 2, 3, 4])
def test_every_rank_yields_the_same_number_of_training_batches(shards, world_size) -> None:
    expected = train_batches_per_rank(500, world_size, 16)
    seen_per_rank = []
    for rank in range(world_size):
        config = PipelineConfig(shards, "train", 16, rank, world_size, loader_workers=2, epoch=1, seed=7)
        loader = make_loader(config, cifar_eval())
        batches = list(loader)
        assert len(batches) == len(loader) == expected
        assert all(images.shape == (16, 3, 32, 32) and labels.shape == (16,) for images, labels in batches)
        seen_per_rank.append({h for images, labels in batches for h in _row_hashes(images, labels)})
    if world_size > 1:  # ranks read disjoint shards
        assert all(not (a & b) for i, a in enumerate(seen_per_rank) for b in seen_per_rank[i + 1 :])


def test_epochs_shuffle_differently_and_reproducibly(shards) -> None:
    def labels(epoch: int, seed: int = 3) -> list[int]:
        config = PipelineConfig(shards, "train", 25, loader_workers=2, epoch=epoch, seed=seed)
        return [int(x) for _, batch_labels in make_loader(config, cifar_eval()) for x in batch_labels]

    first = labels(0)
    assert first == labels(0)
    assert first != labels(1)
    assert sorted(first) != first  # shuffled, not class-ordered


@pytest.mark.filterwarnings("ignore:This DataLoader will create 3 worker processes")
@pytest.mark.parametrize(("world_size", "workers", "start"), [(1, 2, 5), (2, 2, 3), (1, 0, 4), (2, 3, 7)])
def test_resume_yields_exactly_the_remaining_batches(shards, world_size, workers, start) -> None:
    for rank in range(world_size):
        config = PipelineConfig(shards, "train", 10, rank, world_size, loader_workers=workers, epoch=2, seed=11)
        full = list(make_loader(config, cifar_train()))  # random flips and crops: seeded per sample
        resumed_config = PipelineConfig(
            shards, "train", 10, rank, world_size, loader_workers=workers, epoch=2, seed=11, start_batch=start
        )
        resumed = list(make_loader(resumed_config, cifar_train()))
        assert len(resumed) == len(full) - start
        for (a_images, a_labels), (b_images, b_labels) in zip(full[start:], resumed, strict=True):
            assert torch.equal(a_images, b_images) and torch.equal(a_labels, b_labels)


def _all_sample_hashes(shards: str) -> list[str]:
    config = PipelineConfig(shards, "train", 1, loader_workers=0, train=False)
    return sorted(
        h for images, labels, mask in make_loader(config, cifar_eval()) for h in _row_hashes(images, labels, mask)
    )


@pytest.mark.parametrize("world_size", [1, 2, 3, 4])
def test_distributed_evaluation_sees_every_sample_exactly_once(shards, world_size) -> None:
    expected = _all_sample_hashes(shards)
    assert len(expected) == 500
    seen, counts = [], []
    for rank in range(world_size):
        config = PipelineConfig(shards, "train", 16, rank, world_size, loader_workers=2, train=False)
        batches = list(make_loader(config, cifar_eval()))
        counts.append(len(batches))
        assert all(images.shape == (16, 3, 32, 32) for images, _, _ in batches)
        seen += [h for images, labels, mask in batches for h in _row_hashes(images, labels, mask)]
    assert sorted(seen) == expected
    assert len(set(counts)) == 1


def test_evaluation_with_more_ranks_than_shards(tmp_path, fixture_tar) -> None:
    build_dataset(imagefolder_source(fixture_tar), str(tmp_path), shard_size=250)  # 2 shards, 3 ranks
    counts, seen = [], 0
    for rank in range(3):
        config = PipelineConfig(str(tmp_path), "train", 50, rank, 3, loader_workers=2, train=False)
        batches = list(make_loader(config, cifar_eval()))
        counts.append(len(batches))
        seen += sum(int(mask.sum()) for _, _, mask in batches)
    assert counts == [5, 5, 5] and seen == 500


def _rewrite_member(shard: Path, key: str, data: bytes) -> None:
    with tarfile.open(shard) as archive:
        members = [(m, archive.extractfile(m).read()) for m in archive.getmembers()]
    with tarfile.open(shard, "w", format=tarfile.USTAR_FORMAT) as archive:
        for member, content in members:
            content = data if member.name == f"{key}.jpg" else content
            member.size = len(content)

            archive.addfile(member, io.BytesIO(content))


def test_corrupt_jpeg_is_skipped_and_counted(tmp_path, fixture_tar) -> None:
    out = tmp_path / "out"
    build_dataset(imagefolder_source(fixture_tar), str(out), shard_size=100)
    with tarfile.open(out / "train-000001.tar") as archive:
        key = archive.getnames()[0].partition(".")[0]
    _rewrite_member(out / "train-000001.tar", key, b"\xff\xd8 corrupt")  # not known to the manifest
    # One worker reads every sample (500 fill 25 batches exactly, so the skip forces a wrap); with several workers
    # the corrupt sample may sit in the tail a worker never needs.
    config = PipelineConfig(str(out), "train", 20, loader_workers=0, seed=1)
    loader = make_loader(config, cifar_eval())
    batches = list(loader)
    assert len(batches) == 25 and loader.skipped == 1
    eval_loader = make_loader(PipelineConfig(str(out), "train", 20, loader_workers=2, train=False), cifar_eval())
    masked = sum(int(mask.sum()) for _, _, mask in eval_loader)
    assert masked == 499 and eval_loader.skipped == 1


def test_samples_listed_undecodable_are_dropped_before_the_shuffle(tmp_path, fixture_tar) -> None:
    with tarfile.open(fixture_tar) as archive:
        archive.extractall(tmp_path / "src", filter="data")
    (tmp_path / "src" / "train" / "dog" / "0007.jpg").write_bytes(b"broken")
    manifest = build_dataset(imagefolder_source(str(tmp_path / "src")), str(tmp_path / "out"), shard_size=50)
    assert manifest.undecodable == ["00000257"]
    loader = make_loader(PipelineConfig(str(tmp_path / "out"), "train", 499, loader_workers=0), cifar_eval())
    ((images, labels),) = list(loader)
    assert loader.skipped == 1 and labels.shape == (499,)


def test_too_many_corrupt_samples_is_an_error(tmp_path, fixture_tar) -> None:
    out = tmp_path / "out"
    build_dataset(imagefolder_source(fixture_tar), str(out), shard_size=500)
    for index in range(0, 500, 50):
        _rewrite_member(out / "train-000000.tar", f"{index:08d}", b"junk")
    config = PipelineConfig(str(out), "train", 50, loader_workers=0, max_corrupt_fraction=0.01)
    with pytest.raises(DataError, match=r"samples failed to decode, more than the allowed 1.0%"):
        list(make_loader(config, cifar_eval()))


def test_truncated_shard_fails_clearly(tmp_path, fixture_tar) -> None:
    out = tmp_path / "out"
    build_dataset(imagefolder_source(fixture_tar), str(out), shard_size=100)
    shard = out / "train-000002.tar"
    shard.write_bytes(shard.read_bytes()[:40_000])
    for workers in (0, 2):
        config = PipelineConfig(str(out), "train", 10, loader_workers=workers, train=False)
        with pytest.raises(DataError, match=r"^shard .*train-000002.tar is truncated or corrupt: \d+ of 100 samples"):
            list(make_loader(config, cifar_eval()))


def test_bad_configuration_errors(shards) -> None:
    with pytest.raises(ValueError, match="rank 2 is not in"):
        make_loader(PipelineConfig(shards, "train", 8, rank=2, world_size=2))
    with pytest.raises(ValueError, match="cannot fill one batch of 600"):
        make_loader(PipelineConfig(shards, "train", 600))
    with pytest.raises(Exception, match="no shard manifest for split 'test'"):
        make_loader(PipelineConfig(shards, "test", 8))


@pytest.mark.integration
def test_s3_with_connection_resets_gives_the_same_samples_in_the_same_order(
    tmp_path, fixture_tar, bucket, moto_server, monkeypatch
) -> None:
    from densenet_ray.data.storage import open_storage
    from tests.data.faultproxy import CutProxy

    shards = str(tmp_path / "local")
    build_dataset(imagefolder_source(fixture_tar), shards, shard_size=125)  # 4 shards of about 330 KB
    target = open_storage(f"s3://{bucket}/cifar")
    for path in sorted(Path(shards).iterdir()):
        target.write_bytes(path.name, path.read_bytes())
    proxy = CutProxy(int(moto_server.rsplit(":", 1)[1]), cut_after=150_000)  # each shard resumes about twice
    try:
        monkeypatch.setenv("AWS_ENDPOINT_URL_S3", proxy.url)  # loader workers inherit it
        for train in (False, True):
            remote = PipelineConfig(f"s3://{bucket}/cifar", "train", 20, loader_workers=2, train=train, seed=5)
            local = PipelineConfig(shards, "train", 20, loader_workers=2, train=train, seed=5)
            from_s3 = list(make_loader(remote, cifar_eval()))
            from_disk = list(make_loader(local, cifar_eval()))
            assert len(from_s3) == len(from_disk)
            for a, b in zip(from_s3, from_disk, strict=True):
                assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
        assert proxy.cuts >= 8
    finally:
        proxy.stop()


def test_decoding_in_process_leaves_the_callers_rng_alone(shards) -> None:
    # With loader_workers=0 decoding runs in the training process; augmentation must not reseed dropout's RNG.
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    list(make_loader(PipelineConfig(shards, "train", 50, loader_workers=0), cifar_train()))
    assert torch.equal(torch.random.get_rng_state(), before)
