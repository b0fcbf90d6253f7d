"""The preemption watch's schedule in one process: how often it asks Ray for the notice, and when the final
checkpoint comes (Ray's collective is replaced by a scripted answer; the cluster test drains a real node)."""

from __future__ import annotations

import time

import pytest
import torch

from densenet_ray.train import preemption
from densenet_ray.train.preemption import CHECK_INTERVAL_S, Action, Notice, PreemptionWatch


class ScriptedWatch(PreemptionWatch):
    """A watch whose check answers from a script, counting the checks (Ray's call needs a Train worker)."""

    def __init__(self, notice_at_check: int | None = None, deadline_in: float = 30.0) -> None:
        super().__init__(0, 1, torch.device("cpu"))
        self.checks, self.notice_at_check, self.deadline_in = 0, notice_at_check, deadline_in

    def _check(self) -> Notice | None:
        self.checks += 1
        if self.checks == self.notice_at_check:
            return Notice(("node-a",), (1,), time.time() + self.deadline_in)
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
    watch = ScriptedWatch(notice_at_check=2, deadline_in=30.0)
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
    assert watch.checks == 2  # after the notice Ray is not asked again


def test_new_epoch_leaves_the_evaluation_out_of_the_step_time(clock) -> None:
    watch = ScriptedWatch()
    watch._last = clock[0]
    _steps(watch, 1, 0.5, clock)
    clock[0] += 60.0  # the evaluation between epochs
    watch.new_epoch()
    _steps(watch, watch.every, 0.5, clock)
    assert watch.step_seconds == pytest.approx(0.5) and watch.every == 4
