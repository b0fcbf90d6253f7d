"""The training and evaluation input pipeline: WebDataset shards to batches, DDP-safe and exactly resumable.

Training, per epoch:

1. a shard permutation seeded by ``(seed, epoch)``, identical on every rank;
2. shards split by rank (ranks read disjoint shards), then by loader worker;
3. each worker streams its shards' raw samples through a shuffle buffer seeded by
   ``(seed, epoch, rank, worker, pass)``, then decodes, transforms and batches inside the worker (per-sample IPC
   costs 4x in our measurements);
4. every rank yields exactly ``floor(N / (world_size * batch_size))`` batches: a worker whose shards run short
   starts another pass over them, one with samples left over stops, so DDP never waits on a rank that ran dry.

Batch ``j`` of an epoch comes from logical worker ``j % workers`` (the DataLoader reads workers round-robin), so
starting at ``start_batch`` rotates the worker roles so that loader worker 0 produces batch ``start_batch`` and
each worker drops, *before decoding*, the raw samples of the batches it had already produced. Augmentation is
seeded per sample by ``(seed, epoch, sample key, pass)``, so skipping changes nothing downstream: a resumed epoch
yields exactly the batches an uninterrupted one would have, for the same world size and loader workers.

Evaluation assigns shards to ranks without shuffling and pads with masked rows so that every sample is seen exactly
once across ranks and every rank yields the same number of equally shaped batches (distributed top-1/top-5 exact).

Images that do not decode are skipped and counted (training) or masked out (evaluation), never slept on; samples
the manifest lists as undecodable are dropped before the shuffle, so they do not disturb exact resume. More than
``max_corrupt_fraction`` of a worker's samples failing is an error.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

from densenet_ray.data.epoch_plan import (
    eval_batches_per_rank,
    eval_shards,
    mix,
    shard_permutation,
    train_batches_per_rank,
    worker_batch_count,
    worker_shards,
)
from densenet_ray.data.manifest import Manifest, ShardInfo, load_manifest
from densenet_ray.data.samples import EncodedBatch, Transform, check_corrupt, collate, decode, encode
from densenet_ray.data.storage import Storage, StorageError
from densenet_ray.errors import DataError, UserError


@dataclass(frozen=True)
class PipelineConfig:
    """What the training worker asks the pipeline for.

    Attributes:
        data: the manifest URL, or the directory/prefix holding ``{split}.json``.
        split: which split to read.
        batch_size: the per-rank batch size.
        rank, world_size: this process's place in the DDP group.
        loader_workers: DataLoader worker processes (0 reads in the calling process).
        epoch: the epoch number; seeds the shard permutation, the shuffle and the augmentation.
        seed: the run's seed.
        train: training (shuffled, exact batch count, drop remainder) or evaluation (every sample once, masked).
        start_batch: the first batch to yield (resume); batches before it are skipped without decoding.
        shuffle_buffer: raw samples held in each worker's shuffle buffer.
        max_corrupt_fraction: the fraction of a worker's samples that may fail to decode before it is an error.
        pin_memory: batches in page-locked memory, so copies to a GPU can be asynchronous.
        decode_device: where images are decoded: None decodes and transforms in the loader workers (CPU); a device
            ("cuda:0") makes them ship JPEG bytes and augmentation parameters, decoded in batches there
            (``--decode gpu``, see ``device_decode``).
    """

    data: str
    split: str
    batch_size: int
    rank: int = 0
    world_size: int = 1
    loader_workers: int = 2
    epoch: int = 0
    seed: int = 0
    train: bool = True
    start_batch: int = 0
    shuffle_buffer: int = 2000
    max_corrupt_fraction: float = 0.01
    pin_memory: bool = False
    decode_device: str | None = None

    def validate(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size {self.batch_size} must be positive")
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank {self.rank} is not in [0, world_size={self.world_size})")
        if self.loader_workers < 0:
            raise ValueError(f"loader_workers {self.loader_workers} must be >= 0")
        if self.start_batch < 0:
            raise ValueError(f"start_batch {self.start_batch} must be >= 0")


@dataclass(frozen=True)
class _Plan:
    """Everything a (rank, logical worker) needs, picklable so spawned workers can rebuild their stream."""

    config: PipelineConfig
    storage: Storage
    manifest: Manifest
    transform: Transform | None
    total_batches: int  # per rank, this epoch


class _WorkerStream(torch.utils.data.IterableDataset):
    """Runs inside each DataLoader worker (or in-process): yields ``(images, labels, mask, skipped)`` batches."""

    def __init__(self, plan: _Plan) -> None:
        super().__init__()
        self.plan = plan
        self._dropped = 0  # samples the manifest lists as undecodable, dropped before the shuffle

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]]:
        info = torch.utils.data.get_worker_info()
        loader_worker, workers = (info.id, info.num_workers) if info else (0, 1)
        config = self.plan.config
        torch.set_num_threads(1)  # decode in parallel processes, not threads
        if config.train:
            # Rotate roles so that loader worker 0 produces global batch start_batch (DataLoader reads in order).
            logical = (loader_worker + config.start_batch) % workers
            yield from self._train(logical, workers)
        else:
            yield from self._evaluate(loader_worker, workers)

    # -- training ---------------------------------------------------------------------------------------------
    def _train(self, worker: int, workers: int) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]]:
        plan, config = self.plan, self.plan.config
        order = shard_permutation(len(plan.manifest.shards), config.seed, config.epoch)
        mine = worker_shards(order, config.rank, config.world_size, worker, workers)
        wanted = worker_batch_count(plan.total_batches, worker, workers)
        already = worker_batch_count(config.start_batch, worker, workers)
        to_skip = already * config.batch_size  # raw samples of the batches produced before the resume point
        produced = already
        failures = seen = 0
        batch: list[tuple[Any, int]] = []
        skipped_in_batch = 0
        pass_index = 0
        while produced < wanted:
            emitted_this_pass = False
            rng = random.Random(mix(config.seed, config.epoch, config.rank, worker, pass_index, 2))
            for key, image_bytes, label in _shuffled(self._raw(mine), rng, config.shuffle_buffer):
                emitted_this_pass = True
                if to_skip:
                    to_skip -= 1
                    continue
                seen += 1
                tensor = self._prepare(image_bytes, mix(config.seed, config.epoch, int(key), pass_index))
                if tensor is None:
                    failures += 1
                    skipped_in_batch += 1
                    check_corrupt(failures, seen, config.max_corrupt_fraction)
                    continue
                batch.append((tensor, label))
                if len(batch) == config.batch_size:
                    yield collate(batch, config.batch_size, skipped_in_batch + self._dropped)
                    batch, skipped_in_batch, self._dropped = [], 0, 0
                    produced += 1
                    if produced >= wanted:
                        return
            if not emitted_this_pass:
                raise DataError(f"no readable samples in shards {[plan.manifest.shards[i].name for i in mine]}")
            pass_index += 1  # this worker's shards ran short: wrap into another pass

    # -- evaluation -------------------------------------------------------------------------------------------
    def _evaluate(self, worker: int, workers: int) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]]:
        plan, config = self.plan, self.plan.config
        mine = eval_shards(len(plan.manifest.shards), config.rank, config.world_size)[worker::workers]
        batch: list[tuple[Any, int]] = []
        skipped = 0
        for key, image_bytes, label in self._raw(mine, drop_undecodable=False):
            tensor = self._prepare(image_bytes, mix(config.seed, int(key)))
            if tensor is None:
                skipped += 1  # keep its slot, masked out, so batch counts stay what the manifest implies
            batch.append((tensor, label))
            if len(batch) == config.batch_size:
                yield collate(batch, config.batch_size, skipped)
                batch, skipped = [], 0
        if batch:
            yield collate(batch, config.batch_size, skipped)

    def _prepare(self, image_bytes: bytes, seed: int) -> Any:
        """The decoded, transformed image; or, decoding on the device, the bytes and augmentation parameters."""
        if self.plan.config.decode_device is not None:
            return encode(image_bytes, self.plan.transform, seed)
        return decode(image_bytes, self.plan.transform, seed)

    # -- raw samples ------------------------------------------------------------------------------------------
    def _raw(self, shard_indices: list[int], drop_undecodable: bool = True) -> Iterator[tuple[str, bytes, int]]:
        plan = self.plan
        undecodable = set(plan.manifest.undecodable) if drop_undecodable else set()
        for index in shard_indices:
            shard = plan.manifest.shards[index]
            count = 0
            for key, image_bytes, label in _read_shard(plan.storage, shard):
                count += 1
                if key in undecodable:
                    self._dropped += 1
                else:
                    yield key, image_bytes, label
            if count != shard.samples:
                raise DataError(
                    f"shard {plan.storage.join(shard.name)} is truncated or corrupt: {count} of {shard.samples} "
                    "samples (run `densenet-ray data verify`)"
                )


def _read_shard(storage: Storage, shard: ShardInfo) -> Iterator[tuple[str, bytes, int]]:
    from webdataset.tariterators import tar_file_iterator

    url = storage.join(shard.name)
    try:
        with storage.open_read(shard.name) as stream:
            current_key, members = None, {}
            for entry in tar_file_iterator(stream):
                key, _, extension = entry["fname"].partition(".")
                if key != current_key and members:
                    yield _sample(current_key, members, url)
                    members = {}
                current_key = key
                members[extension] = entry["data"]
            if members:
                yield _sample(current_key, members, url)
    except (StorageError, DataError):
        raise
    except Exception as error:  # tarfile and stream errors: name the shard, not a bare traceback
        raise DataError(f"cannot read shard {url} ({type(error).__name__}: {error})") from None


def _sample(key: str | None, members: dict[str, bytes], url: str) -> tuple[str, bytes, int]:
    images = [data for extension, data in members.items() if extension != "cls"]
    try:
        label = int(members["cls"])
    except (KeyError, ValueError):
        label = -1
    # A sample missing its image or label (a truncated member) still counts, and fails decoding downstream.
    return str(key), images[0] if images else b"", label


def _shuffled(samples: Iterator[Any], rng: random.Random, size: int) -> Iterator[Any]:
    """A seeded shuffle buffer: fill to ``size``, then emit a random element for each new one, then drain."""
    buffer: list[Any] = []
    for sample in samples:
        if len(buffer) < size:
            buffer.append(sample)
            continue
        index = rng.randrange(len(buffer))
        buffer[index], sample = sample, buffer[index]
        yield sample
    rng.shuffle(buffer)
    yield from buffer


class EpochLoader:
    """One epoch of batches for one rank.

    Iterating yields ``(images, labels)`` in training and ``(images, labels, mask)`` in evaluation, exactly
    ``len(self)`` times (from ``start_batch`` on). ``skipped`` counts samples that failed to decode so far.
    """

    def __init__(self, config: PipelineConfig, transform: Transform | None = None) -> None:
        config.validate()
        storage, manifest = load_manifest(config.data, config.split)
        self.config, self.manifest, self.skipped = config, manifest, 0
        workers = max(config.loader_workers, 1)
        usable = manifest.num_samples - len(manifest.undecodable)
        if config.train:
            self.total_batches = train_batches_per_rank(usable, config.world_size, config.batch_size)
            if self.total_batches == 0:
                raise UserError(
                    f"{usable} samples cannot fill one batch of {config.batch_size} on each of {config.world_size} "
                    "rank(s); lower the batch size"
                )
        else:
            self.total_batches = eval_batches_per_rank(manifest, config.world_size, workers, config.batch_size)
        if config.start_batch > self.total_batches:
            raise ValueError(f"start_batch {config.start_batch} is past the epoch's {self.total_batches} batches")
        plan = _Plan(config, storage, manifest, transform, self.total_batches)
        self._dataset = _WorkerStream(plan)
        self._loader = torch.utils.data.DataLoader(
            self._dataset,
            batch_size=None,
            num_workers=config.loader_workers,
            persistent_workers=False,
            pin_memory=config.pin_memory,
            prefetch_factor=4 if config.loader_workers else None,
            # Its own generator: DataLoader draws a base seed per iterator, which must not consume the caller's RNG.
            generator=torch.Generator().manual_seed(mix(config.seed, config.epoch, config.rank, 3)),
        )

    def __len__(self) -> int:
        return self.total_batches - self.config.start_batch

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        remaining = len(self)
        if remaining <= 0:
            return
        iterator = iter(self._loader)
        template: tuple[torch.Tensor, torch.Tensor] | None = None
        try:
            for images, labels, mask, skipped in iterator:
                self.skipped += skipped
                template = (images, labels)
                yield (images, labels) if self.config.train else (images, labels, mask)
                remaining -= 1
                if remaining == 0:
                    break
        except (DataError, StorageError) as error:
            raise type(error)(_original_message(error)) from None
        finally:
            del iterator  # shuts the workers down
        if remaining and self.config.train:
            raise DataError(f"the data ran out {remaining} batches before the end of the epoch")
        if remaining > 0 and template is None:  # a rank with no shards (more ranks than shards) still pads
            template = self._template()
        while remaining > 0:  # evaluation: equal batch counts on every rank
            images, labels = template
            blank = images.blank() if isinstance(images, EncodedBatch) else torch.zeros_like(images)
            yield blank, torch.zeros_like(labels), torch.zeros(len(labels), dtype=torch.bool)
            remaining -= 1

    def _template(self) -> tuple[Any, torch.Tensor]:
        """A batch-shaped pair built from the first sample, for ranks that have nothing of their own to read."""
        stream = self._dataset
        for _, image_bytes, _ in stream._raw([0], drop_undecodable=False):
            tensor = stream._prepare(image_bytes, 0)
            if isinstance(tensor, tuple):  # encoded: the device stage shapes masked rows itself
                images, labels, _, _ = collate([(tensor, 0)], self.config.batch_size, 0)
                return images.blank(), labels
            if tensor is not None:
                return tensor.new_zeros((self.config.batch_size, *tensor.shape)), torch.zeros(
                    self.config.batch_size, dtype=torch.long
                )
        raise DataError("no sample of the first shard decodes; cannot shape evaluation padding")


def _original_message(error: Exception) -> str:
    """The worker's own message, without DataLoader's "Caught ... in DataLoader worker" traceback wrapper."""
    text = str(error)
    if "Original Traceback" not in text:
        return text
    last = text.rstrip().splitlines()[-1]
    return last.split(": ", 1)[1] if ": " in last else last


def make_loader(config: PipelineConfig, transform: Transform | None = None) -> EpochLoader:
    """The loader the training worker calls each epoch (see :class:`PipelineConfig`).

    With ``decode_device`` set, the loader's batches are decoded and augmented on that device (a
    ``DeviceDecodedLoader``, which behaves as an ``EpochLoader``).
    """
    if config.decode_device is None:
        return EpochLoader(config, transform)
    from densenet_ray.data.device_decode import DeviceDecodedLoader

    return DeviceDecodedLoader(EpochLoader(config, transform), transform, config.decode_device)  # type: ignore


__all__ = ["DataError", "EpochLoader", "PipelineConfig", "make_loader", "train_batches_per_rank"]
