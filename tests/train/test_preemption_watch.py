"""The preemption watch's schedule in one process: how often it asks Ray for the notice, and when the final
checkpoint comes (Ray's collective is replaced by a scripted answer; the cluster test drains a real node)."""

from __future__ import annotations

import time
from itertools import pairwise

import pytest
import torch

from densenet_ray.train import preemption
from densenet_ray.train.preemption import CHECK_INTERVAL_S, Action, Notice, PreemptionWatch


class ScriptedWatch(PreemptionWatch):
    """A watch whose check answers from a script, counting the checks (Ray's call needs a Train worker)."""

    def __init__(self, notices: dict[int, tuple[str, int, float]] | None = None) -> None:
        super().__init__(1, torch.device("cpu"))
        self.checks, self.notices = 0, notices or {}  # check number -> (node, rank, seconds to its deadline)
        self.checked_at: list[float] = []  # the (fake) clock at each check

    def _check(self) -> Notice | None:
        self.checks += 1
        self.checked_at.append(time.perf_counter())
        if self.checks in self.notices:
            node, rank, seconds = self.notices[self.checks]
            return Notice((node,), (rank,), time.time() + seconds)
        return None


def _steps(watch: PreemptionWatch, count: int, seconds: float, clock: list[float]) -> list[Action]:
    actions = []
    for _ in range(count):
        clock[0] += seconds
        actions.append(watch.after_step())
    return actions


@pytest.fixture
def clock(monkeypatch) -> list[float]:
    """A fake ``perf_counter`` the steps advance; ``time.time`` stays real (deadlines are wall-clock times)."""
    now = [1000.0]
    monkeypatch.setattr(preemption.time, "perf_counter", lambda: now[0])
    return now


def test_checks_come_about_every_two_seconds_whatever_the_step_time(clock) -> None:
    for step_seconds, expected in ((0.05, CHECK_INTERVAL_S / 0.05), (0.5, 4), (5.0, 1)):
        watch = ScriptedWatch()
        watch._last = clock[0]
        _steps(watch, 1, step_seconds, clock)  # the first step is checked, and sets the schedule
        assert watch.every == round(expected)
        _steps(watch, 200, step_seconds, clock)
        assert watch.checks == 1 + 200 // watch.every


def test_the_notice_is_checkpointed_then_training_goes_on_until_the_deadline_is_near(clock, monkeypatch) -> None:
    watch = ScriptedWatch({2: ("node-a", 1, 30.0)})
    watch._last = clock[0]
    actions = _steps(watch, 40, 0.5, clock)  # a check every 4 steps: the notice at step 5
    assert actions.index(Action.NOTICE) == 4 and Action.FINAL not in actions
    watch.checkpoint_seconds = 3.0
    notice = watch.notice
    assert notice is not None
    clock[0] += 2.5  # an epoch's end: evaluation and its report
    assert _steps(watch, 1, 0.5, clock) == [Action.NONE]
    assert watch.longest_gap == pytest.approx(3.0)
    # The next call may be 3 s away, a checkpoint takes 3 s and up to one 2 s controller poll more, with 2 s to
    # spare: the final one from 20 s on.
    monkeypatch.setenv("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "2")
    monkeypatch.setattr(preemption.time, "time", lambda: notice.deadline - 30.0 + 19.5)
    assert _steps(watch, 1, 0.5, clock) == [Action.NONE]
    monkeypatch.setattr(preemption.time, "time", lambda: notice.deadline - 30.0 + 20.0)
    assert _steps(watch, 1, 0.5, clock) == [Action.FINAL]


def test_a_second_drain_with_a_sooner_deadline_is_not_missed(clock) -> None:
    watch = ScriptedWatch({1: ("node-a", 1, 60.0), 3: ("node-b", 2, 20.0)})
    watch._last = clock[0]
    actions = _steps(watch, 8, 0.5, clock)  # checks at steps 1, 5 (every 4 steps of 0.5 s)
    assert actions[0] is Action.NOTICE and Action.NOTICE not in actions[1:]  # one checkpoint for the notice
    assert watch.checks == 2 and watch.notice is not None and watch.notice.nodes == ("node-a",)
    _steps(watch, 4, 0.5, clock)  # the third check hears of node b, going sooner
    assert watch.notice.nodes == ("node-a", "node-b") and watch.notice.ranks == (1, 2)
    assert watch.notice.deadline == pytest.approx(time.time() + 20.0, abs=1.0)


def test_short_epochs_with_long_ends_are_still_checked_about_every_two_seconds(clock) -> None:
    """Epochs of 10 steps of 0.06 s, each followed by 1.4 s of evaluation and a report that waits for the
    controller's poll (as a tiny run's epochs on 2 CPU workers): the time between epochs counts, so the checks stay
    about 2 s apart in wall time, not 33 steps (6.6 s) apart."""
    watch = ScriptedWatch()
    watch._last = clock[0]
    for _ in range(12):
        _steps(watch, 10, 0.06, clock)
        clock[0] += 1.4
    gaps = [later - earlier for earlier, later in pairwise(watch.checked_at[2:])]  # once the schedule has settled
    assert gaps and max(gaps) <= 2 * CHECK_INTERVAL_S, gaps


def test_a_long_evaluation_brings_one_more_check_then_the_schedule_returns(clock) -> None:
    watch = ScriptedWatch()
    watch._last = clock[0]
    _steps(watch, 1, 0.5, clock)
    assert watch.every == 4
    clock[0] += 60.0  # the evaluation between epochs
    _steps(watch, watch.every, 0.5, clock)
    assert watch.every == 1  # 62 s over 4 steps: the next step is checked
    _steps(watch, 1, 0.5, clock)
    assert watch.step_seconds == pytest.approx(0.5) and watch.every == 4
