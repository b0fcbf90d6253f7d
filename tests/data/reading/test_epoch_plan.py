"""The epoch plan alone (no shard is read): exact spans, rotating remainders, resume onto any layout."""

from __future__ import annotations

import numpy as np
import pytest

from densenet_ray.data.reading.epoch_plan import Layout, Segment, plan_epoch, summarize
from densenet_ray.errors import UserError

ODD_SHARDS = [37] * 13 + [19]  # 500 samples: shards divide unevenly over ranks and workers, the last one short


def _used(plan) -> np.ndarray:
    return np.concatenate([stream.window for stream in plan.streams])


@pytest.mark.parametrize("world_size", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("loader_workers", [0, 1, 2, 3])
def test_every_sample_once_and_a_remainder_below_one_global_batch(world_size, loader_workers) -> None:
    for global_batch in (world_size, 16, 23, 64):
        if global_batch < world_size:
            continue
        layout = Layout(world_size, loader_workers, global_batch)
        summary = summarize(ODD_SHARDS, layout, seed=3, epoch=1)
        assert summary.repeated == 0
        assert summary.used_once == 500 // global_batch * global_batch
        assert summary.left_out == 500 % global_batch < global_batch
        plan = plan_epoch(ODD_SHARDS, 3, 1, layout)
        for stream in plan.streams:  # a stream holds exactly its batches' rows: it never wraps and never runs dry
            assert len(stream.window) == stream.batches * layout.share(stream.rank)
        for rank in range(world_size):  # every rank yields the same number of batches
            assert sum(s.batches for s in plan.rank_streams(rank)) == plan.steps == 500 // global_batch


def test_unequal_shares_sum_to_the_global_batch() -> None:
    layout = Layout(3, 2, 64)
    assert [layout.share(rank) for rank in range(3)] == [22, 21, 21]
    with pytest.raises(UserError, match=r"^global --batch-size 2 is smaller than --workers 3; every worker needs at"):
        Layout(3, 1, 2)


def test_the_left_out_remainder_moves_between_epochs() -> None:
    layout = Layout(2, 2, 64)  # 500 % 64 = 52 left out each epoch
    left_out = []
    for epoch in range(4):
        used = set(_used(plan_epoch(ODD_SHARDS, 3, epoch, layout)).tolist())
        order = plan_epoch(ODD_SHARDS, 3, epoch, layout).order
        shards, positions = order.locate(np.setdiff1d(np.arange(500), np.fromiter(used, dtype=np.int64)))
        left_out.append(set(zip(shards.tolist(), positions.tolist(), strict=True)))
        assert len(left_out[-1]) == 52
    assert all(a != b for i, a in enumerate(left_out) for b in left_out[i + 1 :])
    # A single shard too: the rotation, not the shard order, moves the remainder.
    single = [plan_epoch([500], 3, epoch, layout).order.offset for epoch in range(4)]
    assert len(set(single)) == 4


def test_every_window_index_maps_to_a_distinct_sample() -> None:
    order = plan_epoch(ODD_SHARDS, 9, 2, Layout(1, 1, 10)).order
    shards, positions = order.locate(np.arange(500))
    pairs = set(zip(shards.tolist(), positions.tolist(), strict=True))
    assert len(pairs) == 500
    assert all(0 <= p < ODD_SHARDS[s] for s, p in pairs)


def _consumed(plan, batches: int, buffer: int) -> np.ndarray:
    """What a segment's streams emitted in its first ``batches`` global batches."""
    return np.concatenate([stream.consumed(batches, buffer) for stream in plan.streams])


@pytest.mark.parametrize(
    ("old", "new"),
    [((2, 2), (1, 1)), ((1, 1), (3, 2)), ((3, 1), (2, 3)), ((2, 3), (2, 1)), ((4, 2), (5, 0))],
)
def test_resume_on_another_layout_uses_every_remaining_sample_once(old, new) -> None:
    buffer, global_batch = 16, 20
    first = plan_epoch(ODD_SHARDS, 1, 0, Layout(*old, global_batch), buffer=buffer)
    done = 7
    consumed = _consumed(first, done, buffer)
    assert len(consumed) == len(set(consumed.tolist())) == done * global_batch
    history = (Segment(Layout(*old, global_batch), done),)
    second = plan_epoch(ODD_SHARDS, 1, 0, Layout(*new, global_batch), history, done, buffer)
    rest = _used(second)
    assert second.epoch_batches == first.epoch_batches == 25 and second.start == 0 and second.steps == 18
    union = np.concatenate([consumed, rest])
    assert len(union) == len(set(union.tolist())) == 500
    # And once more onto a third layout, half-way through the second.
    third = plan_epoch(
        ODD_SHARDS, 1, 0, Layout(1, 2, global_batch), (*history, Segment(Layout(*new, global_batch), 9)), 16, buffer
    )
    union = np.concatenate([consumed, _consumed(second, 9, buffer), _used(third)])
    assert third.steps == 9 and len(union) == len(set(union.tolist())) == 500


def test_same_layout_resume_continues_the_same_segment() -> None:
    layout = Layout(2, 2, 20)
    fresh, resumed = plan_epoch(ODD_SHARDS, 1, 0, layout), plan_epoch(ODD_SHARDS, 1, 0, layout, (), 7)
    assert resumed.start == 7 and resumed.steps == fresh.steps
    assert all(np.array_equal(a.window, b.window) for a, b in zip(fresh.streams, resumed.streams, strict=True))
    with pytest.raises(ValueError, match="resume position 26 is outside the epoch"):
        plan_epoch(ODD_SHARDS, 1, 0, layout, (), 26)


@pytest.mark.parametrize(("world_size", "loader_workers"), [(64, 8), (2, 2), (8, 8), (256, 8)])
def test_imagenet_scale_plans_repeat_nothing(world_size, loader_workers) -> None:
    global_batch = 64 * world_size
    summary = summarize([1000] * 1282, Layout(world_size, loader_workers, global_batch))
    assert summary.repeated == 0 and summary.left_out < global_batch
    assert summary.used_once + summary.left_out == 1_282_000
