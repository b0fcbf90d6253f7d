"""A sweep's progress in a terminal: a rich bar of the trials done out of all of them, under the trials' epoch
lines. Off a terminal the lines print as they are. Module state, because Tune runs its callbacks in this process
but unpickles them from the experiment (a restored sweep gets the stored callback, not a new one)."""

from __future__ import annotations

import math
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

_STATE: dict[str, Any] = {"bar": None, "task": None}


def expected_trials(grid: list[dict[str, Any]], space: dict[str, Any], num_samples: int) -> int:
    """How many trials a sweep makes: its grid, or its space's grid options crossed, times ``num_samples``."""
    if grid:
        return len(grid) * num_samples
    return num_samples * math.prod(len(d.values) for d in space.values() if d.kind == "grid")


def start(console: Console | None, total: int) -> None:
    """Show the bar on ``console`` when it is a terminal (else nothing: the lines are the progress)."""
    if console is None or not console.is_terminal:
        return
    bar = Progress(
        TextColumn("[bold]trials"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("elapsed"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )
    _STATE.update(bar=bar, task=bar.add_task("", total=total))
    bar.start()


def say(line: str) -> None:
    """A line above the bar, or printed as it is."""
    bar = _STATE["bar"]
    if bar is None:
        print(line, flush=True)
    else:
        bar.console.print(line, markup=False, highlight=False)


def trials_done(done: int, total: int) -> None:
    bar = _STATE["bar"]
    if bar is not None:
        bar.update(_STATE["task"], completed=done, total=max(total, done))


def stop() -> None:
    bar = _STATE["bar"]
    if bar is not None:
        bar.stop()
    _STATE.update(bar=None, task=None)
