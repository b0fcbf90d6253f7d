"""The epoch's plan, computed alike on every rank without reading any shard.

Training (every sample exactly once per epoch, at any world size and loader-worker count):

1. One global sample order per epoch: the shards in a permutation seeded by ``(seed, epoch)``, each shard's samples
   in stored order, rotated by an offset seeded the same way. The first ``floor(N / G) * G`` samples of that
   rotated order are the epoch (``G`` the global batch); the rest, fewer than one global batch, are left out, and
   the rotation moves them every epoch so no sample is always the one left out.
2. The used samples are cut into contiguous spans, one per (rank, loader worker) stream, in stream order. Rank
   ``r`` takes ``share(r)`` samples of every global batch (equal shares, the first ``G % W`` ranks one more), and
   its loader worker ``w`` produces the rank's batches ``j`` with ``j % K == w`` (the DataLoader reads its workers
   round-robin), so a stream's span holds exactly the samples of its batches. A span may start and end inside a
   shard; no stream ever wraps or repeats.
3. A stream reads its span in order and emits it through a seeded shuffle buffer. The buffer's emission order
   depends only on the span's length, its seed and the buffer size, so it is computed here without any data.

Resume: an epoch is a sequence of :class:`Segment` s, each a layout and the global batches it ran. A segment's
consumed samples are recomputed from its layout alone (each stream's first emissions), so a run resumed on another
layout continues with exactly the samples not yet used, cut into spans for the new layout; with the same layout it
continues the same segment and yields exactly the batches an uninterrupted run would have.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from densenet_ray.data.format.manifest import Manifest
from densenet_ray.errors import UserError


def mix(*parts: int) -> int:
    """A stable 63-bit seed from integers (Python's hash of ints is stable, but be explicit)."""
    value = 0x9E3779B97F4A7C15
    for part in parts:
        value = (value ^ (int(part) & 0xFFFFFFFFFFFFFFFF)) * 0xBF58476D1CE4E5B9 & 0xFFFFFFFFFFFFFFFF
        value ^= value >> 31
    return value & 0x7FFFFFFFFFFFFFFF


def check_batch_fits(global_batch: int, ranks: int, ranks_flag: str = "--workers") -> None:
    """Every rank gets at least one sample of each global batch (one line naming ``--batch-size`` and
    ``ranks_flag``, the flag that set the ranks): the one place this is checked, for training runs and the plan."""
    if global_batch < ranks:
        raise UserError(
            f"global --batch-size {global_batch} is smaller than {ranks_flag} {ranks}; every worker needs at least one "
            "sample a batch"
        )


@dataclass(frozen=True)
class Layout:
    """How an epoch's global batches are produced: ranks, loader workers per rank, and the global batch size."""

    world_size: int
    loader_workers: int
    global_batch: int

    def __post_init__(self) -> None:
        if self.world_size < 1 or self.loader_workers < 0:
            raise ValueError(f"world size {self.world_size} and loader workers {self.loader_workers} are invalid")
        check_batch_fits(self.global_batch, self.world_size)

    @property
    def streams_per_rank(self) -> int:
        """Loader workers, or 1 when the rank reads in its own process."""
        return max(self.loader_workers, 1)

    def share(self, rank: int) -> int:
        """Rank ``rank``'s rows of every global batch: equal shares, the first ``G % W`` ranks one more."""
        base, extra = divmod(self.global_batch, self.world_size)
        return base + (1 if rank < extra else 0)


@dataclass(frozen=True)
class Segment:
    """A stretch of an epoch that ran under one layout: ``batches`` global batches."""

    layout: Layout
    batches: int

    def to_dict(self) -> dict[str, int]:
        return {
            "world_size": self.layout.world_size,
            "loader_workers": self.layout.loader_workers,
            "global_batch": self.layout.global_batch,
            "batches": self.batches,
        }

    @classmethod
    def from_dict(cls, data: dict[str, int]) -> Segment:
        layout = Layout(int(data["world_size"]), int(data["loader_workers"]), int(data["global_batch"]))
        return cls(layout, int(data["batches"]))


def shard_permutation(num_shards: int, seed: int, epoch: int) -> list[int]:
    """The epoch's global shard order, the same on every rank."""
    order = list(range(num_shards))
    random.Random(mix(seed, epoch, 1)).shuffle(order)
    return order


def worker_batch_count(total_batches: int, worker: int, workers: int) -> int:
    """Batches ``j < total_batches`` with ``j % workers == worker``."""
    return max(0, math.ceil((total_batches - worker) / workers))


def buffer_shuffle(items: Iterable[Any], rng: random.Random, size: int) -> Iterator[Any]:
    """A seeded shuffle buffer: fill to ``size``, then emit a random element for each new one, then drain."""
    buffer: list[Any] = []
    for item in items:
        if len(buffer) < size:
            buffer.append(item)
            continue
        index = rng.randrange(len(buffer))
        buffer[index], item = item, buffer[index]
        yield item
    rng.shuffle(buffer)
    yield from buffer


class EpochOrder:
    """The epoch's global sample order: window index ``i`` is the ``i``-th sample of the rotated shard order."""

    def __init__(self, shard_samples: list[int], seed: int, epoch: int) -> None:
        self.shards = np.asarray(shard_permutation(len(shard_samples), seed, epoch), dtype=np.int64)
        sizes = np.asarray([shard_samples[s] for s in self.shards], dtype=np.int64)
        self.starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        self.total = int(self.starts[-1])
        self.offset = random.Random(mix(seed, epoch, 4)).randrange(self.total) if self.total else 0

    def locate(self, window: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(shard index, position in shard)`` of each window index."""
        flat = (self.offset + np.asarray(window, dtype=np.int64)) % max(self.total, 1)
        slot = np.searchsorted(self.starts, flat, side="right") - 1
        return self.shards[slot], flat - self.starts[slot]


@dataclass(frozen=True)
class StreamPlan:
    """One (rank, loader worker) stream of one segment: the window indices it reads, in order, and its batches."""

    rank: int
    worker: int
    workers: int
    window: np.ndarray
    batch_size: int
    batches: int
    seed: int

    def emission(self, buffer: int) -> np.ndarray:
        """The order (indices into ``window``) in which the stream's shuffle buffer emits its samples."""
        order = buffer_shuffle(range(len(self.window)), random.Random(self.seed), buffer)
        return np.fromiter(order, dtype=np.int64, count=len(self.window))

    def emitted(self, rank_batches: int) -> int:
        """Samples this stream has emitted once its rank has produced ``rank_batches`` batches of the segment."""
        return min(self.batches, worker_batch_count(rank_batches, self.worker, self.workers)) * self.batch_size

    def consumed(self, rank_batches: int, buffer: int) -> np.ndarray:
        """Window indices of the samples emitted once the rank has produced ``rank_batches`` batches."""
        return self.window[self.emission(buffer)[: self.emitted(rank_batches)]]


def segment_streams(positions: np.ndarray, layout: Layout, seed: int, epoch: int, segment: int) -> list[StreamPlan]:
    """The streams of one segment over ``positions`` (window indices not yet used, in window order): contiguous
    spans in stream order, each exactly its batches' samples; positions past ``floor(len / G) * G`` are left out."""
    steps = len(positions) // layout.global_batch
    workers = layout.streams_per_rank
    streams, start = [], 0
    for rank in range(layout.world_size):
        size = layout.share(rank)
        for worker in range(workers):
            batches = worker_batch_count(steps, worker, workers)
            span = positions[start : start + batches * size]
            start += batches * size
            streams.append(
                StreamPlan(
                    rank=rank,
                    worker=worker,
                    workers=workers,
                    window=span,
                    batch_size=size,
                    batches=batches,
                    seed=mix(seed, epoch, segment, rank, worker, 2),
                )
            )
    return streams


@dataclass(frozen=True)
class TrainPlan:
    """The current segment of an epoch: its streams, its global batches and how many of them are done.

    Attributes:
        order: the epoch's global sample order.
        streams: the current segment's streams, rank-major.
        steps: global batches of the current segment.
        start: global batches of the current segment already done (resume).
        epoch_batches: global batches of the whole epoch (earlier segments' and this one's).
    """

    order: EpochOrder
    streams: list[StreamPlan]
    steps: int
    start: int
    epoch_batches: int

    def rank_streams(self, rank: int) -> list[StreamPlan]:
        return [stream for stream in self.streams if stream.rank == rank]


def plan_epoch(
    shard_samples: list[int],
    seed: int,
    epoch: int,
    layout: Layout,
    history: tuple[Segment, ...] = (),
    done: int = 0,
    buffer: int = 2000,
) -> TrainPlan:
    """The plan of epoch ``epoch`` for ``layout``, after the earlier segments ``history`` (other layouts) and
    ``done`` global batches of the epoch in all (``done`` counts the history's batches too)."""
    order = EpochOrder(shard_samples, seed, epoch)
    positions = np.arange(order.total, dtype=np.int64)
    previous = 0
    for index, segment in enumerate(history):
        streams = segment_streams(positions, segment.layout, seed, epoch, index)
        used = np.concatenate([stream.consumed(segment.batches, buffer) for stream in streams])
        positions = np.setdiff1d(positions, used, assume_unique=True)
        previous += segment.batches
    start = done - previous
    streams = segment_streams(positions, layout, seed, epoch, len(history))
    steps = len(positions) // layout.global_batch
    if not 0 <= start <= steps:
        raise ValueError(f"resume position {done} is outside the epoch ({previous} + {steps} global batches)")
    return TrainPlan(order, streams, steps, start, previous + steps)


@dataclass(frozen=True)
class PlanSummary:
    """What ``densenet-ray data plan`` prints: the figures of a fresh epoch's plan, from shard counts alone."""

    samples: int
    shards: int
    world_size: int
    loader_workers: int
    global_batch: int
    batches_per_rank: int
    samples_per_stream_min: int
    samples_per_stream_max: int
    used_once: int
    repeated: int
    left_out: int
    shards_shared: int

    def to_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


def summarize(shard_samples: list[int], layout: Layout, seed: int = 0, epoch: int = 0) -> PlanSummary:
    """Count what epoch ``epoch``'s plan does with every sample, computed from the plan itself (not from the rules
    it is meant to follow): a sample in two streams counts as repeated, a shard read by two streams as shared."""
    plan = plan_epoch(shard_samples, seed, epoch, layout)
    windows = [stream.window for stream in plan.streams]
    every = np.concatenate(windows) if windows else np.zeros(0, dtype=np.int64)
    unique = len(np.unique(every))
    readers = np.zeros(len(shard_samples), dtype=np.int64)
    for window in windows:
        shards, _ = plan.order.locate(window)
        readers[np.unique(shards)] += 1
    lengths = [len(window) for window in windows]
    return PlanSummary(
        samples=plan.order.total,
        shards=len(shard_samples),
        world_size=layout.world_size,
        loader_workers=layout.loader_workers,
        global_batch=layout.global_batch,
        batches_per_rank=plan.steps,
        samples_per_stream_min=min(lengths, default=0),
        samples_per_stream_max=max(lengths, default=0),
        used_once=unique,
        repeated=len(every) - unique,
        left_out=plan.order.total - unique,
        shards_shared=int((readers > 1).sum()),
    )


def check_fills_a_batch(samples: int, global_batch: int, where: str) -> None:
    """The training split at ``where``, of ``samples`` samples, fills at least one global batch (one line naming how
    many it holds): the one place this is checked. The driver counts only the samples that decode, before a run; a
    training loader every sample its epoch plan orders (a batch that loses undecodable ones is smaller)."""
    if samples < global_batch:
        raise UserError(
            f"{where} has {samples} training samples, fewer than one global batch of {global_batch}; lower --batch-size"
        )


def train_batches_per_rank(num_samples: int, global_batch: int) -> int:
    """``floor(N / G)``: the training batches every rank yields per epoch (each holds its share of ``G``)."""
    return num_samples // global_batch


def eval_shards(num_shards: int, rank: int, world_size: int) -> list[int]:
    return list(range(num_shards))[rank::world_size]


def eval_batches_per_rank(manifest: Manifest, world_size: int, workers: int, batch_size: int) -> int:
    """Evaluation batches every rank yields: the most any rank needs, so all ranks run the same count."""
    most = 0
    for rank in range(world_size):
        mine = eval_shards(len(manifest.shards), rank, world_size)
        count = 0
        for worker in range(max(workers, 1)):
            samples = sum(manifest.shards[i].samples for i in mine[worker :: max(workers, 1)])
            count += math.ceil(samples / batch_size)
        most = max(most, count)
    return most
