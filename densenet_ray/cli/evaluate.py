"""``densenet-ray evaluate CHECKPOINT --data URL``: exact top-1 (and top-5) error of saved weights, in one process."""

from __future__ import annotations

import argparse
import json
from typing import Any

from densenet_ray.errors import UserError
from densenet_ray.train.config.choices import DATASETS, PRECISIONS, WEIGHTS, WHICH


def add_parser(groups: argparse._SubParsersAction) -> None:
    parser = groups.add_parser("evaluate", help="evaluate a run checkpoint or a torchvision-format state_dict")
    parser.add_argument(
        "checkpoint",
        metavar="CHECKPOINT",
        help="a run checkpoint directory, state.pt, a .pth file, or a run directory (see --which); local or s3://",
    )
    parser.add_argument("--data", help="shard directory or s3:// prefix (default: the run's)")
    parser.add_argument("--split", help="split to evaluate (default: the run's evaluation split, else test)")
    add_model_choice(parser)
    parser.add_argument("--batch-size", type=int, default=100, help="images per batch (default 100)")
    parser.add_argument("--loader-workers", type=int, default=1, help="DataLoader decoding processes (default 1)")
    parser.add_argument(
        "--precision",
        metavar="{" + ",".join(PRECISIONS) + "}",  # checked by dr.evaluate, against the option's declaration
        help="default: the run's (auto resolves for this machine, as training does); fp32 is the exact reference",
    )
    parser.add_argument(
        "--per-class",
        action="store_true",
        help="also each class's precision, recall, F1 and support, and the most frequent confusions",
    )
    parser.add_argument(
        "--plot", metavar="FILE.png", help="draw the confusion matrix (with --per-class; needs matplotlib)"
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.set_defaults(handler=evaluate_command)


def add_model_choice(parser: argparse.ArgumentParser) -> None:
    """The flags that pick a trained model: which checkpoint of a run, which weights, and, for a plain state_dict,
    which model and dataset (``evaluate``, ``export`` and ``predict`` share them)."""
    parser.add_argument(
        "--which",
        choices=WHICH,
        default="last",
        help="for a run directory: its last committed checkpoint (default) or the one with the best test error",
    )
    parser.add_argument(
        "--weights",
        choices=WEIGHTS,
        help="the moving average of the weights (ema; the default when the run trained with --ema) or the raw weights",
    )
    parser.add_argument("--model", help="model name (needed for a plain state_dict; default: the run's)")
    parser.add_argument(
        "--dataset",
        choices=DATASETS,
        help="the dataset of a plain state_dict (default: the run's, "
        "else cifar10): its class count and evaluation transform",
    )


def evaluate_command(args: argparse.Namespace) -> int:
    from densenet_ray.api.evaluation import evaluate

    result = evaluate(
        args.checkpoint,
        args.data,
        split=args.split,
        which=args.which,
        weights=args.weights,
        model=args.model,
        dataset=args.dataset,
        batch_size=args.batch_size,
        loader_workers=args.loader_workers,
        precision=args.precision,
        per_class=args.per_class or bool(args.plot),
    )
    if args.plot:
        if "confusion_matrix" not in result:
            raise UserError("--plot draws a confusion matrix, which multi-label data does not have")
        plot_confusion(result["confusion_matrix"], [row["name"] for row in result["per_class"]], args.plot)
    if args.json:
        print(json.dumps({key: value for key, value in result.items() if key not in ("model", "data")}))
    else:
        if "auroc" in result:  # multi-label
            figures = f"mean AUROC {result['auroc']:.4f}, mean AP {result['map']:.4f}, macro F1 {result['f1']:.4f}"
        else:
            figures = f"top-1 error {100 * result['top1_error']:.2f} %"
            if result["top5_error"] is not None:  # more than 5 classes
                figures += f", top-5 error {100 * result['top5_error']:.2f} %"
        print(
            f"{result['model']} ({result['weights']} weights) on {result['split']} ({result['samples']} samples): "
            f"{figures}, loss {result['loss']:.4f} ({result['precision']})"
        )
        if "per_class" in result:
            print_per_class(result)
    return 0


def print_per_class(result: dict[str, Any]) -> None:
    """Each class's row, then the most frequent confusions."""
    from rich.table import Table

    from densenet_ray.cli.output import make_console

    table = Table(box=None, pad_edge=False)
    multi = "auroc" in result
    for title in ("class", "precision", "recall", "F1", "support", *(("AUROC", "AP") if multi else ())):
        table.add_column(title, justify="left" if title == "class" else "right")
    for row in result["per_class"]:
        figures = [f"{100 * row[key]:.1f} %" for key in ("precision", "recall", "f1")]
        ranking = [("-" if row[key] is None else f"{row[key]:.4f}") for key in ("auroc", "average_precision")]
        table.add_row(row["name"], *figures, str(row["support"]), *(ranking if multi else []))
    console = make_console()
    console.print(table)
    if result.get("confusions"):
        console.print(
            "most frequent confusions (true -> predicted): "
            + ", ".join(f"{true} -> {predicted} {count}" for true, predicted, count in result["confusions"])
        )


def plot_confusion(matrix: list[list[int]], classes: list[str], path: str) -> None:
    """The confusion matrix as a heat map, true classes down, predicted across, each cell's count written in."""
    from densenet_ray.plotting import pyplot, save_figure

    plt = pyplot("--plot")
    side = max(4.0, 0.45 * len(classes) + 2)
    figure, axes = plt.subplots(figsize=(side + 1, side))
    image = axes.imshow(matrix, cmap="Blues")
    axes.set_xticks(range(len(classes)), classes, rotation=90)
    axes.set_yticks(range(len(classes)), classes)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    if len(classes) <= 30:
        top = max(max(row) for row in matrix) or 1
        for true, row in enumerate(matrix):
            for predicted, count in enumerate(row):
                colour = "white" if count > top / 2 else "black"
                axes.text(predicted, true, str(count), ha="center", va="center", color=colour, fontsize=8)
    figure.colorbar(image, ax=axes)
    figure.tight_layout()
    save_figure(figure, path)
    plt.close(figure)
