"""``densenet-ray train cifar|imagenet`` and ``python -m densenet_ray.cifar|imagenet``: one training run."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from rich.console import Console
from rich.table import Table

from densenet_ray.cli.output import make_console
from densenet_ray.train.config import TrainConfig, read_yaml_mapping

FLAG = {"action": "store_const", "const": True, "default": None}


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not JSON; expected an object like '{{\"fake_gpu\": 1}}'"
        ) from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"{text!r} is not a JSON object")
    return value


def add_train_arguments(parser: argparse.ArgumentParser, datasets: tuple[str, ...]) -> None:
    """Every training option; all default to None so a --config file's values are only overridden when given."""
    parser.add_argument("--config", help="YAML file of options (flags override it)")
    parser.add_argument("--dataset", choices=datasets, default=None, help=f"default {datasets[0]}")
    parser.add_argument("--data", help="shard directory or s3:// prefix (from `densenet-ray data build`)")
    parser.add_argument(
        "--source",
        help="without --data: build ~/.cache/densenet-ray/<dataset> from this local copy on first use "
        "(official tarball, .mat directory, or class-folder dir/tar) instead of downloading",
    )
    parser.add_argument("--eval-split", help="evaluation split (default test for CIFAR/SVHN, val for ImageNet)")
    model = parser.add_argument_group("model")
    model.add_argument("--model", help="registered model name (see `densenet-ray models`)")
    model.add_argument("--depth", type=int)
    model.add_argument("--growth-rate", type=int)
    model.add_argument("--bottleneck", dest="bottleneck", **FLAG)
    model.add_argument("--no-bottleneck", dest="bottleneck", action="store_const", const=False)
    model.add_argument("--reduction", type=float)
    model.add_argument("--drop-rate", type=float)
    model.add_argument("--memory-efficient", **FLAG)
    model.add_argument(
        "--init-from",
        help="start from these weights: a run checkpoint or a torchvision-format state_dict "
        "(a classifier of another class count is re-initialised)",
    )
    model.add_argument(
        "--pretrained",
        **FLAG,
        help="start from torchvision's ImageNet weights (densenet121/161/169/201; downloaded once into the torch "
        "hub cache)",
    )
    optim = parser.add_argument_group("optimisation")
    optim.add_argument("--batch-size", type=int, help="global batch size (paper: 64 CIFAR/SVHN, 256 ImageNet)")
    optim.add_argument("--epochs", type=int)
    optim.add_argument("--lr", type=float)
    optim.add_argument("--lr-schedule", choices=("step", "cosine"))
    optim.add_argument("--no-augment", dest="augment", action="store_const", const=False)
    optim.add_argument("--seed", type=int)
    run = parser.add_argument_group("execution")
    run.add_argument("--workers", type=int, help="Ray Train workers (default 2)")
    run.add_argument("--gpu", **FLAG)
    run.add_argument("--cpus-per-worker", type=int)
    run.add_argument(
        "--worker-resources",
        type=_json_object,
        metavar="JSON",
        help="custom resources each worker also needs, e.g. '{\"accelerator_type:A100\": 0.001}'",
    )
    run.add_argument("--loader-workers", type=int)
    run.add_argument("--amp", choices=("bf16", "fp16"))
    run.add_argument("--channels-last", **FLAG)
    run.add_argument("--compile", **FLAG)
    run.add_argument("--sync-bn", **FLAG)
    run.add_argument("--storage", help="run storage: a local path (default ~/densenet-ray/runs) or s3://")
    run.add_argument("--name", help="run name; the same name resumes the run")
    run.add_argument("--max-failures", type=int)
    run.add_argument("--checkpoint-every-steps", type=int)
    run.add_argument("--keep-checkpoints", type=int)
    run.add_argument("--limit-train-batches", type=int)
    run.add_argument("--limit-eval-batches", type=int)


def config_from_args(args: argparse.Namespace, default_dataset: str) -> TrainConfig:
    values = {k: v for k, v in vars(args).items() if k not in ("config", "handler", "group", "train_command")}
    file_values: dict[str, Any] = {}
    if args.config:
        file_values = read_yaml_mapping(args.config, "--config", "a mapping of option: value")
    file_values.setdefault("dataset", default_dataset)
    return TrainConfig.from_sources({k.replace("-", "_"): v for k, v in file_values.items()}, values).resolved()


def print_summary(final: dict[str, Any], console: Console) -> None:
    table = Table(title="densenet-ray run summary", box=None, pad_edge=False, show_header=False)
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    rows = [
        ("final test error", f"{100 * final['test_error']:.2f} % (top-5 {100 * final['test_top5_error']:.2f} %)"),
        ("best test error", f"{100 * final['best_test_error']:.2f} %"),
        ("epochs", f"{final['epoch']}/{final['epochs']}"),
        ("seconds / iteration", f"{final['seconds_per_iteration']:.3f}"),
        ("images / s", f"{final['images_per_s']:.1f}"),
        ("peak memory", f"{final['peak_memory_mb']:.0f} MB"),
        ("wall time", f"{final['wall_seconds']:.1f} s"),
        ("run directory", str(final["run_dir"])),
        ("last checkpoint", str(final.get("checkpoint"))),
    ]
    for key, value in rows:
        table.add_row(key, value)
    console.print(table)


def run_training(args: argparse.Namespace, default_dataset: str) -> int:
    from densenet_ray.train.launcher import launch

    config = config_from_args(args, default_dataset)
    console = make_console()
    try:
        final = launch(config, print_line=console.print)
    except Exception as error:  # Ray's TrainingFailedError and friends: one line, exit 1
        if isinstance(error, ValueError | OSError):
            raise
        print(
            f"error: training failed: {str(error).splitlines()[0] if str(error) else type(error).__name__}",
            file=sys.stderr,
        )
        return 1
    print_summary(final, console)
    return 0


def add_parser(groups: argparse._SubParsersAction) -> None:
    """Mount ``train cifar`` and ``train imagenet``."""
    parser = groups.add_parser("train", help="train a DenseNet on Ray Train (local Ray unless RAY_ADDRESS is set)")
    parser.set_defaults(handler=lambda args: parser.print_help() or 2)
    commands = parser.add_subparsers(dest="train_command", metavar="FAMILY", parser_class=type(parser))
    cifar = commands.add_parser("cifar", help="CIFAR-10, CIFAR-100 or SVHN")
    add_train_arguments(cifar, ("cifar10", "cifar100", "svhn"))
    cifar.set_defaults(handler=lambda args: run_training(args, "cifar10"))
    imagenet = commands.add_parser("imagenet", help="ImageNet")
    add_train_arguments(imagenet, ("imagenet",))
    imagenet.set_defaults(handler=lambda args: run_training(args, "imagenet"))
