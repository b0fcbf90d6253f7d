"""What the training data is, read from its manifest once on the driver: your own images' classes, statistics and
sizes (``train images``), and whether shards fit the paper's dataset a run names (``train cifar|imagenet``)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from densenet_ray.data.format.manifest import Manifest, load_manifest
from densenet_ray.data.reading.input_spec import DEFAULT_CROP_PCT, SMALL_IMAGE, default_size
from densenet_ray.errors import UserError
from densenet_ray.train.config.choices import NUM_CLASSES
from densenet_ray.train.config.options import TrainConfig

SMALL_MODEL, LARGE_MODEL = "densenet_bc100_k12", "densenet121"  # the CIFAR form, the ImageNet form
# The shortest shorter side each paper dataset's transforms take without upscaling every image.
PAPER_SIDE = {"cifar10": 32, "cifar100": 32, "svhn": 32, "imagenet": 224}


@dataclass(frozen=True)
class OwnImages:
    """What a run on your own images takes from the training split's manifest."""

    classes: list[str]
    mean: list[float]
    std: list[float]
    multi_label: bool
    loss_weights: list[float]


def _sides(manifest: Manifest) -> tuple[int, int] | None:
    """``(typical, largest)`` shorter side of the images, or None when the manifest does not say."""
    if manifest.image_size:
        return min(manifest.image_size), min(manifest.image_size)
    if manifest.short_side:
        return manifest.short_side[1], manifest.short_side[2]
    return None


def own_images(options: TrainConfig) -> tuple[TrainConfig, OwnImages]:
    """``options`` with the crop size, evaluation crop and model a ``train images`` run defaults to, and the
    classes and statistics of its data. One-line errors for data a classifier cannot be trained on."""
    assert options.data, "resolve() requires --data for your own images"
    _, manifest = load_manifest(options.data, "train")
    if manifest.num_classes < 2:
        raise UserError(f"--data {options.data} has {manifest.num_classes} class; a classifier needs at least two")
    sides = _sides(manifest)
    size = options.image_size or default_size(sides[0] if sides else 224)
    if sides and size > sides[1]:
        raise UserError(
            f"--image-size {size} is larger than the images at {options.data} allow (their shorter side is at most "
            f"{sides[1]} pixels); choose --image-size {sides[1]} or less"
        )
    model = options.model or (SMALL_MODEL if size <= SMALL_IMAGE else LARGE_MODEL)
    crop_pct = options.crop_pct or DEFAULT_CROP_PCT
    filled = dataclasses.replace(options, image_size=size, crop_pct=crop_pct, model=model)
    weights = _loss_weights(options, manifest)
    own = OwnImages(list(manifest.classes), list(manifest.mean), list(manifest.std), manifest.multi_label, weights)
    return filled, own


def _loss_weights(options: TrainConfig, manifest: Manifest) -> list[float]:
    """``--class-weights balanced``: N / (C x n_c) per class (the rule scikit-learn's ``compute_class_weight``
    documents); ``--pos-weight balanced``: (N - n_c) / n_c, the ratio ``BCEWithLogitsLoss``'s documentation gives.
    Empty: every class weighs the same. Also refuses the options multi-label data cannot train with."""
    multi, data = manifest.multi_label, options.data
    if multi and options.class_weights != "none":
        raise UserError(f"--data {data} is multi-label: weigh its classes with --pos-weight, not --class-weights")
    if not multi and options.pos_weight != "none":
        raise UserError(f"--pos-weight weighs multi-label data's positives; --data {data} has one label per image")
    if multi and (options.mixup or options.cutmix or options.label_smoothing):
        raise UserError(
            f"--data {data} is multi-label: --mixup, --cutmix and --label-smoothing take one class an image"
        )
    if "balanced" not in (options.class_weights, options.pos_weight):
        return []
    counts, total = manifest.class_counts, manifest.num_samples
    if len(counts) != manifest.num_classes or not all(counts):
        raise UserError(f"--data {data}: its manifest has no class counts; rebuild it with `densenet-ray data build`")
    if multi:
        return [(total - count) / count for count in counts]
    return [total / (len(counts) * count) for count in counts]


def check_family(options: TrainConfig, manifest: Manifest) -> None:
    """Refuse shards a paper dataset's model and transforms do not fit (another class count, other image sizes),
    naming the family that trains them."""
    dataset = options.dataset
    if dataset not in NUM_CLASSES:
        return
    sides = _sides(manifest)
    classes_fit = manifest.num_classes == NUM_CLASSES[dataset]
    size_fits = sides is None or (sides[1] >= PAPER_SIDE[dataset] if dataset == "imagenet" else sides == (32, 32))
    if classes_fit and size_fits:
        return
    size = "x".join(map(str, manifest.image_size)) if manifest.image_size else "variable-size"
    side = PAPER_SIDE[dataset]
    needs = f"{side}x{side}" if dataset != "imagenet" else f"at least {side}-pixel"
    raise UserError(
        f"--data {options.data} holds {manifest.num_classes} classes of {size} images; {dataset} training takes "
        f"{NUM_CLASSES[dataset]} classes of {needs} images: train them with `densenet-ray train images`"
    )
