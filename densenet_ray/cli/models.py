"""``densenet-ray models``: the registered DenseNets, their sizes and their structure."""

from __future__ import annotations

import argparse
import json

from rich.console import Console, JustifyMethod
from rich.table import Table


def add_parser(groups: argparse._SubParsersAction) -> None:
    """Mount ``models`` and ``models show`` on the top-level parser."""
    parser = groups.add_parser("models", help="list the registered DenseNets with parameters and multiply-adds")
    parser.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    parser.set_defaults(handler=list_command)
    commands = parser.add_subparsers(dest="models_command", metavar="SUBCOMMAND", parser_class=type(parser))
    show = commands.add_parser("show", help="print one model's structure, stage by stage")
    show.add_argument("name", metavar="NAME", help="a registered model name (see `densenet-ray models`)")
    show.add_argument("--num-classes", type=int, default=None, help="classifier outputs (default: the model's)")
    show.add_argument("--memory-efficient", action="store_true", help="build the memory-efficient variant")
    show.add_argument("--json", action="store_true", help="print JSON instead of a table")
    show.set_defaults(handler=show_command)


def model_rows() -> list[dict]:
    """One dictionary per registered model: name, form, depth, k, classes, params, macs and the rest of its config."""
    from densenet_ray.models import get_entry, list_models, profile_model  # PyTorch: only when the command runs

    rows = []
    for name in list_models():
        entry = get_entry(name)
        config = entry.config
        profile = profile_model(config)
        rows.append(
            {
                "name": name,
                "description": entry.description,
                "form": config.form,
                "depth": config.depth,
                "growth_rate": config.growth_rate,
                "bottleneck": config.bottleneck,
                "reduction": config.reduction,
                "blocks": list(config.blocks()),
                "stem_channels": config.initial_channels,
                "num_classes": config.classes,
                "resolution": profile.resolution,
                "params": profile.params,
                "macs": profile.macs,
            }
        )
    return rows


def format_macs(macs: int) -> str:
    """Multiply-adds as ``287.9 M`` or ``2.834 G``."""
    return f"{macs / 1e9:.3f} G" if macs >= 1e9 else f"{macs / 1e6:.1f} M"


def list_command(args: argparse.Namespace) -> int:
    rows = model_rows()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    table = Table(title="Registered DenseNets (multiply-adds per image at native resolution)", box=None, pad_edge=False)
    columns: list[tuple[str, JustifyMethod]] = [
        ("name", "left"),
        ("form", "left"),
        ("depth", "right"),
        ("k", "right"),
        ("classes", "right"),
        ("params", "right"),
        ("MACs", "right"),
    ]
    for column, justify in columns:
        width = {"params": 10, "MACs": 8}.get(column, len(column))
        table.add_column(column, justify=justify, no_wrap=True, min_width=width)
    for row in rows:
        table.add_row(
            row["name"],
            row["form"],
            str(row["depth"]),
            str(row["growth_rate"]),
            str(row["num_classes"]),
            f"{row['params']:,}",
            format_macs(row["macs"]),
        )
    Console().print(table)
    return 0


def show_command(args: argparse.Namespace) -> int:
    from densenet_ray.models import get_entry, profile_model, resolve_config

    entry = get_entry(args.name)
    config = resolve_config(args.name, num_classes=args.num_classes, memory_efficient=args.memory_efficient or None)
    profile = profile_model(config)
    if args.json:
        stages = [stage.__dict__ for stage in profile.stages]
        print(json.dumps({"name": args.name, "params": profile.params, "macs": profile.macs, "stages": stages}))
        return 0
    console = Console()
    variant = "DenseNet-BC" if config.bottleneck and config.reduction < 1 else "DenseNet"
    console.print(f"[bold]{args.name}[/bold]: {entry.description}")
    console.print(
        f"{variant}, {config.form} form, depth {config.depth}, growth rate k={config.growth_rate}, "
        f"blocks {'-'.join(str(n) for n in config.blocks())}, compression {config.reduction}, "
        f"stem {config.initial_channels} channels, dropout {config.drop_rate}, {config.classes} classes, "
        f"memory-efficient {'on' if config.memory_efficient else 'off'}"
    )
    table = Table(box=None, pad_edge=False)
    for column in ("stage", "layers", "in", "out", "output size", "params", "MACs"):
        table.add_column(column, justify="left" if column == "stage" else "right")
    for stage in profile.stages:
        size = f"{stage.resolution}x{stage.resolution}"
        table.add_row(
            stage.name,
            str(stage.layers),
            str(stage.in_channels),
            str(stage.out_channels),
            size,
            f"{stage.params:,}",
            format_macs(stage.macs),
        )
    table.add_row("total", "", "", "", "", f"{profile.params:,}", format_macs(profile.macs), style="bold")
    console.print(table)
    console.print(f"multiply-adds counted for one {profile.resolution}x{profile.resolution} image (conv and linear)")
    return 0
