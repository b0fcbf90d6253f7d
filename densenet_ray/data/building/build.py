"""``densenet-ray data build``: a raw dataset split into equal WebDataset shards plus a manifest.

Shards hold ``shard_size`` samples each (only the last may be short). Samples are written in a permutation of
source order seeded by ``order_seed`` (recorded in the manifest), because class-folder sources are sorted by class:
written in that order, every shard would hold one or two classes, and the pipeline's shard shuffle plus a
2,000-sample buffer would still feed each rank class-skewed batches (the BatchNorm statistics then follow the
classes, and training error and test error drift apart). ``order_seed=None`` keeps source order. The manifest is
removed when a build starts and written last, so an interrupted build never leaves a manifest that points at a
missing or partial shard.
"""

from __future__ import annotations

import functools
import math
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from densenet_ray.data.building.shards import PixelStats, sample_key, shard_name, write_shard
from densenet_ray.data.building.source_base import Source
from densenet_ray.data.format.image_check import SkippedFile, check_image
from densenet_ray.data.format.manifest import Manifest, ShardInfo, manifest_name, write_manifest
from densenet_ray.data.storage import Storage, open_storage
from densenet_ray.errors import UserError
from densenet_ray.version import __version__

MAX_NAMED_SKIPS = 1000  # the manifest names this many skipped files; its counts are always whole
ProgressCallback = Callable[[int, int], None]  # (samples done in this call, bytes written in this call)


@dataclass(frozen=True)
class BuildPlan:
    """Which samples go into which shard."""

    split: str
    num_samples: int
    shard_size: int
    stats_every: int
    order_seed: int | None = 0
    check_images: bool = True  # decode each image, make it RGB, skip what is not one (False: store bytes as given)

    @property
    def num_shards(self) -> int:
        return math.ceil(self.num_samples / self.shard_size)

    def shard_indices(self, shard: int) -> list[int]:
        """The source indices of shard ``shard``, in the order they are written."""
        start = shard * self.shard_size
        positions = range(start, min(start + self.shard_size, self.num_samples))
        order = sample_order(self.num_samples, self.order_seed)
        return list(positions) if order is None else [order[position] for position in positions]


@functools.lru_cache(maxsize=4)
def sample_order(num_samples: int, seed: int | None) -> tuple[int, ...] | None:
    """The write order of a split: a seeded permutation of ``range(num_samples)``, or None for source order. The
    same in every process (parallel build tasks compute it themselves)."""
    if seed is None:
        return None
    order = list(range(num_samples))
    random.Random(seed).shuffle(order)
    return tuple(order)


def plan_build(
    source: Source, shard_size: int, stats_samples: int, order_seed: int | None = 0, check_images: bool = True
) -> BuildPlan:
    if shard_size < 1:
        raise UserError(f"--shard-size {shard_size} must be a positive number of samples")
    total = len(source)
    if total == 0:
        raise UserError(f"{source.location} has no samples for split {source.split!r}")
    stats_every = max(1, math.ceil(total / max(stats_samples, 1)))
    return BuildPlan(source.split, total, shard_size, stats_every, order_seed, check_images)


def build_shard_range(
    source: Source, storage: Storage, plan: BuildPlan, shards: range, progress: ProgressCallback | None = None
) -> tuple[list[ShardInfo], PixelStats]:
    """Write shards ``shards`` of ``plan``; returns their infos and the pixel statistics of their samples."""
    stats = PixelStats()
    infos = []
    for shard in shards:
        indices = plan.shard_indices(shard)

        def samples(indices: list[int] = indices):
            for index in indices:
                image, extension, label = source.read(index)
                if progress:
                    progress(1, len(image))
                if plan.check_images:
                    checked = check_image(image, extension)
                    if isinstance(checked, tuple):
                        stats.skipped.append(SkippedFile(source.name(index), *checked))
                        continue
                    image, extension = checked.data, checked.extension
                    if checked.converted_from:
                        stats.converted[checked.converted_from] += 1
                yield sample_key(index), image, extension, label

        infos.append(write_shard(storage, shard_name(plan.split, shard), samples(), stats, plan.stats_every))
    return infos, stats


# Writes every shard of a plan: (source, storage, plan, progress) -> (shard infos, pixel statistics).
ShardWriter = Callable[[Source, Storage, BuildPlan, "ProgressCallback | None"], tuple[list[ShardInfo], PixelStats]]


def write_all_shards(
    source: Source, storage: Storage, plan: BuildPlan, progress: ProgressCallback | None
) -> tuple[list[ShardInfo], PixelStats]:
    """The sequential :data:`ShardWriter`: every shard, in order, in this process."""
    return build_shard_range(source, storage, plan, range(plan.num_shards), progress)


def build_dataset(
    source: Source,
    out_url: str,
    shard_size: int = 1000,
    stats_samples: int = 50_000,
    progress: ProgressCallback | None = None,
    endpoint_url: str | None = None,
    order_seed: int | None = 0,
    write_shards: ShardWriter = write_all_shards,
    check_images: bool = True,
) -> Manifest:
    """Shard ``source`` into ``out_url`` and write the manifest last; returns the manifest. Samples are written in
    the permutation ``order_seed`` gives (None: source order); ``write_shards`` writes them (in Ray tasks for
    :func:`densenet_ray.data.building.parallel_build.build_dataset_parallel`). ``check_images`` decodes every image,
    makes other modes RGB and leaves out what is not an image (see ``image_check``); without it the bytes are stored as
    they are and the manifest lists those that do not decode."""
    storage = open_storage(out_url, endpoint_url)
    plan = plan_build(source, shard_size, stats_samples, order_seed, check_images)
    storage.delete(manifest_name(plan.split))  # no stale manifest may describe a half-rebuilt split
    infos, stats = write_shards(source, storage, plan, progress)
    mean, std = stats.mean_std()
    sizes = sorted(stats.sizes)
    manifest = Manifest(
        dataset=source.dataset,
        split=plan.split,
        classes=list(source.classes),
        num_samples=sum(info.samples for info in infos),
        image_size=list(sizes[0]) if len(sizes) == 1 else None,
        mean=mean,
        std=std,
        image_format=";".join(sorted(stats.formats)),
        shards=infos,
        stats_samples=stats.images,
        source=source.location,
        undecodable=sorted(stats.undecodable),
        created_by=f"densenet-ray {__version__}",
        order_seed=order_seed,
        multi_label=source.multi_label,
        class_counts=[stats.class_counts.get(label, 0) for label in range(len(source.classes))],
        short_side=stats.short_side_summary(),
        converted=dict(sorted(stats.converted.items())),
        skipped=dict(sorted(Counter(skipped.reason for skipped in stats.skipped).items())),
        skipped_files=sorted(skipped.describe() for skipped in stats.skipped)[:MAX_NAMED_SKIPS],
    )
    if source.every_class_present and min(manifest.class_counts, default=1) == 0:  # classes found in the files
        empty = manifest.classes[manifest.class_counts.index(0)]
        raise UserError(f"class {empty!r} has no readable image in {source.location}; add some or remove it")
    write_manifest(storage, manifest)
    return manifest
