"""The training and evaluation input pipeline: WebDataset shards to batches, DDP-safe and exactly resumable.

Training follows the epoch plan (``epoch_plan``): one global sample order per epoch cut into one contiguous span per
(rank, loader worker) stream, each exactly the samples of that stream's batches, so every used sample is read by
one stream once and no stream wraps. A stream reads its span (with the shard index, a range read from the middle of
a shard; without, the shard from its start), passes it through a seeded shuffle buffer, and decodes, transforms and
batches inside the loader worker (per-sample IPC costs 4x in our measurements). Rank ``r``'s batches hold its share
of the global batch; a sample that does not decode leaves its batch one row short rather than pulling in another.

Batch ``j`` of a segment comes from logical worker ``j % workers`` (the DataLoader reads workers round-robin), so a
resumed segment rotates the worker roles so that loader worker 0 produces the first remaining batch, and each stream
drops, *before decoding* (and, with an index, before reading), the samples it had already emitted: the buffer's
emission order is computed from the plan, not replayed from data. Augmentation is seeded per sample by ``(seed,
epoch, shard, position)``, so a resumed epoch yields exactly the batches an uninterrupted one would have on the same
layout, and on another layout exactly the samples not yet used.

Evaluation assigns shards to ranks without shuffling and pads with masked rows so that every sample is seen exactly
once across ranks and every rank yields the same number of equally shaped batches (distributed top-1/top-5 exact).

Images that do not decode are skipped and counted (training) or masked out (evaluation), never slept on; samples
the manifest lists as undecodable are not decoded at all. More than ``max_corrupt_fraction`` of a worker's samples
failing is an error.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch

from densenet_ray.data.format.label import Label
from densenet_ray.data.format.manifest import Manifest, load_manifest
from densenet_ray.data.format.shard_index import ShardIndex
from densenet_ray.data.reading.epoch_plan import (
    EpochOrder,
    Layout,
    Segment,
    StreamPlan,
    check_fills_a_batch,
    eval_batches_per_rank,
    eval_shards,
    mix,
    plan_epoch,
    train_batches_per_rank,
)
from densenet_ray.data.reading.samples import (
    EncodedBatch,
    Transform,
    check_corrupt,
    collate,
    decode,
    empty_labels,
    encode,
    labelled,
)
from densenet_ray.data.reading.shard_reader import RawSample, load_index, read_positions, read_shard
from densenet_ray.data.storage import Storage, StorageError
from densenet_ray.errors import DataError

Batch = tuple[Any, torch.Tensor, torch.Tensor, int, tuple[str, ...]]  # images, labels, mask, skipped, sample keys


@dataclass(frozen=True)
class PipelineConfig:
    """What the training worker asks the pipeline for.

    Attributes:
        data: the manifest URL, or the directory/prefix holding ``{split}.json``.
        split: which split to read.
        batch_size: the global batch size; rank ``r`` takes its share (``Layout.share``) of every training batch,
            and ``ceil(batch_size / world_size)`` rows of every evaluation batch.
        rank, world_size: this process's place in the DDP group.
        loader_workers: DataLoader worker processes (0 reads in the calling process).
        epoch: the epoch number; seeds the sample order, the shuffle and the augmentation.
        seed: the run's seed.
        train: training (planned spans, exact batch count) or evaluation (every sample once, masked).
        start_batch: global batches of the epoch already done (resume), counting ``history``'s.
        history: the epoch's earlier segments, run on other layouts (elastic or changed resume).
        shuffle_buffer: raw samples held in each stream's shuffle buffer.
        max_corrupt_fraction: the fraction of a worker's samples that may fail to decode before it is an error.
        pin_memory: batches in page-locked memory, so copies to a GPU can be asynchronous.
        decode_device: where images are decoded: None decodes and transforms in the loader workers (CPU); a device
            ("cuda:0") makes them ship JPEG bytes and augmentation parameters, decoded in batches there
            (``--decode gpu``, see ``device_decode``).
        tensor_decode: decode into tensors with ``torchvision.io`` (your own images) rather than into PIL images
            (the paper's datasets, whose runs resume bitwise with PIL's pixels).
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
    history: tuple[Segment, ...] = ()
    shuffle_buffer: int = 2000
    max_corrupt_fraction: float = 0.01
    pin_memory: bool = False
    decode_device: str | None = None
    tensor_decode: bool = False

    @property
    def layout(self) -> Layout:
        return Layout(self.world_size, self.loader_workers, self.batch_size)

    def validate(self) -> None:
        """The layout's own checks (``Layout``: at least a sample per rank), then this rank's place in it."""
        layout = self.layout
        if not 0 <= self.rank < layout.world_size:
            raise ValueError(f"rank {self.rank} is not in [0, world_size={self.world_size})")
        if self.start_batch < 0:
            raise ValueError(f"start_batch {self.start_batch} must be >= 0")


@dataclass(frozen=True)
class _Plan:
    """Everything a rank's loader workers need, picklable so spawned workers can rebuild their streams."""

    config: PipelineConfig
    storage: Storage
    manifest: Manifest
    transform: Transform | None
    order: EpochOrder | None  # training only
    streams: list[StreamPlan]  # this rank's streams of the current segment (training)
    segment_start: int  # batches of the current segment already done
    eval_batch: int


class _WorkerStream(torch.utils.data.IterableDataset):
    """Runs inside each DataLoader worker (or in-process): yields ``(images, labels, mask, skipped, keys)`` batches;
    ``keys`` are a training batch's sample keys (a non-finite step names them), empty in evaluation."""

    def __init__(self, plan: _Plan) -> None:
        super().__init__()
        self.plan = plan
        self._indexes: dict[int, ShardIndex | None] = {}
        # Multi-label data: labels are multi-hot rows over the classes (0: class indices).
        self.multi_hot = plan.manifest.num_classes if plan.manifest.multi_label else 0

    def __iter__(self) -> Iterator[Batch]:
        info = torch.utils.data.get_worker_info()
        loader_worker, workers = (info.id, info.num_workers) if info else (0, 1)
        torch.set_num_threads(1)  # decode in parallel processes, not threads
        if self.plan.config.train:
            # Rotate roles so that loader worker 0 produces the segment's first remaining batch (in-order reads).
            yield from self._train(self.plan.streams[(loader_worker + self.plan.segment_start) % workers])
        else:
            yield from self._evaluate(loader_worker, workers)

    # -- training ---------------------------------------------------------------------------------------------
    def _train(self, stream: StreamPlan) -> Iterator[Batch]:
        config = self.plan.config
        todo = stream.emission(config.shuffle_buffer)[stream.emitted(self.plan.segment_start) :]
        order = todo.tolist()  # plain ints: the loop below runs once per sample
        undecodable = set(self.plan.manifest.undecodable)
        held: dict[int, tuple[int, int, RawSample]] = {}
        batch: list[tuple[Any, Label]] = []
        keys: list[str] = []
        next_out = failures = seen = skipped = 0
        for index, located in self._read(stream, todo):
            held[index] = located
            while next_out < len(order) and order[next_out] in held:
                shard, position, (key, image_bytes, label) = held.pop(order[next_out])
                next_out += 1
                seen += 1
                tensor = None
                if key not in undecodable and labelled(label):
                    tensor = self._prepare(image_bytes, mix(config.seed, config.epoch, shard, position))
                if tensor is None:
                    failures += 1
                    skipped += 1
                    check_corrupt(failures, seen, config.max_corrupt_fraction)
                else:
                    batch.append((tensor, label))
                    keys.append(key)
                if len(batch) + skipped == stream.batch_size:
                    yield (*collate(batch, len(batch), skipped, self.multi_hot), tuple(keys))
                    batch, keys, skipped = [], [], 0
        if next_out != len(order):
            raise DataError(f"a stream produced {next_out} of its {len(order)} planned samples")

    def _read(self, stream: StreamPlan, todo: np.ndarray) -> Iterator[tuple[int, tuple[int, int, RawSample]]]:
        """``(index into the span, (shard, position, sample))`` for the span's samples in ``todo``, in read order."""
        plan = self.plan
        assert plan.order is not None
        wanted = np.sort(todo)
        shards, positions = plan.order.locate(stream.window[wanted])
        for start, stop in _runs(shards, positions):
            shard = int(shards[start])
            info = plan.manifest.shards[shard]
            run = positions[start:stop].tolist()
            # With its index, even a whole shard is read as one range cut at the members' offsets: no tar header is
            # parsed (about 0.1 ms a sample in Python's tarfile), for one small request more per shard.
            if shard not in self._indexes:
                self._indexes[shard] = load_index(plan.storage, info)
            span_indices = wanted[start:stop]
            for offset, (position, sample) in enumerate(read_positions(plan.storage, info, run, self._indexes[shard])):
                yield int(span_indices[offset]), (shard, position, sample)

    # -- evaluation -------------------------------------------------------------------------------------------
    def _evaluate(self, worker: int, workers: int) -> Iterator[Batch]:
        plan, config, size = self.plan, self.plan.config, self.plan.eval_batch
        mine = eval_shards(len(plan.manifest.shards), config.rank, config.world_size)[worker::workers]
        batch: list[tuple[Any, Label]] = []
        skipped = 0
        for shard in mine:
            info = plan.manifest.shards[shard]
            count = 0
            for count, (_, image_bytes, label) in enumerate(read_shard(plan.storage, info), start=1):
                tensor = self._prepare(image_bytes, mix(config.seed, shard, count - 1))
                if tensor is None:
                    skipped += 1  # keep its slot, masked out, so batch counts stay what the manifest implies
                batch.append((tensor, label))
                if len(batch) == size:
                    yield (*collate(batch, size, skipped, self.multi_hot), ())
                    batch, skipped = [], 0
            if count != info.samples:
                raise DataError(
                    f"shard {plan.storage.join(info.name)} is truncated or corrupt: {count} of {info.samples} "
                    "samples (run `densenet-ray data verify`)"
                )
        if batch:
            yield (*collate(batch, size, skipped, self.multi_hot), ())

    def _prepare(self, image_bytes: bytes, seed: int) -> Any:
        """The decoded, transformed image; or, decoding on the device, the bytes and augmentation parameters."""
        if self.plan.config.decode_device is not None:
            return encode(image_bytes, self.plan.transform, seed)
        return decode(image_bytes, self.plan.transform, seed, self.plan.config.tensor_decode)


def _runs(shards: np.ndarray, positions: np.ndarray) -> Iterator[tuple[int, int]]:
    """``[start, stop)`` stretches of one shard with rising positions (a span wraps from the order's end to its
    start, which may be the same shard)."""
    start = 0
    for i in range(1, len(shards) + 1):
        if i == len(shards) or shards[i] != shards[i - 1] or positions[i] <= positions[i - 1]:
            yield start, i
            start = i


_NOTIFIED: set[str] = set()


def _notice_unindexed(storage: Storage, manifest: Manifest) -> None:
    """One line per process and dataset when shards have no index (they train, reading whole shards)."""
    missing = sum(1 for shard in manifest.shards if not shard.index)
    if missing and storage.url not in _NOTIFIED:
        _NOTIFIED.add(storage.url)
        print(
            f"notice: {missing} of {len(manifest.shards)} shards at {storage.url} have no index; streams read them "
            f"from their start (add indexes with `densenet-ray data index {storage.url}`)",
            file=sys.stderr,
        )


class Loader(Protocol):
    """What :func:`make_loader` returns: an :class:`EpochLoader`, or one wrapped to decode on a device."""

    @property
    def total_batches(self) -> int: ...

    @property
    def skipped(self) -> int: ...

    @property
    def keys(self) -> tuple[str, ...]: ...

    def __len__(self) -> int: ...

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]: ...


class EpochLoader:
    """One epoch of batches for one rank.

    Iterating yields ``(images, labels)`` in training and ``(images, labels, mask)`` in evaluation, exactly
    ``len(self)`` times (from ``start_batch`` on). ``skipped`` counts samples that failed to decode so far;
    ``keys`` are the sample keys of the training batch yielded last.
    """

    def __init__(self, config: PipelineConfig, transform: Transform | None = None) -> None:
        config.validate()
        storage, manifest = load_manifest(config.data, config.split)
        self.config, self.manifest, self.skipped = config, manifest, 0
        self.keys: tuple[str, ...] = ()
        eval_batch = math.ceil(config.batch_size / config.world_size)
        if config.train:
            check_fills_a_batch(manifest.num_samples, config.batch_size, config.data)
            _notice_unindexed(storage, manifest)
            epoch = plan_epoch(
                [shard.samples for shard in manifest.shards],
                config.seed,
                config.epoch,
                config.layout,
                config.history,
                config.start_batch,
                config.shuffle_buffer,
            )
            self.total_batches = epoch.epoch_batches
            plan = _Plan(
                config, storage, manifest, transform, epoch.order, epoch.rank_streams(config.rank), epoch.start, 0
            )
        else:
            workers = max(config.loader_workers, 1)
            self.total_batches = eval_batches_per_rank(manifest, config.world_size, workers, eval_batch)
            if config.start_batch > self.total_batches:
                raise ValueError(f"start_batch {config.start_batch} is past the epoch's {self.total_batches} batches")
            plan = _Plan(config, storage, manifest, transform, None, [], 0, eval_batch)
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
            for images, labels, mask, skipped, keys in iterator:
                self.skipped += skipped
                self.keys = keys
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
            assert template is not None  # set above
            images, labels = template
            blank = images.blank() if isinstance(images, EncodedBatch) else torch.zeros_like(images)
            yield blank, torch.zeros_like(labels), torch.zeros(len(labels), dtype=torch.bool)
            remaining -= 1

    def _template(self) -> tuple[Any, torch.Tensor]:
        """A batch-shaped pair built from the first sample, for ranks that have nothing of their own to read."""
        stream, size = self._dataset, self._dataset.plan.eval_batch
        for _, image_bytes, _ in read_shard(stream.plan.storage, self.manifest.shards[0]):
            tensor = stream._prepare(image_bytes, 0)
            if isinstance(tensor, tuple):  # encoded: the device stage shapes masked rows itself
                images, labels, _, _ = collate([(tensor, 0)], size, 0)
                return images.blank(), labels
            if tensor is not None:
                return tensor.new_zeros((size, *tensor.shape)), empty_labels(size, stream.multi_hot)
        raise DataError("no sample of the first shard decodes; cannot shape evaluation padding")


def _original_message(error: Exception) -> str:
    """The worker's own message, without DataLoader's "Caught ... in DataLoader worker" traceback wrapper."""
    text = str(error)
    if "Original Traceback" not in text:
        return text
    last = text.rstrip().splitlines()[-1]
    return last.split(": ", 1)[1] if ": " in last else last


def make_loader(config: PipelineConfig, transform: Transform | None = None) -> Loader:
    """The loader the training worker calls each epoch (see :class:`PipelineConfig`).

    With ``decode_device`` set, the loader's batches are decoded and augmented on that device (a
    ``DeviceDecodedLoader``, which behaves as an ``EpochLoader``).
    """
    if config.decode_device is None:
        return EpochLoader(config, transform)
    from densenet_ray.data.reading.device_decode import DeviceDecodedLoader

    return DeviceDecodedLoader(EpochLoader(config, transform), transform, config.decode_device)


__all__ = ["DataError", "EpochLoader", "Loader", "PipelineConfig", "make_loader", "train_batches_per_rank"]
