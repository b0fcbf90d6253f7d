"""The default dataset cache: ``~/.cache/densenet-ray/<dataset>``, built on first use (downloaded, or from
``--source``) when a run gives no ``--data``."""

from __future__ import annotations

import os

from densenet_ray.paths import DOWNLOADS_DIR, dataset_cache
from densenet_ray.printing import PrintLine
from densenet_ray.train.config.options import TrainConfig

HOLDOUT_PER_CLASS = 500  # a class-folder source with no test split: hold out the last 500 images of every class


def ensure_data(data: TrainConfig, print_line: PrintLine = print) -> None:
    """Build the cache the resolved options' ``data`` names when it is the default cache and lacks the train or
    evaluation split; any other location is used as it is."""
    from densenet_ray.data.building.build import build_dataset
    from densenet_ray.data.building.sources import FileListSource, imagefolder_source, open_source, split_holdout
    from densenet_ray.data.format.manifest import find_manifests

    directory = data.data
    if directory != dataset_cache(data.dataset):
        return
    # Caches written before shards were shuffled at build time (order_seed None) hold class-sorted shards: rebuild.
    found = find_manifests(directory) if os.path.isdir(directory) else []
    have = {manifest.split for _, manifest in found if manifest.order_seed is not None}
    if {"train", data.eval_split} <= have:
        return
    print_line(f"building {data.dataset} shards in {directory} (first use)")
    source = data.source or None
    try:
        parts = [open_source(data.dataset, source, split, DOWNLOADS_DIR) for split in ("train", "test")]
    except ValueError:
        if not source or data.dataset == "svhn":
            raise
        # Not the official tarball: a class-folder directory or tar (like the CIFAR-10 JPEG set), train only.
        folder = imagefolder_source(source)
        parts = list(split_holdout(folder, HOLDOUT_PER_CLASS)) if isinstance(folder, FileListSource) else [folder]
        print_line(f"{source} has no test split: holding out the last {HOLDOUT_PER_CLASS} images per class")
    for part in parts:
        manifest = build_dataset(part, directory, shard_size=1000)
        print_line(f"  {manifest.split}: {manifest.num_samples} samples in {len(manifest.shards)} shards")
