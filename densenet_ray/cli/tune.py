"""``densenet-ray tune wide|deep|growth|custom|show``: sweeps of training runs on Ray Tune, and their tables."""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict
from typing import Any

from rich.console import Console

from densenet_ray.cli.output import make_console
from densenet_ray.cli.train import FLAG
from densenet_ray.tune import report

DEFAULT_SWEEPS = os.path.join(os.path.expanduser("~"), "densenet-ray", "sweeps")
# CLI flag -> TrainConfig field, for the training options every trial shares.
TRAINING_FLAGS = {
    "dataset": "dataset",
    "data": "data",
    "source": "source",
    "epochs": "epochs",
    "workers_per_trial": "workers",
    "cpus_per_worker": "cpus_per_worker",
    "gpu": "gpu",
    "batch_size": "batch_size",
    "lr": "lr",
    "lr_schedule": "lr_schedule",
    "augment": "augment",
    "seed": "seed",
    "memory_efficient": "memory_efficient",
    "loader_workers": "loader_workers",
    "amp": "amp",
    "channels_last": "channels_last",
    "compile": "compile",
    "limit_train_batches": "limit_train_batches",
    "limit_eval_batches": "limit_eval_batches",
    "keep_checkpoints": "keep_checkpoints",
}


def _sweep_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", choices=("cifar10", "cifar100", "svhn"), help="default cifar10")
    parser.add_argument("--data", help="shard directory or s3:// prefix (default: ~/.cache/densenet-ray/<dataset>)")
    parser.add_argument("--source", help="without --data: build the cache from this local copy on first use")
    parser.add_argument("--epochs", type=int, help="epochs per trial (default: the paper's, 300 on CIFAR)")
    parser.add_argument("--workers-per-trial", type=int, help="Ray Train workers of each trial (default 1)")
    parser.add_argument("--cpus-per-worker", type=int)
    parser.add_argument("--gpu", **FLAG)
    parser.add_argument("--scheduler", choices=("fifo", "asha"), help="default fifo (asha stops weak trials early)")
    parser.add_argument("--grace-period", type=int, help="ASHA: epochs before a trial may be stopped (default 1)")
    parser.add_argument("--reduction-factor", type=int, help="ASHA: keep 1 in this many at each rung (default 2)")
    parser.add_argument("--storage", help=f"where sweeps live: a local path (default {DEFAULT_SWEEPS}) or s3://")
    parser.add_argument("--name", help="sweep name; the same name resumes the sweep")
    parser.add_argument("--max-concurrent", type=int, help="at most this many trials at once (default: what fits)")
    parser.add_argument("--plot", metavar="FILE.png", help="also draw error vs time and vs memory (needs matplotlib)")
    training = parser.add_argument_group("training options shared by every trial")
    training.add_argument("--batch-size", type=int)
    training.add_argument("--lr", type=float)
    training.add_argument("--lr-schedule", choices=("step", "cosine"))
    training.add_argument("--no-augment", dest="augment", action="store_const", const=False)
    training.add_argument("--seed", type=int)
    training.add_argument("--memory-efficient", **FLAG)
    training.add_argument("--loader-workers", type=int)
    training.add_argument("--amp", choices=("bf16", "fp16"))
    training.add_argument("--channels-last", **FLAG)
    training.add_argument("--compile", **FLAG)
    training.add_argument("--limit-train-batches", type=int)
    training.add_argument("--limit-eval-batches", type=int)
    training.add_argument("--keep-checkpoints", type=int)


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
    show.add_argument("--storage", help=f"where sweeps live (default {DEFAULT_SWEEPS})")
    show.add_argument("--plot", metavar="FILE.png")
    show.add_argument("--json", action="store_true", help="print the rows as JSON")
    show.set_defaults(handler=show_command)


def _base_config(args: argparse.Namespace) -> Any:
    from densenet_ray.train.config import TrainConfig

    values = {field: getattr(args, flag) for flag, field in TRAINING_FLAGS.items() if getattr(args, flag) is not None}
    values.setdefault("workers", 1)
    values["storage"] = args.storage or DEFAULT_SWEEPS
    return TrainConfig(**values)


def run_command(args: argparse.Namespace) -> int:
    from densenet_ray.tune.runner import SweepInterrupted, run_sweep
    from densenet_ray.tune.sweeps import load_space, named_sweep

    if args.kind == "custom":
        sweep = load_space(args.space, args.scheduler)
    else:
        sweep = named_sweep(args.kind, args.scheduler or "fifo")
    if args.grace_period is not None:
        sweep.grace_period = args.grace_period
    if args.reduction_factor is not None:
        sweep.reduction_factor = args.reduction_factor
    if sweep.grace_period < 1 or sweep.reduction_factor < 2:
        raise ValueError(
            f"--grace-period {sweep.grace_period} must be >= 1 and --reduction-factor {sweep.reduction_factor} >= 2"
        )
    if args.max_concurrent is not None and args.max_concurrent < 1:
        raise ValueError(f"--max-concurrent {args.max_concurrent} must be at least 1")
    console = make_console()
    try:
        experiment, rows = run_sweep(sweep, _base_config(args), args.name, args.max_concurrent, console.print)
    except SweepInterrupted as interrupted:
        print(interrupted, file=sys.stderr)
        return 130
    _print_table(console, rows, _title(experiment), args.plot)
    console.print(f"saved {report.RESULTS_CSV} and {report.RESULTS_JSON} in {experiment}")
    return 1 if any(row.status == "error" for row in rows) else 0


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
    root = storage or DEFAULT_SWEEPS
    return child_url(root if "://" in root else os.path.abspath(os.path.expanduser(root)), sweep)


def show_command(args: argparse.Namespace) -> int:
    experiment = resolve_experiment(args.sweep, args.storage)
    saved = report.load_saved(experiment)
    title = _title(experiment)
    if saved is not None:
        rows = saved[1]
    else:  # running or interrupted: build the table from the trials' own files
        description = report.read_sweep(experiment)
        if not description:
            raise ValueError(f"no sweep at {experiment} (give a sweep name under --storage, or its directory)")
        rows = report.collect(experiment, description.get("baseline"), description.get("searched"))
        title += " (not finished)"
    if args.json:
        print(json.dumps([asdict(row) for row in rows], default=float))
        return 0
    _print_table(make_console(), rows, title, args.plot)
    return 0
