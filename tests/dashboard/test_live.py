"""The live loop's cadence: data polled every ``interval`` (never faster than once a second), redraws capped at 4 Hz,
Ctrl+C leaves cleanly."""

from __future__ import annotations

import io
import time

import pytest
from rich.console import Console

from densenet_ray.dashboard.live import REDRAWS_PER_SECOND, run_live
from densenet_ray.dashboard.snapshot import Snapshot


class CountingPoller:
    """Stands in for the sources: an empty snapshot per poll, Ctrl+C after ``polls`` of them."""

    def __init__(self, polls: int) -> None:
        self.times: list[float] = []
        self.polls = polls

    def poll(self, strict: bool = False) -> Snapshot:
        self.times.append(time.monotonic())
        if len(self.times) > self.polls:
            raise KeyboardInterrupt
        return Snapshot(time=time.time(), cluster=None, jobs=[], runs=[], sweeps=[], storage=["/x"])


@pytest.mark.slow
def test_live_view_polls_at_the_interval_and_redraws_at_most_four_times_a_second() -> None:
    output = io.StringIO()
    console = Console(file=output, force_terminal=True, width=100, height=30, color_system=None)
    poller = CountingPoller(polls=3)
    started = time.monotonic()
    assert run_live(poller, console, interval=1.0, limit=5) == 0
    elapsed = time.monotonic() - started
    gaps = [later - earlier for earlier, later in zip(poller.times, poller.times[1:], strict=False)]
    assert len(poller.times) == 4 and all(gap >= 0.95 for gap in gaps), gaps
    frames = output.getvalue().count("Ctrl+C to quit")
    assert 2 <= frames <= REDRAWS_PER_SECOND * elapsed + 2, (frames, elapsed)
    assert "\x1b[?1049h" in output.getvalue() and output.getvalue().rstrip().endswith("\x1b[?1049l")  # screen restored
