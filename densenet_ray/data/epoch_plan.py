"""The epoch's plan, computed alike on every rank without reading any shard: how many batches, which shards each
(rank, loader worker) stream reads in training, which in evaluation."""

from __future__ import annotations

import math
import random

from densenet_ray.data.manifest import Manifest


def mix(*parts: int) -> int:
    """A stable 63-bit seed from integers (Python's hash of ints is stable, but be explicit)."""
    value = 0x9E3779B97F4A7C15
    for part in parts:
        value = (value ^ (int(part) & 0xFFFFFFFFFFFFFFFF)) * 0xBF58476D1CE4E5B9 & 0xFFFFFFFFFFFFFFFF
        value ^= value >> 31
    return value & 0x7FFFFFFFFFFFFFFF


def train_batches_per_rank(num_samples: int, world_size: int, batch_size: int) -> int:
    """``floor(N / (world_size * batch_size))``: the training batches every rank yields per epoch."""
    return num_samples // (world_size * batch_size)


def shard_permutation(num_shards: int, seed: int, epoch: int) -> list[int]:
    """The epoch's global shard order, the same on every rank."""
    order = list(range(num_shards))
    random.Random(mix(seed, epoch, 1)).shuffle(order)
    return order


def worker_shards(shards: list[int], rank: int, world_size: int, worker: int, workers: int) -> list[int]:
    """Shards of ``shards`` read by (rank, worker); falls back to wider sets so no worker is ever empty."""
    rank_shards = shards[rank::world_size] or shards
    return rank_shards[worker::workers] or rank_shards


def worker_batch_count(total_batches: int, worker: int, workers: int) -> int:
    """Batches ``j < total_batches`` with ``j % workers == worker``."""
    return max(0, math.ceil((total_batches - worker) / workers))


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
