"""``densenet-ray predict MODEL IMAGE...``: the top classes of images, from a run checkpoint or an exported model."""

from __future__ import annotations

import argparse
import contextlib
import glob
import io
import json
import os
import sys
import tarfile
from collections.abc import Callable, Iterator
from typing import Any

from densenet_ray.cli.evaluate import add_model_choice
from densenet_ray.errors import UserError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm")


def add_parser(groups: argparse._SubParsersAction) -> None:
    parser = groups.add_parser("predict", help="classify images with a run checkpoint or an exported model")
    parser.add_argument("source", metavar="CHECKPOINT_OR_EXPORT", help="a run checkpoint or run directory (local or "
                        "s3://), or a file from `densenet-ray export` (with its FILE.json model card)")  # fmt: skip
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files, directories of images, globs, or "
                        "WebDataset .tar shards (their images, e.g. a test split's test-000000.tar)")  # fmt: skip
    parser.add_argument("--limit", type=int, default=0, help="predict at most N images (default 0: all)")
    parser.add_argument("--top", type=int, default=5, help="classes shown per image (default 5)")
    parser.add_argument("--batch-size", type=int, default=64, help="images per forward pass (default 64)")
    parser.add_argument("--json", action="store_true", help="one JSON object per image, a line each")
    add_model_choice(parser)
    parser.set_defaults(handler=predict_command)


def image_paths(arguments: list[str]) -> list[str]:
    """Files as given (a ``.tar`` shard as ``SHARD.tar/MEMBER`` for each image in it), a directory's image files
    (by suffix, sorted), a glob's matches; one line for what is none."""
    paths: list[str] = []
    for argument in arguments:
        if os.path.isdir(argument):
            found = sorted(entry.path for entry in os.scandir(argument) if entry.name.lower().endswith(IMAGE_SUFFIXES))
        elif os.path.isfile(argument) and argument.endswith(".tar"):
            with tarfile.open(argument) as shard:
                members = [m.name for m in shard.getmembers() if m.isfile() and m.name.lower().endswith(IMAGE_SUFFIXES)]
            found = [f"{argument}/{member}" for member in members]
        elif os.path.exists(argument):
            found = [argument]
        else:
            found = sorted(glob.glob(argument))
        if not found:
            raise UserError(f"{argument}: no such file, or a directory or glob without images")
        paths += found
    return paths


def classifier(args: argparse.Namespace) -> tuple[Callable[[Any], Any], dict[str, Any]]:
    """``run(batch) -> logits`` and the model card: an export's (beside it as FILE.json) or a checkpoint's."""
    import torch

    from densenet_ray.models.export import load_export

    card_path = f"{args.source}.json"
    if os.path.isfile(args.source) and os.path.isfile(card_path):
        with open(card_path) as handle:
            card = json.load(handle)
        network = None
        if card.get("format") == "state_dict":
            from densenet_ray.models import create_model

            options = dict(card["create_model"])
            network = create_model(options.pop("name"), **options)
        return load_export(args.source, card["format"], network), card
    from densenet_ray.train.trained import load_trained

    trained = load_trained(args.source, args.which, args.weights, args.model, args.dataset)
    return torch.no_grad()(trained.network), trained.describe()


def _batches(paths: list[str], transform: Any, size: int) -> Iterator[tuple[list[str], Any]]:
    """Transformed images in batches of ``size``; a file that is not an image gets one line on stderr."""
    import torch
    from PIL import Image, UnidentifiedImageError

    names, tensors = [], []
    archives: dict[str, tarfile.TarFile] = {}  # each shard opened once, its member index read once
    with contextlib.ExitStack() as closing:
        for path in paths:
            try:
                with Image.open(_open(path, archives, closing)) as image:
                    tensors.append(transform(image.convert("RGB")))
            except (UnidentifiedImageError, OSError) as error:
                print(f"skipped {path}: not an image ({type(error).__name__})", file=sys.stderr)
                continue
            names.append(path)
            if len(names) == size:
                yield names, torch.stack(tensors)
                names, tensors = [], []
    if names:
        yield names, torch.stack(tensors)


def _open(path: str, archives: dict[str, tarfile.TarFile], closing: contextlib.ExitStack) -> Any:
    """A file, or an image inside a ``.tar`` shard (``SHARD.tar/MEMBER``), as a readable binary file."""
    shard, tar, member = path.partition(".tar/")
    if not tar or os.path.exists(path):
        return path
    if shard not in archives:
        archives[shard] = closing.enter_context(tarfile.open(shard + ".tar"))  # noqa: SIM115 - the stack closes it
    return io.BytesIO(archives[shard].extractfile(member).read())


def predict_command(args: argparse.Namespace) -> int:
    import torch

    from densenet_ray.data.transforms import for_dataset

    if args.top < 1 or args.batch_size < 1 or args.limit < 0:
        raise UserError(f"--top {args.top} and --batch-size {args.batch_size} must be at least 1, --limit >= 0")
    paths = image_paths(args.images)[: args.limit or None]
    run, card = classifier(args)
    classes = card["classes"]
    predicted = 0
    for names, batch in _batches(paths, for_dataset(card["dataset"], train=False), args.batch_size):
        probabilities = torch.softmax(run(batch).float(), dim=1)
        top = probabilities.topk(min(args.top, len(classes)), dim=1)
        for name, values, indices in zip(names, top.values.tolist(), top.indices.tolist(), strict=True):
            ranked = [{"class": classes[i], "index": i, "probability": p} for p, i in zip(values, indices, strict=True)]
            if args.json:
                print(json.dumps({"image": name, "top": ranked}))
            else:
                print(f"{name}: " + ", ".join(f"{r['class']} {100 * r['probability']:.1f} %" for r in ranked))
            predicted += 1
    if not predicted:
        raise UserError(f"none of the {len(paths)} file(s) is an image")
    return 0
