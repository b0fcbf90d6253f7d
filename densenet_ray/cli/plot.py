"""``densenet-ray plot RUN... --out curves.png``: training loss and test error per epoch of one or more runs."""

from __future__ import annotations

import argparse
import os
from typing import TYPE_CHECKING, Any

from densenet_ray.errors import UserError
from densenet_ray.paths import RUNS_ROOT, absolute_location

if TYPE_CHECKING:
    from densenet_ray.train.run.directory import EpochRecord


def add_parser(groups: argparse._SubParsersAction) -> None:
    parser = groups.add_parser("plot", help="draw runs' training loss and test error per epoch (needs [plot])")
    parser.add_argument(
        "runs", nargs="+", metavar="RUN", help=f"a run directory, an s3:// run URL, or a run name under {RUNS_ROOT}"
    )
    parser.add_argument(
        "--out", default="curves.png", help="the picture to write: .png, .pdf or .svg (default curves.png)"
    )
    parser.set_defaults(handler=plot_command)


def run_location(run: str) -> str:
    """A run given as a URL, a directory, or a name under the default runs root, as its absolute location."""
    if "://" in run or os.path.isdir(os.path.expanduser(run)):
        return absolute_location(run)
    named = os.path.join(RUNS_ROOT, run)
    if os.sep not in run and os.path.isdir(named):
        return named
    raise UserError(f"run {run!r} not found: give a run directory, an s3:// run URL, or a run name under {RUNS_ROOT}")


def plot_command(args: argparse.Namespace) -> int:
    from densenet_ray.plotting import pyplot, save_figure
    from densenet_ray.train.run.directory import RunDirectory

    plt = pyplot("densenet-ray plot")  # before reading anything: a missing extra is the first thing to say
    curves = []
    for run in args.runs:
        location = run_location(run)
        records, _ = RunDirectory(location).metrics()
        if not records:
            raise UserError(f"run {run!r} has no finished epoch yet ({location}/metrics.jsonl)")
        curves.append((os.path.basename(location.split("?")[0].rstrip("/")), records))
    figure = draw_curves(plt, curves)
    save_figure(figure, args.out)
    plt.close(figure)
    print(f"wrote {args.out} ({len(curves)} run{'s' if len(curves) > 1 else ''})")
    return 0


def draw_curves(plt: Any, curves: list[tuple[str, list[EpochRecord]]]) -> Any:
    """A figure of two panels, training loss and test error (%) per epoch, one colour per run; a run's moving
    average of the weights (``--ema``) is dashed beside its raw weights."""
    from matplotlib.ticker import MaxNLocator

    figure, (loss_axis, error_axis) = plt.subplots(1, 2, figsize=(11, 4.5))
    for label, records in curves:
        epochs = [record.epoch for record in records]
        (line,) = loss_axis.plot(epochs, [record.loss for record in records], marker="o", label=label)
        colour = line.get_color()
        error_axis.plot(epochs, [100 * (r.test_error or 0) for r in records], marker="o", color=colour, label=label)
        average = [(r.epoch, 100 * r.ema_test_error) for r in records if r.ema_test_error is not None]
        if average:
            error_axis.plot(*zip(*average, strict=True), linestyle="--", color=colour, label=f"{label} (EMA)")
    for axis, label in ((loss_axis, "training loss"), (error_axis, "test error (%)")):
        axis.set_xlabel("epoch")
        axis.set_ylabel(label)
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    figure.tight_layout()
    return figure
