"""A sweep's bar of trials done: in a terminal a bar under the trial lines, elsewhere the lines alone."""

from __future__ import annotations

import io
import re

from rich.console import Console

from densenet_ray.tune import progress
from densenet_ray.tune.sweeps import Distribution


def test_the_expected_trials_of_a_grid_and_of_a_space() -> None:
    assert progress.expected_trials([{"depth": 40}, {"depth": 100}], {}, 3) == 6
    space = {"lr": Distribution("grid", (0.1, 0.2)), "seed": Distribution("grid", (1, 2, 3))}
    space["drop_rate"] = Distribution("uniform", (0.0, 0.2))
    assert progress.expected_trials([], space, 2) == 12


def test_a_terminal_gets_a_bar_of_trials_done(capsys) -> None:
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=100)
    progress.start(console, 4)
    try:
        progress.say("BC L=40 k=12 [t1] epoch 1/2: test error 50.00 %")
        progress.trials_done(1, 4)
        progress._STATE["bar"].refresh()
    finally:
        progress.stop()
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen.getvalue())
    assert "BC L=40 k=12 [t1] epoch 1/2: test error 50.00 %" in plain and re.search(r"trials ━+.* 1/4", plain)
    assert capsys.readouterr().out == ""


def test_off_a_terminal_the_lines_print_as_they_are(capsys) -> None:
    progress.start(Console(file=io.StringIO(), force_terminal=False), 4)
    progress.say("trial t2 failed; its log: /x")
    progress.trials_done(2, 4)
    progress.stop()
    assert capsys.readouterr().out == "trial t2 failed; its log: /x\n"
