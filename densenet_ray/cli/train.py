"""``densenet-ray train cifar|imagenet|images`` and ``python -m densenet_ray.cifar|imagenet|images``: one training
run."""

from __future__ import annotations

import argparse
import functools
from typing import Any

from rich.console import Console
from rich.table import Table

from densenet_ray.cli.output import make_console
from densenet_ray.cli.ray_options import add_ray_arguments, ray_options
from densenet_ray.cli.train_options import add_training_options
from densenet_ray.train.config.choices import FAMILIES
from densenet_ray.train.config.options import TrainConfig, training_options
from densenet_ray.train.config.values import read_yaml_mapping


def add_train_arguments(parser: argparse.ArgumentParser, datasets: tuple[str, ...]) -> None:
    """Every training option (declared in :mod:`densenet_ray.train.config.options`), ``--config`` and Ray's flags."""
    parser.add_argument("--config", help="YAML file of options (flags override it)")
    add_training_options(parser, choices={"dataset": datasets})
    add_ray_arguments(parser)


def options_from_args(args: argparse.Namespace, default_dataset: str) -> TrainConfig:
    """The run's options: the ``--config`` file, then the flags given."""
    names = {option.name for option in training_options()}
    values = {key: value for key, value in vars(args).items() if key in names}
    file_values: dict[str, Any] = {}
    if args.config:
        file_values = read_yaml_mapping(args.config, "--config", "a mapping of option: value")
    file_values.setdefault("dataset", default_dataset)
    origins = (f"--config {args.config}" if args.config else "defaults", "flags")
    return TrainConfig.from_sources(file_values, values, origins=origins)


def print_summary(final: dict[str, Any], console: Console) -> None:
    table = Table(title="densenet-ray run summary", box=None, pad_edge=False, show_header=False)
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    rows = [
        *_test_rows(final),
        (
            "epochs",
            f"{final['epoch']}/{final['epochs']}" + (f" (stopped: {final['stopped']})" if "stopped" in final else ""),
        ),
        ("seconds / iteration", f"{final['seconds_per_iteration']:.3f}"),
        ("images / s", f"{final.get('steady_images_per_s') or final['images_per_s']:.1f} (last epoch, steady)"),
        ("peak memory", f"{final['peak_memory_mb']:.0f} MB"),
        ("wall time", f"{final['wall_seconds']:.1f} s"),
        ("run directory", str(final["run_dir"])),
        ("last checkpoint", str(final.get("checkpoint"))),
    ]
    for key, value in rows:
        table.add_row(key, value)
    console.print(table)


def _test_rows(final: dict[str, Any]) -> list[tuple[str, str]]:
    """The summary's test figures: errors, or for multi-label data mean AUROC, mAP and F1."""
    if "test_auroc" in final:
        figures = f"{final['test_auroc']:.4f} (mAP {final['test_map']:.4f}, macro F1 {final['test_f1']:.4f})"
        rows = [("final mean AUROC", figures), ("best mean AUROC", f"{1 - final['best_test_error']:.4f}")]
        return rows + ([("EMA mean AUROC", f"{final['ema_test_auroc']:.4f}")] if "ema_test_auroc" in final else [])
    top5 = f" (top-5 error {100 * final['test_top5_error']:.2f} %)" if "test_top5_error" in final else ""
    return [
        ("final test error", f"{100 * final['test_error']:.2f} %{top5}"),
        ("best test error", f"{100 * final['best_test_error']:.2f} %"),
        *([("EMA test error", f"{100 * final['ema_test_error']:.2f} %")] if "ema_test_error" in final else []),
    ]


def run_training(args: argparse.Namespace, default_dataset: str) -> int:
    from densenet_ray.api.training import fit

    options = options_from_args(args, default_dataset)
    console = make_console()
    ray = ray_options(args)
    result = fit(options, local=ray.local, verbose=ray.verbose, print_line=console.print, console=console)
    print_summary(result.final, console)
    return 0


def add_parser(groups: argparse._SubParsersAction) -> None:
    """Mount ``train cifar``, ``train imagenet`` and ``train images`` (:data:`FAMILIES`)."""
    parser = groups.add_parser(
        "train",
        help="train a DenseNet on Ray Train (RAY_ADDRESS, else a cluster started here, else a private instance)",
    )
    parser.set_defaults(handler=lambda args: parser.print_help() or 2)
    commands = parser.add_subparsers(dest="train_command", metavar="FAMILY", parser_class=type(parser))
    helps = {
        "cifar": "CIFAR-10, CIFAR-100 or SVHN",
        "imagenet": "ImageNet",
        "images": "your own images: classes, size and statistics from the shards' manifest",
    }
    for family, datasets in FAMILIES.items():
        command = commands.add_parser(family, help=helps[family])
        add_train_arguments(command, datasets)
        command.set_defaults(handler=functools.partial(run_training, default_dataset=datasets[0]))
