"""The training/evaluation pipeline: equal batches per rank, exact resume, exact distributed evaluation."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import tarfile
from pathlib import Path

import pytest
import torch

from densenet_ray.data.building.build import build_dataset
from densenet_ray.data.building.sources import imagefolder_source
from densenet_ray.data.reading.epoch_plan import Layout, Segment
from densenet_ray.data.reading.pipeline import DataError, PipelineConfig, make_loader, train_batches_per_rank
from densenet_ray.data.reading.transforms import cifar_eval, cifar_train

SHARD_SIZE = 37  # 500 samples -> 13 shards of 37 and one of 19: shards divide unevenly over ranks and workers


@pytest.fixture(scope="module")
def shards(tmp_path_factory, fixture_tar) -> str:
    out = tmp_path_factory.mktemp("shards")
    build_dataset(imagefolder_source(fixture_tar), str(out), shard_size=SHARD_SIZE)
    return str(out)


def _row_hashes(images: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor | None = None) -> list[str]:
    rows = range(len(labels)) if mask is None else mask.nonzero().flatten().tolist()
    return [hashlib.sha1(images[i].numpy().tobytes() + bytes([int(labels[i])])).hexdigest() for i in rows]


def _epoch(shards: str, world_size: int, workers: int, batch: int, epoch: int = 1, **options) -> list[list]:
    """Every rank's batches of one training epoch."""
    return [
        list(
            make_loader(
                PipelineConfig(
                    data=shards,
                    split="train",
                    batch_size=batch,
                    rank=rank,
                    world_size=world_size,
                    loader_workers=workers,
                    epoch=epoch,
                    seed=7,
                    **options,
                ),
                cifar_eval(),
            )
        )
        for rank in range(world_size)
    ]


@pytest.mark.filterwarnings("ignore:This DataLoader will create 3 worker processes")
@pytest.mark.parametrize("world_size", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("workers", [1, 2, 3])
def test_a_real_epoch_yields_every_sample_once(shards, world_size, workers) -> None:
    everything = set(_all_sample_hashes(shards))
    batch = 23  # 500 = 21 x 23 + 17: 17 samples left out, in a different place each epoch
    left_out = []
    for epoch in (1, 2):
        per_rank = _epoch(shards, world_size, workers, batch, epoch)
        seen = []
        for rank, batches in enumerate(per_rank):
            assert len(batches) == train_batches_per_rank(500, batch) == 21  # DDP: the same count on every rank
            share = Layout(world_size, workers, batch).share(rank)
            assert all(images.shape == (share, 3, 32, 32) for images, _ in batches)
            seen += [h for images, labels in batches for h in _row_hashes(images, labels)]
        assert len(seen) == len(set(seen)) == 21 * batch  # each used once: no stream wrapped or repeated
        left_out.append(everything - set(seen))
        assert len(left_out[-1]) == 17
    assert left_out[0] != left_out[1]


def test_epochs_shuffle_differently_and_reproducibly(shards) -> None:
    def labels(epoch: int, seed: int = 3) -> list[int]:
        config = PipelineConfig(shards, "train", 25, loader_workers=2, epoch=epoch, seed=seed)
        return [int(x) for _, batch_labels in make_loader(config, cifar_eval()) for x in batch_labels]

    first = labels(0)
    assert first == labels(0)
    assert first != labels(1)
    assert sorted(first) != first  # shuffled, not class-ordered


@pytest.mark.filterwarnings("ignore:This DataLoader will create 3 worker processes")
@pytest.mark.parametrize(("world_size", "workers", "start"), [(1, 2, 5), (2, 2, 3), (1, 0, 4), (2, 3, 7), (3, 1, 2)])
def test_resume_yields_exactly_the_remaining_batches(shards, world_size, workers, start) -> None:
    for rank in range(world_size):
        config = PipelineConfig(shards, "train", 20, rank, world_size, loader_workers=workers, epoch=2, seed=11)
        full = list(make_loader(config, cifar_train()))  # random flips and crops: seeded per sample
        resumed = list(make_loader(dataclasses.replace(config, start_batch=start), cifar_train()))
        assert len(resumed) == len(full) - start
        for (a_images, a_labels), (b_images, b_labels) in zip(full[start:], resumed, strict=True):
            assert torch.equal(a_images, b_images) and torch.equal(a_labels, b_labels)


@pytest.mark.parametrize(("old", "new"), [((2, 1), (1, 1)), ((1, 1), (3, 1)), ((3, 1), (2, 1)), ((2, 2), (2, 1))])
def test_resume_on_another_layout_uses_every_remaining_sample_once(shards, old, new) -> None:
    batch, done = 20, 6
    first = [batches[:done] for batches in _epoch(shards, *old, batch, epoch=4)]
    history = (Segment(Layout(*old, batch), done),)
    second = _epoch(shards, *new, batch, epoch=4, start_batch=done, history=history)
    assert all(len(batches) == 25 - done for batches in second)
    seen = [h for part in (first, second) for batches in part for b in batches for h in _row_hashes(*b)]
    assert len(seen) == len(set(seen)) == 500


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
        config = PipelineConfig(shards, "train", 16 * world_size, rank, world_size, loader_workers=2, train=False)
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
        config = PipelineConfig(str(tmp_path), "train", 150, rank, 3, loader_workers=2, train=False)
        batches = list(make_loader(config, cifar_eval()))
        counts.append(len(batches))
        seen += sum(int(mask.sum()) for _, _, mask in batches)
    assert counts == [5, 5, 5] and seen == 500


def _rewrite_member(shard: Path, key: str, data: bytes) -> None:
    """Overwrite ``key``'s image with ``data`` repeated to the same length (bit rot: the shard's index still fits)."""
    with tarfile.open(shard) as archive:
        members = [(m, archive.extractfile(m).read()) for m in archive.getmembers()]
    with tarfile.open(shard, "w", format=tarfile.USTAR_FORMAT) as archive:
        for member, content in members:
            if member.name == f"{key}.jpg":
                content = (data * (len(content) // len(data) + 1))[: len(content)]
            archive.addfile(member, io.BytesIO(content))


def test_corrupt_jpeg_is_skipped_and_counted(tmp_path, fixture_tar) -> None:
    out = tmp_path / "out"
    build_dataset(imagefolder_source(fixture_tar), str(out), shard_size=100)
    with tarfile.open(out / "train-000001.tar") as archive:
        key = archive.getnames()[0].partition(".")[0]
    _rewrite_member(out / "train-000001.tar", key, b"\xff\xd8 corrupt")  # not known to the manifest
    # 500 samples fill 25 batches exactly, so the corrupt sample is in one of them: that batch is one row short.
    config = PipelineConfig(str(out), "train", 20, loader_workers=2, seed=1)
    loader = make_loader(config, cifar_eval())
    batches = list(loader)
    assert len(batches) == 25 and loader.skipped == 1
    assert sorted(len(labels) for _, labels in batches) == [19] + [20] * 24
    eval_loader = make_loader(PipelineConfig(str(out), "train", 20, loader_workers=2, train=False), cifar_eval())
    masked = sum(int(mask.sum()) for _, _, mask in eval_loader)
    assert masked == 499 and eval_loader.skipped == 1


def test_samples_listed_undecodable_are_never_decoded(tmp_path, fixture_tar) -> None:
    with tarfile.open(fixture_tar) as archive:
        archive.extractall(tmp_path / "src", filter="data")
    (tmp_path / "src" / "train" / "dog" / "0007.jpg").write_bytes(b"broken")
    manifest = build_dataset(
        imagefolder_source(str(tmp_path / "src")), str(tmp_path / "out"), shard_size=50, check_images=False
    )
    assert manifest.undecodable == ["00000257"]
    loader = make_loader(PipelineConfig(str(tmp_path / "out"), "train", 500, loader_workers=0), cifar_eval())
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
    with pytest.raises(ValueError, match=r"^\S+ has 500 training samples, fewer than one global batch of 600; lower"):
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
