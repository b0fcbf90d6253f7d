"""``densenet-ray export CHECKPOINT --out FILE``: a trained model as a file other tools load, with its model card."""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from densenet_ray.cli.evaluate import add_model_choice
from densenet_ray.models.formats import FORMATS, SUFFIXES

TOLERANCE = 1e-4  # the exported file's logits against PyTorch's, fp32


def add_parser(groups: argparse._SubParsersAction) -> None:
    parser = groups.add_parser(
        "export",
        help="write a trained model as a state_dict, safetensors, TorchScript, exported program or ONNX file, with a "
        "JSON model card beside it",
    )
    parser.add_argument(
        "checkpoint",
        metavar="CHECKPOINT",
        help="a run checkpoint, a run directory (see --which), or a torchvision-format state_dict; local or s3://",
    )
    parser.add_argument(
        "--out",
        required=True,
        metavar="FILE",
        help="the file to write; FILE.json gets the model card (model, classes, input size, normalisation, source)",
    )
    parser.add_argument(
        "--format",
        choices=FORMATS,
        help="default: from FILE's suffix (.pth state_dict, .safetensors safetensors, .pt torchscript, .pt2 "
        "exported-program, .onnx onnx), else state_dict",
    )
    add_model_choice(parser)
    parser.set_defaults(handler=export_command)


def export_format(out: str, chosen: str | None) -> str:
    if chosen:
        return chosen
    suffix = os.path.splitext(out)[1]
    return next((name for name, known in SUFFIXES.items() if known == suffix), "state_dict")


def safetensors_metadata(card: dict[str, Any]) -> dict[str, str]:
    """The model card's fields as a safetensors header takes them (strings: JSON for all but strings), with
    ``format: pt``, which Hugging Face's loaders look for."""
    fields = {key: value if isinstance(value, str) else json.dumps(value) for key, value in card.items()}
    return {**fields, "format": "pt"}


def export_command(args: argparse.Namespace) -> int:
    import torch

    from densenet_ray.models.export import check_export, export_model
    from densenet_ray.paths import atomic_path
    from densenet_ray.train.checkpoint.trained import load_trained

    file_format = export_format(args.out, args.format)
    trained = load_trained(args.checkpoint, args.which, args.weights, args.model, args.dataset)
    size = trained.input_size
    example = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    export_model(trained.network, example, args.out, file_format, safetensors_metadata(trained.describe()))
    difference = check_export(trained.network, example, args.out, file_format)
    if difference > TOLERANCE:  # our export is wrong, not the user's input: a bug, with its traceback
        os.remove(args.out)
        raise RuntimeError(f"the {file_format} export's logits differ from PyTorch's by {difference:.2e}")
    card = {**trained.describe(), "format": file_format, "file": os.path.basename(args.out)}
    card["max_abs_difference"] = difference
    with atomic_path(f"{args.out}.json") as partial, open(partial, "w") as handle:
        json.dump(card, handle, indent=2)
    megabytes = os.path.getsize(args.out) / 2**20
    print(
        f"exported {trained.name} ({trained.weights} weights of {trained.source}) to {args.out} ({file_format}, "
        f"{megabytes:.1f} MB; logits within {difference:.1e} of PyTorch's); model card {args.out}.json"
    )
    return 0
