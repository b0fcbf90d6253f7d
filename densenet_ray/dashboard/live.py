"""The live view: a full-screen rich ``Live`` redrawn at most 4 times a second, with the sources polled every
``interval`` seconds (at least 1; the time a poll takes is subtracted from the wait)."""

from __future__ import annotations

import threading
import time

from rich.console import Console, Group, RenderableType
from rich.text import Text

from densenet_ray.dashboard.poll import Poller
from densenet_ray.dashboard.render import render
from densenet_ray.dashboard.snapshot import Snapshot

REDRAWS_PER_SECOND = 4
MIN_INTERVAL = 1.0


class LiveView:
    """What ``Live`` draws: the latest snapshot and a footer whose clock moves on every redraw."""

    def __init__(self, snapshot: Snapshot, interval: float, limit: int) -> None:
        self.snapshot, self.interval, self.limit = snapshot, interval, limit
        self.poll_seconds = 0.0
        self.lock = threading.Lock()

    def update(self, snapshot: Snapshot, poll_seconds: float) -> None:
        with self.lock:
            self.snapshot, self.poll_seconds = snapshot, poll_seconds

    def __rich__(self) -> RenderableType:
        with self.lock:
            snapshot, poll_seconds = self.snapshot, self.poll_seconds
        age = max(time.time() - snapshot.time, 0.0)
        footer = Text(
            f"{time.strftime('%H:%M:%S')} · data {age:.0f} s old, polled every {self.interval:g} s "
            f"(last poll {poll_seconds:.2f} s) · Ctrl+C to quit",
            style="dim",
        )
        return Group(render(snapshot, self.limit), Text(""), footer)


def run_live(poller: Poller, console: Console, interval: float, limit: int) -> int:
    """Poll and redraw until Ctrl+C; returns the exit code (0). The first poll's errors propagate, one line each."""
    from rich.live import Live

    started = time.monotonic()
    view = LiveView(poller.poll(strict=True), interval, limit)
    view.poll_seconds = time.monotonic() - started
    try:
        with Live(view, console=console, refresh_per_second=REDRAWS_PER_SECOND, screen=True, transient=True):
            while True:
                time.sleep(max(interval - view.poll_seconds, 0.0))
                began = time.monotonic()
                snapshot = poller.poll()
                view.update(snapshot, time.monotonic() - began)
    except KeyboardInterrupt:
        return 0
