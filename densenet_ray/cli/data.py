"""``densenet-ray data``: build WebDataset shards, inspect manifests, verify every byte and image."""

from __future__ import annotations

import argparse
import functools
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from densenet_ray.cli.data_plan import add_parsers as add_plan_and_index_parsers
from densenet_ray.cli.ray_options import add_ray_arguments, ray_options
from densenet_ray.data.building.folder_layout import LAYOUTS
from densenet_ray.data.building.sources import DATASETS, Source
from densenet_ray.errors import UserError
from densenet_ray.paths import DOWNLOADS_DIR

if TYPE_CHECKING:
    from densenet_ray.data.format.manifest import Manifest


def add_parser(groups: argparse._SubParsersAction) -> None:
    """Mount ``data build``, ``data inspect``, ``data verify``, ``data plan`` and ``data index``."""
    parser = groups.add_parser("data", help="build, inspect, verify, plan and index WebDataset shards (local or s3://)")
    parser.set_defaults(handler=lambda args: parser.print_help() or 2)
    commands = parser.add_subparsers(dest="data_command", metavar="SUBCOMMAND", parser_class=type(parser))
    _add_build_parser(commands)
    inspect = commands.add_parser("inspect", help="print the manifests under a URL")
    inspect.add_argument("url", metavar="URL", help="a shard directory/prefix or a manifest .json")
    inspect.add_argument("--endpoint-url", help="S3 endpoint")
    inspect.set_defaults(handler=inspect_command)

    verify = commands.add_parser(
        "verify", help="stream every shard, check counts, SHA-256 and indexes, decode every image"
    )
    verify.add_argument("url", metavar="URL", help="a shard directory/prefix or a manifest .json")
    verify.add_argument("--split", help="verify only this split")
    verify.add_argument("--endpoint-url", help="S3 endpoint")
    verify.set_defaults(handler=verify_command)
    add_plan_and_index_parsers(commands)


def _add_build_parser(commands: argparse._SubParsersAction) -> None:
    build = commands.add_parser(
        "build",
        help="shard a dataset into equal tar shards plus a manifest",
        description="Shard a dataset into equal tar shards plus a manifest. Images in other modes become RGB; files "
        "that are not images or do not decode are skipped and counted (--verbose names each).",
    )
    build.add_argument("dataset", choices=DATASETS, metavar="DATASET", help=f"one of: {', '.join(DATASETS)}")
    build.add_argument("--out", required=True, help="output directory, file:// or s3://bucket/prefix")
    build.add_argument(
        "--source", help="local copy of the dataset (tarball, .mat directory, folder or .tar); csv: the list file"
    )
    _add_list_arguments(build)
    build.add_argument(
        "--split",
        help="split to write (cifar: train|test, svhn: train|test|extra; default train); "
        "imagefolder with split folders: the one to read (default: each)",
    )
    build.add_argument(
        "--layout",
        choices=LAYOUTS,
        default="auto",
        help="imagefolder: the top-level folders are classes or splits (train/, val/, test/ of class folders); "
        "auto decides where the names say which (default auto)",
    )
    build.add_argument("--shard-size", type=int, default=1000, help="samples per shard (default 1000)")
    build.add_argument("--parallel", type=int, default=1, help="build shard ranges in N Ray tasks")
    add_ray_arguments(build)
    build.add_argument("--stats-samples", type=int, default=50_000, help="images used for mean/std (default 50000)")
    build.add_argument(
        "--holdout-per-class",
        type=int,
        help="imagefolder: also write a 'test' split of the last N images of every class (train gets the rest)",
    )
    build.add_argument(
        "--order-seed",
        type=int,
        default=0,
        help="seed of the order samples are written in (default 0; class-sorted sources need the mix)",
    )
    build.add_argument(
        "--source-order",
        dest="order_seed",
        action="store_const",
        const=None,
        help="write samples in source order (class, then file name) instead",
    )
    build.add_argument("--cache-dir", default=DOWNLOADS_DIR, help="where downloads are kept")
    build.add_argument("--endpoint-url", help="S3 endpoint (default: AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL)")
    build.set_defaults(handler=build_command)


def _add_list_arguments(build: argparse.ArgumentParser) -> None:
    """``data build csv``'s own flags (``data/building/list_source.py``)."""
    build.add_argument("--root", help="csv: the directory or s3:// prefix the listed paths are relative to")
    build.add_argument("--path-column", default="path", help="csv: the column of image paths (default path)")
    build.add_argument("--label-column", default="label", help="csv: the column of class names (default label)")
    build.add_argument(
        "--label-separator",
        metavar="CHAR",
        help="csv: several classes per image, separated by CHAR in the label column (multi-label)",
    )
    build.add_argument(
        "--classes-from",
        metavar="URL",
        help="csv: take the class list (and its order) from this split's manifest, e.g. the training split's",
    )


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )


def build_command(args: argparse.Namespace) -> int:
    if args.parallel < 1:
        raise UserError(f"--parallel {args.parallel} must be at least 1")
    if args.shard_size < 1:
        raise UserError(f"--shard-size {args.shard_size} must be a positive number of samples")
    sources = _sources(args)
    if args.holdout_per_class:
        from densenet_ray.data.building.sources import FileListSource, split_holdout

        if not isinstance(sources[0], FileListSource):
            raise UserError("--holdout-per-class applies to imagefolder sources only")
        if len(sources) > 1:
            names = "|".join(source.split for source in sources)
            raise UserError(f"--holdout-per-class splits one folder; {args.source} has splits: pass --split {names}")
        sources = list(split_holdout(sources[0], args.holdout_per_class))
    for source in sources:
        _build_one(args, source)
    return 0


def _sources(args: argparse.Namespace) -> Sequence[Source]:
    """What ``data build`` writes: one split, or each split folder of an imagefolder given no ``--split``."""
    from densenet_ray.data.building.sources import imagefolder_sources, open_source

    if args.layout != "auto" and args.dataset != "imagefolder":
        raise UserError(f"--layout {args.layout} applies to imagefolder only, not {args.dataset}")
    if args.dataset == "csv":
        return [_list_source(args)]
    if args.dataset == "imagefolder" and args.source and not args.split:
        return imagefolder_sources(args.source, args.layout)
    return [open_source(args.dataset, args.source, args.split, args.cache_dir, args.layout)]


def _list_source(args: argparse.Namespace) -> Source:
    from densenet_ray.data.building.list_source import list_source
    from densenet_ray.data.format.manifest import load_manifest

    if not args.source or not args.root:
        raise UserError("csv needs --source (the list file) and --root (where its paths are)")
    classes = None
    if args.classes_from:
        classes = load_manifest(args.classes_from, None, args.endpoint_url)[1].classes
    columns = {"path_column": args.path_column, "label_column": args.label_column}
    return list_source(
        args.source,
        args.root,
        **columns,
        separator=args.label_separator,
        split=args.split or "train",
        classes=classes,
        endpoint_url=args.endpoint_url,
    )


def _build_one(args: argparse.Namespace, source: Source) -> None:
    from densenet_ray.data.building.build import build_dataset

    console = Console(stderr=True)
    with _progress(console) as progress:
        task = progress.add_task(f"{args.dataset}/{source.split}", total=len(source), rate="", bytes=0)
        start = time.perf_counter()

        def advance(samples: int, size: int) -> None:
            fields = progress.tasks[task].fields
            fields["bytes"] += size
            elapsed = max(time.perf_counter() - start, 1e-9)
            done = progress.tasks[task].completed + samples
            fields["rate"] = f"{done / elapsed:,.0f} samples/s {fields['bytes'] / elapsed / 1e6:.1f} MB/s"
            progress.advance(task, samples)

        options = {"shard_size": args.shard_size, "stats_samples": args.stats_samples, "progress": advance}
        options.update(endpoint_url=args.endpoint_url, order_seed=args.order_seed)
        if args.parallel > 1:
            from densenet_ray.data.building.parallel_build import build_dataset_parallel

            manifest = build_dataset_parallel(
                source, args.out, args.parallel, ray_options(args), console.print, **options
            )
        else:
            manifest = build_dataset(source, args.out, **options)
    _report_conversions(manifest, args.verbose)
    print(
        f"wrote {manifest.num_samples} samples in {len(manifest.shards)} shards "
        f"({manifest.total_bytes / 1e6:.1f} MB) and {manifest.split}.json to {args.out}"
    )


def _report_conversions(manifest: Manifest, verbose: bool) -> None:
    """One line for the images made RGB and one for the files skipped (each named with ``--verbose``)."""
    if manifest.converted:
        modes = ", ".join(f"{count} {mode}" for mode, count in manifest.converted.items())
        print(f"converted {sum(manifest.converted.values())} image(s) to RGB ({modes})")
    if manifest.skipped:
        reasons = ", ".join(f"{count} {reason}" for reason, count in manifest.skipped.items())
        hint = "" if verbose else " (--verbose names them)"
        print(f"skipped {sum(manifest.skipped.values())} file(s): {reasons}{hint}")
        for line in manifest.skipped_files if verbose else []:
            print(f"  skipped {line}")


def inspect_command(args: argparse.Namespace) -> int:
    from densenet_ray.data.format.manifest import find_manifests

    manifests = find_manifests(args.url, args.endpoint_url)
    if not manifests:
        raise UserError(f"no shard manifests at {args.url}")
    for storage, manifest in manifests:
        size = "x".join(str(v) for v in manifest.image_size) if manifest.image_size else "variable-size"
        if not manifest.image_size and manifest.short_side:
            size += " (shorter side {} / {} / {} px, min / median / max)".format(*manifest.short_side)
        print(f"{manifest.split}: {manifest.dataset}, {storage.join(manifest.split + '.json')}")
        print(
            f"  {manifest.num_classes} classes, {manifest.num_samples:,} samples in {len(manifest.shards)} shards, "
            f"{manifest.total_bytes / 1e6:,.1f} MB, {size} {manifest.image_format} images"
        )
        mean, std = (" ".join(f"{v:.4f}" for v in values) for values in (manifest.mean, manifest.std))
        print(f"  mean {mean}  std {std}  (RGB, 0-1 scale, from {manifest.stats_samples:,} images)")
        if manifest.class_counts:
            counts = ", ".join(
                f"{name} {count}" for name, count in zip(manifest.classes, manifest.class_counts, strict=True)
            )
            print(f"  {'labels' if manifest.multi_label else 'samples'} per class: {counts}"[:400])
        _report_conversions(manifest, verbose=False)
    return 0


def verify_command(args: argparse.Namespace) -> int:
    from densenet_ray.data.building.verify import verify_manifest
    from densenet_ray.data.format.manifest import select_manifests

    manifests = select_manifests(args.url, args.split, args.endpoint_url)
    console = Console(stderr=True)
    samples = shards = 0
    problems: list[str] = []
    with _progress(console) as progress:
        for storage, manifest in manifests:
            task = progress.add_task(f"verify {manifest.split}", total=len(manifest.shards), rate="")
            report = verify_manifest(storage, manifest, functools.partial(progress.advance, task))
            samples += report.samples
            shards += report.shards
            problems += report.problems
    if problems:
        for problem in problems:
            print(f"bad: {problem}")
        print(f"verification failed: {len(problems)} problem(s) in {args.url}")
        return 1
    print(f"verified {samples} samples in {shards} shards")
    return 0
