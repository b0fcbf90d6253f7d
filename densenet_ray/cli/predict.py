"""``densenet-ray predict MODEL IMAGE...``: the top classes of images, from a run checkpoint or an exported model, in
this process; ``densenet-ray predict MODEL DATA --out DIR``: a shard set's, on the Ray cluster, into Parquet."""

from __future__ import annotations

import argparse
import json
import sys

from densenet_ray.cli.evaluate import add_model_choice
from densenet_ray.cli.ray_options import add_ray_arguments, ray_options
from densenet_ray.errors import UserError
from densenet_ray.models.formats import TRUST_PROGRAM


def add_parser(groups: argparse._SubParsersAction) -> None:
    parser = groups.add_parser("predict", help="classify images with a run checkpoint or an exported model")
    parser.add_argument(
        "source",
        metavar="CHECKPOINT_OR_EXPORT",
        help="a run checkpoint or run directory (local or "
        "s3://), or a file from `densenet-ray export` (with its FILE.json model card, or a .safetensors file, whose "
        "header holds it)",
    )
    parser.add_argument(
        "images",
        nargs="+",
        metavar="IMAGE",
        help="image files, directories of images, globs, or "
        "WebDataset .tar shards (their images, e.g. a test split's test-000000.tar)",
    )
    parser.add_argument("--limit", type=int, default=0, help="predict at most N images (default 0: all)")
    parser.add_argument("--top", type=int, default=5, help="classes shown per image (default 5)")
    parser.add_argument("--batch-size", type=int, default=64, help="images per forward pass (default 64)")
    parser.add_argument("--json", action="store_true", help="one JSON object per image, a line each")
    parser.add_argument(
        TRUST_PROGRAM,
        action="store_true",
        help="load a TorchScript (.pt) or exported-program (.pt2) export: such a file is a program that runs its "
        "maker's code, so give it only for files you trust (checkpoints and state_dicts never need it)",
    )
    add_model_choice(parser)
    cluster = parser.add_argument_group("on the cluster (with --out)")
    cluster.add_argument(
        "--out",
        metavar="DIR_OR_S3",
        help="classify the shard set DATA (a directory or s3:// prefix of shards and their manifest) on the Ray "
        "cluster with Ray Data, writing a Parquet file a shard here; a rerun skips the shards already written",
    )
    cluster.add_argument("--split", help="the shard set's split (default: its only one)")
    cluster.add_argument("--concurrency", type=int, default=1, help="actors holding the model (default 1)")
    cluster.add_argument("--gpu", action="store_true", help="one GPU per actor")
    add_ray_arguments(parser)
    parser.set_defaults(handler=predict_command)


def predict_command(args: argparse.Namespace) -> int:
    from densenet_ray.api.classifier import load
    from densenet_ray.data.reading.images import image_paths

    if args.out is not None:
        return batch_command(args)
    given = [flag for flag, value in (("--split", args.split), ("--gpu", args.gpu)) if value]
    given += ["--concurrency"] if args.concurrency != 1 else []
    if given:
        raise UserError(f"{', '.join(given)} choose how a shard set is classified on the cluster: add --out DIR")
    if args.top < 1 or args.batch_size < 1 or args.limit < 0:
        raise UserError(f"--top {args.top} and --batch-size {args.batch_size} must be at least 1, --limit >= 0")
    paths = image_paths(args.images)[: args.limit or None]
    classifier = load(args.source, args.which, args.weights, args.model, args.dataset, args.trust_program)
    index = {name: position for position, name in enumerate(classifier.classes)}
    classified = 0
    for prediction in classifier.iter_predict(paths, top=args.top, batch_size=args.batch_size):  # as they come
        classified += not prediction.error
        if prediction.error:
            print(f"skipped {prediction.image}: {prediction.error}", file=sys.stderr)
        elif args.json:
            ranked = [{"class": name, "index": index[name], "probability": p} for name, p in prediction.top]
            print(json.dumps({"image": prediction.image, "top": ranked}))
        else:
            print(f"{prediction.image}: " + ", ".join(f"{name} {100 * p:.1f} %" for name, p in prediction.top))
    if not classified:
        raise UserError(f"none of the {len(paths)} file(s) is an image")
    return 0


def batch_command(args: argparse.Namespace) -> int:
    """``predict MODEL DATA --out DIR``: :func:`densenet_ray.inference.job.run_batch`, then its figures."""
    from densenet_ray.inference.job import BatchJob, run_batch
    from densenet_ray.inference.predictor import ModelChoice

    if len(args.images) != 1:
        raise UserError(f"--out classifies one shard set; got {len(args.images)} locations: {' '.join(args.images)}")
    if args.top < 1:
        raise UserError(f"--top {args.top} must be at least 1")
    if args.limit or args.json:
        given = " and ".join(flag for flag, value in (("--limit", args.limit), ("--json", args.json)) if value)
        raise UserError(f"{given} shape what predict prints on files; with --out every image goes to Parquet")
    choice = ModelChoice(args.source, args.which, args.weights, args.model, args.dataset, args.top, args.trust_program)
    job = BatchJob(choice, args.images[0], args.out, args.split, args.batch_size, args.concurrency, args.gpu)
    summary = run_batch(job, print, ray_options(args))
    if summary.shards:
        skipped = f", {len(summary.skipped)} skipped" if summary.skipped else ""
        print(
            f"classified {summary.images} image(s) of {summary.shards} shard(s){skipped} in {summary.seconds:.1f} s: "
            f"{summary.images_per_s:.1f} images/s with {args.concurrency} actor(s); Parquet in {args.out}"
            + (f" ({summary.already} shard(s) were already there)" if summary.already else "")
        )
    return 0
