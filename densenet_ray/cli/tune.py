"""``densenet-ray tune wide|deep|growth|custom|show``: sweeps of training runs on Ray Tune, and their tables."""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict

from rich.console import Console

from densenet_ray.cli.output import make_console
from densenet_ray.cli.ray_options import add_ray_arguments, ray_options
from densenet_ray.cli.train_options import add_training_options
from densenet_ray.errors import UserError
from densenet_ray.paths import SWEEPS_ROOT, absolute_location
from densenet_ray.train.config.options import training_options
from densenet_ray.tune import report

SWEEP_DATASETS = ("cifar10", "cifar100", "svhn", "images")


def shared_training_options() -> tuple[str, ...]:
    """The training options a sweep takes as flags and passes to every trial: all but those the sweep sets for
    each trial itself, the workers (``--workers-per-trial`` gives them) and those of datasets sweeps do not train."""
    return tuple(
        option.name
        for option in training_options()
        if option.declaration.sweep != "owned"
        and option.name not in ("workers", "min_workers")
        and (not option.declaration.datasets or set(option.declaration.datasets) & set(SWEEP_DATASETS))
    )


def _sweep_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--workers-per-trial", dest="workers", type=int, help="Ray Train workers of each trial (default 1)"
    )
    parser.add_argument("--scheduler", choices=("fifo", "asha"), help="default fifo (asha stops weak trials early)")
    parser.add_argument("--grace-period", type=int, help="ASHA: epochs before a trial may be stopped (default 1)")
    parser.add_argument("--reduction-factor", type=int, help="ASHA: keep 1 in this many at each rung (default 2)")
    parser.add_argument("--storage", help=f"where sweeps live: a local path (default {SWEEPS_ROOT}) or s3://")
    parser.add_argument("--name", help="sweep name; the same name resumes the sweep")
    parser.add_argument("--max-concurrent", type=int, help="at most this many trials at once (default: what fits)")
    parser.add_argument("--plot", metavar="FILE.png", help="also draw error vs time and vs memory (needs matplotlib)")
    add_training_options(parser, shared_training_options(), choices={"dataset": SWEEP_DATASETS})
    add_ray_arguments(parser)


def add_parser(groups: argparse._SubParsersAction) -> None:
    """Mount ``tune wide|deep|growth|custom|show``."""
    from densenet_ray.tune.sweeps import NAMED_SWEEPS

    parser = groups.add_parser("tune", help="sweeps on Ray Tune: the paper's studies or your own space")
    parser.set_defaults(handler=lambda args: parser.print_help() or 2)
    commands = parser.add_subparsers(dest="tune_command", metavar="SWEEP", parser_class=type(parser))
    for kind, (description, _) in NAMED_SWEEPS.items():
        named = commands.add_parser(kind, help=description, description=f"Sweep: {description}.")
        _sweep_arguments(named)
        named.set_defaults(handler=run_command, kind=kind, space=None)
    custom = commands.add_parser("custom", help="grid or random search over any training option (a YAML space)")
    custom.add_argument("--space", required=True, metavar="FILE.yaml", help="the search space (see jobs/)")
    _sweep_arguments(custom)
    custom.set_defaults(handler=run_command, kind="custom")
    show = commands.add_parser("show", help="reprint a sweep's table from storage (no cluster needed)")
    show.add_argument("sweep", metavar="NAME|PATH", help="a sweep name under --storage, or its directory or URL")
    show.add_argument("--storage", help=f"where sweeps live (default {SWEEPS_ROOT})")
    show.add_argument("--plot", metavar="FILE.png", help="also draw error vs time and vs memory (needs matplotlib)")
    show.add_argument("--json", action="store_true", help="print the rows as JSON")
    show.set_defaults(handler=show_command)


def run_command(args: argparse.Namespace) -> int:
    from densenet_ray.api.sweeps import sweep

    options = {name: getattr(args, name) for name in ("workers", *shared_training_options())}
    options = {name: value for name, value in options.items() if value is not None}
    if args.storage:
        options["storage"] = args.storage
    console = make_console()
    ray = ray_options(args)
    result = sweep(
        args.kind,
        space=args.space,
        name=args.name,
        scheduler=args.scheduler,
        grace_period=args.grace_period,
        reduction_factor=args.reduction_factor,
        max_concurrent=args.max_concurrent,
        local=ray.local,
        verbose=ray.verbose,
        print_line=console.print,
        console=console,
        **options,
    )
    _print_table(console, result.rows, _title(result.experiment), args.plot)
    console.print(f"saved {report.RESULTS_CSV} and {report.RESULTS_JSON} in {result.experiment}")
    for row in result.failed:
        print(f"trial {row.trial} ({row.label}) failed: {row.cause}", file=sys.stderr)
    if result.failed:
        print(f"error: {len(result.failed)} of {len(result.rows)} trials failed", file=sys.stderr)
    return 1 if result.failed else 0


def _title(experiment: str) -> str:
    return f"sweep {experiment.split('?')[0].rstrip('/').rsplit('/', 1)[-1]}"


def _print_table(console: Console, rows: list, title: str, plot_path: str | None) -> None:
    console.print(report.render(rows, title))
    console.print(report.summary_text(rows))
    if plot_path:
        report.plot(rows, plot_path, title)
        console.print(f"plot written to {plot_path}")


def resolve_experiment(sweep: str, storage: str | None) -> str:
    """A sweep given by name (under ``storage``) or by its directory or URL."""
    from densenet_ray.data.storage import child_url

    if "://" in sweep or os.path.isdir(sweep):
        return sweep if "://" in sweep else os.path.abspath(sweep)
    root = storage or SWEEPS_ROOT
    return child_url(absolute_location(root), sweep)


def show_command(args: argparse.Namespace) -> int:
    experiment = resolve_experiment(args.sweep, args.storage)
    saved = report.load_saved(experiment)
    title = _title(experiment)
    if saved is not None:
        rows = saved[1]
    else:  # running or interrupted: build the table from the trials' own files
        description = report.read_sweep(experiment)
        if not description:
            raise UserError(f"no sweep at {experiment} (give a sweep name under --storage, or its directory)")
        rows = report.collect(experiment, description.get("baseline"), description.get("searched"))
        title += " (not finished)"
    if args.json:
        print(json.dumps([asdict(row) for row in rows], default=float))
        return 0
    _print_table(make_console(), rows, title, args.plot)
    return 0
