"""The data: which dataset, where its shards are, how they are read and fed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from densenet_ray.train.config.choices import EVAL_SPLIT, Dataset, Decoder
from densenet_ray.train.config.declaration import Group, Range, option
from densenet_ray.train.config.groups.common import FIXED, NOT_NEGATIVE, SHARED


@dataclass(frozen=True)
class DataOptions:
    """The ``data`` group of :class:`~densenet_ray.train.config.options.TrainConfig`."""

    GROUP: ClassVar[Group] = "data"  # every field below is in config.yaml's data group

    dataset: Dataset = option("cifar10", "the dataset (its class count, transforms and defaults)", **FIXED)
    data: str | None = option(
        None,
        "shard directory or s3:// prefix (from `densenet-ray data build`)",
        **SHARED,
        default_text="~/.cache/densenet-ray/<dataset>",
    )
    eval_split: str | None = option(None, "evaluation split", **FIXED, per_dataset=EVAL_SPLIT)
    image_size: int | None = option(
        None,
        "own images: the training crop in pixels (up to 64: CIFAR's pad-and-crop; larger: random-resized crops)",
        **FIXED,
        range=Range(8),
        default_text="the images' shorter side, at most 224",
        datasets=("images",),
    )
    crop_pct: float | None = option(
        None,
        "own images over 64 pixels: evaluation resizes to image-size / crop-pct and center-crops",
        **FIXED,
        range=Range(0.0, 1.0, low_open=True),
        default_text="0.875",
        datasets=("images",),
    )
    augment: bool = option(
        True, "train without the paper's augmentation (crops and flips)", **FIXED, negative="--no-augment"
    )
    loader_workers: int = option(
        1,
        "DataLoader processes per worker decoding images (0 decodes in the training process)",
        range=NOT_NEGATIVE,
    )
    source: str | None = option(
        None,
        "without --data: build ~/.cache/densenet-ray/<dataset> from this local "
        "copy on first use (official tarball, .mat directory, or class-folder dir/tar)",
        **SHARED,
    )
    decode: Decoder = option(
        "cpu",
        "where ImageNet JPEGs are decoded and augmented: cpu (in the loader "
        "processes) or gpu (whole batches on each worker's GPU)",
        datasets=("imagenet",),
    )
