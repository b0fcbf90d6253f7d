"""``densenet-ray data plan`` (an epoch plan's figures, from the manifest alone) and ``data index`` (sample indexes
for shards built without them)."""

from __future__ import annotations

import argparse
import json

from densenet_ray.errors import UserError


def add_parsers(commands: argparse._SubParsersAction) -> None:
    """Mount ``data plan`` and ``data index`` under ``data``."""
    plan = commands.add_parser(
        "plan", help="print how an epoch's samples split over ranks and loader workers (reads no shard)"
    )
    plan.add_argument("url", metavar="URL", help="a shard directory/prefix or a manifest .json")
    plan.add_argument("--world-size", type=int, required=True, help="training ranks (Ray Train workers)")
    plan.add_argument("--loader-workers", type=int, default=2, help="DataLoader workers per rank (default 2)")
    plan.add_argument("--batch-size", type=int, help="global batch (default: the paper's, 64 CIFAR/SVHN, else 256)")
    plan.add_argument("--epoch", type=int, default=0, help="which epoch's order (0-indexed, default 0)")
    plan.add_argument("--seed", type=int, default=0, help="the run's seed (default 0)")
    plan.add_argument("--split", default="train", help="the split to plan (default train)")
    plan.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    plan.add_argument("--endpoint-url", help="S3 endpoint")
    plan.set_defaults(handler=plan_command)

    index = commands.add_parser("index", help="write a sample index (DALI's wds2idx format) beside every shard")
    index.add_argument("url", metavar="URL", help="a shard directory/prefix or a manifest .json")
    index.add_argument("--split", help="index only this split")
    index.add_argument("--force", action="store_true", help="rewrite indexes the manifest already lists")
    index.add_argument("--endpoint-url", help="S3 endpoint")
    index.set_defaults(handler=index_command)


def plan_command(args: argparse.Namespace) -> int:
    from densenet_ray.data.format.manifest import load_manifest
    from densenet_ray.data.reading.epoch_plan import Layout, check_batch_fits, summarize
    from densenet_ray.train.config.choices import DEFAULT_BATCH

    for name in ("world_size", "batch_size"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise UserError(f"--{name.replace('_', '-')} {value} must be at least 1")
    if args.loader_workers < 0 or args.epoch < 0:
        raise UserError(f"--loader-workers {args.loader_workers} and --epoch {args.epoch} must be at least 0")
    _, manifest = load_manifest(args.url, args.split, args.endpoint_url)
    batch = args.batch_size or DEFAULT_BATCH.get(manifest.dataset, 256)
    check_batch_fits(batch, args.world_size, "--world-size")
    layout = Layout(args.world_size, args.loader_workers, batch)
    summary = summarize([shard.samples for shard in manifest.shards], layout, args.seed, args.epoch)
    if args.json:
        print(json.dumps({"split": manifest.split, "epoch": args.epoch, **summary.to_dict()}))
        return 0
    shares = sorted({layout.share(rank) for rank in range(args.world_size)})
    rows = [
        ("batches per rank", f"{summary.batches_per_rank:,} (of {'/'.join(map(str, shares))} samples a rank)"),
        ("samples per stream", f"{summary.samples_per_stream_min:,} to {summary.samples_per_stream_max:,}"),
        ("used once", f"{summary.used_once:,}"),
        ("repeated", f"{summary.repeated:,}"),
        ("left out", f"{summary.left_out:,} (a global batch is {batch:,}; the left-out samples change every epoch)"),
        ("shards read by 2+ streams", f"{summary.shards_shared:,}"),
    ]
    print(
        f"{manifest.split}: {summary.samples:,} samples in {summary.shards:,} shards; {args.world_size} rank(s) x "
        f"{layout.streams_per_rank} stream(s), global batch {batch:,}, epoch {args.epoch}"
    )
    for label, value in rows:
        print(f"  {label:<26}{value}")
    return 0


def index_command(args: argparse.Namespace) -> int:
    from densenet_ray.data.building.indexing import index_manifest
    from densenet_ray.data.format.manifest import select_manifests

    manifests = select_manifests(args.url, args.split, args.endpoint_url)
    for storage, manifest in manifests:
        written = index_manifest(storage, manifest, args.force)
        print(f"{manifest.split}: wrote {written} of {len(manifest.shards)} shard indexes at {storage.url}")
    return 0
