"""Spot preemption without lost steps: every worker asks Ray Train for the preemption notice at step boundaries, on a
schedule all ranks share, and the run checkpoints at once when one comes, trains on while the node lives, and
checkpoints once more just before it goes.

Ray Train 2.60 announces a node's reclaim before it happens (``ray drain-node --reason
DRAIN_NODE_REASON_PREEMPTION``, as its autoscaler does for spot instances): a watcher polls the drain state every
``RAY_TRAIN_PREEMPTION_POLL_INTERVAL_S`` (5 s) and ``ray.train.get_preemption_info()`` returns the notice on every
worker. The call is a collective (every rank must make it the same number of times) and costs a few milliseconds
(3.2 ms on 2 CPU workers), so it is made about every :data:`CHECK_INTERVAL_S` seconds: rank 0 turns that into a step
count from its own step time and broadcasts it, so every rank checks at the same steps. At the deadline Ray tears
the worker group down and restarts it on the nodes that remain or arrive, from the last checkpoint, charged to
``FailureConfig.max_preemption_failures`` (``--max-preemption-failures``).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from enum import Enum

import torch

CHECK_INTERVAL_S = 2.0  # under the watcher's 5 s poll, and a few ms a check is ~0.2 % of the time
NO_DEADLINE_S = 120.0  # when a drain names no deadline, Ray Train waits this long (DEFAULT_PREEMPTION_DEADLINE_S)
SAFETY_S = 2.0  # the final checkpoint is committed this long before the deadline, besides the time it takes


class Action(Enum):
    """What the worker does after a step: nothing, checkpoint at the notice, or checkpoint and wait for the end."""

    NONE = "none"
    NOTICE = "notice"
    FINAL = "final"


@dataclass(frozen=True)
class Notice:
    """A preemption notice: the nodes going, the ranks on them, and when (seconds since the epoch)."""

    nodes: tuple[str, ...]
    ranks: tuple[int, ...]
    deadline: float


class PreemptionWatch:
    """One attempt's watch for the preemption notice (see the module docstring). :meth:`after_step` after every
    optimizer step that may checkpoint; the same calls on every rank."""

    def __init__(self, world: int, device: torch.device) -> None:
        self.world, self.device = world, device
        self.every = 1  # steps between checks, the same on every rank
        self.since = 0
        self.notice: Notice | None = None
        self.step_seconds = 0.0
        self.checkpoint_seconds = 0.0  # what the notice's checkpoint took: the final one needs as long
        self.longest_gap = 0.0  # the most time between two calls (an epoch's end, with its evaluation, included)
        self._last = time.perf_counter()  # the last check (or the start): the steps since took the time since
        self._previous: float | None = None

    def after_step(self) -> Action:
        now = time.perf_counter()
        if self._previous is not None:
            self.longest_gap = max(self.longest_gap, now - self._previous)
        self._previous = now
        self.since += 1
        first = False
        if self.since >= self.every:  # checks go on after a notice: another node may be drained, sooner
            # Wall time per step, what came between epochs included (evaluation, the epoch's report waiting for the
            # controller's poll): left out, short epochs with long ends spaced the checks many times 2 s apart and
            # a notice could come too late for its checkpoint. Counted, a long evaluation only brings one more check.
            self.step_seconds = (now - self._last) / self.since
            notice = self._check()
            first = notice is not None and self.notice is None
            self.notice = merged(self.notice, notice)
            self.every = self._agree(max(1, round(CHECK_INTERVAL_S / max(self.step_seconds, 1e-6))))
            self.since, self._last = 0, time.perf_counter()
        if first:
            return Action.NOTICE
        return Action.FINAL if self.notice is not None and self._deadline_near() else Action.NONE

    def _check(self) -> Notice | None:
        import ray.train

        info = ray.train.get_preemption_info()
        if info is None:
            return None
        if info.deadline_ms:
            deadline = info.deadline_ms / 1000
        else:  # Ray counts from when it saw the drain: up to a watcher poll, a check and a controller poll ago
            lag = _seconds_from_env("RAY_TRAIN_PREEMPTION_POLL_INTERVAL_S", 5.0) + CHECK_INTERVAL_S
            deadline = time.time() + NO_DEADLINE_S - lag - _controller_poll_seconds()
        return Notice(tuple(info.preempted_node_ids), tuple(info.preempted_ranks), deadline)

    def _deadline_near(self) -> bool:
        """Whether the deadline could come before the next call's checkpoint is committed: the next call may be as
        far away as the longest gap yet (an epoch's end comes between), and a checkpoint takes as long as the
        notice's did, plus up to one controller poll (a report waits for the next). One all-reduce: all ranks decide
        alike."""
        assert self.notice is not None
        margin = self.longest_gap + self.checkpoint_seconds + _controller_poll_seconds() + SAFETY_S
        return bool(self._agree(int(time.time() + margin >= self.notice.deadline), maximum=True))

    def _agree(self, value: int, maximum: bool = False) -> int:
        """Rank 0's ``value`` (or, with ``maximum``, the largest) on every rank."""
        import torch.distributed as dist

        if self.world == 1 or not dist.is_initialized():
            return value
        tensor = torch.tensor([value], dtype=torch.int64, device=self.device)
        if maximum:
            dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
        else:
            dist.broadcast(tensor, src=0)
        return int(tensor.item())

    def wait_for_the_end(self) -> None:
        """After the final checkpoint: idle until Ray tears the group down at the deadline (a step now would be lost
        work). Should the group outlive the deadline by a minute, something else is wrong: say so."""
        assert self.notice is not None
        while time.time() < self.notice.deadline + 60.0:
            time.sleep(0.5)
        raise RuntimeError(
            f"the worker group outlived the preemption deadline of node(s) {', '.join(self.notice.nodes)} by 60 s; "
            "Ray Train should have restarted it"
        )


def merged(known: Notice | None, new: Notice | None) -> Notice | None:
    """Two notices as one, as Ray Train merges them: every node and rank going, and the earliest deadline."""
    if known is None or new is None:
        return known or new
    nodes, ranks = tuple(sorted({*known.nodes, *new.nodes})), tuple(sorted({*known.ranks, *new.ranks}))
    return Notice(nodes, ranks, min(known.deadline, new.deadline))


def _controller_poll_seconds() -> float:
    """How often Ray Train's controller polls its workers (a report is committed at the next poll)."""
    return _seconds_from_env("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", 2.0)


def _seconds_from_env(name: str, default: float) -> float:
    """A Ray Train interval setting (Ray propagates them from the driver to the controller and the workers)."""
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        return default
