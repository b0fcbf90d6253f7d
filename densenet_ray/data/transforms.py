"""The paper's input transforms (section 4.1: crops, flips, per-channel normalisation), on ``transforms.v2``.

Every transform takes a PIL RGB image and returns a float CHW tensor. ImageNet's live in ``augment``, which
``--decode gpu`` shares.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torchvision.transforms import v2

from densenet_ray.data.augment import ImageNetEval, ImageNetTrain
from densenet_ray.errors import UserError

# Per-channel statistics on the [0, 1] scale, as the original code uses them (DN-data).
CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4824, 0.4467), (0.2471, 0.2435, 0.2616)
CIFAR100_MEAN, CIFAR100_STD = (0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761)


def _to_float() -> list[v2.Transform]:
    return [v2.ToImage(), v2.ToDtype(torch.float32, scale=True)]


def cifar_train(mean: Sequence[float] = CIFAR10_MEAN, std: Sequence[float] = CIFAR10_STD) -> v2.Compose:
    """CIFAR "+" augmentation in the original code's order: normalise, flip, zero-pad 4, random 32x32 crop.

    Padding comes after normalisation, so the padded border equals the dataset mean (0 after normalising), as in
    the Torch code the paper's results come from. The more common torchvision order (pad, then normalise) pads with
    black, about -2 in normalised units; we keep the original's order to reproduce its numbers.
    """
    return v2.Compose(
        [*_to_float(), v2.Normalize(mean, std), v2.RandomHorizontalFlip(), v2.RandomCrop(32, padding=4, fill=0)]
    )


def cifar_eval(mean: Sequence[float] = CIFAR10_MEAN, std: Sequence[float] = CIFAR10_STD) -> v2.Compose:
    """CIFAR without augmentation: normalise only."""
    return v2.Compose([*_to_float(), v2.Normalize(mean, std)])


def svhn() -> v2.Compose:
    """SVHN: pixels divided by 255, no mean/std, no augmentation (paper section 4.1)."""
    return v2.Compose(_to_float())


def imagenet_train(size: int = 224) -> ImageNetTrain:
    """fb.resnet.torch's training augmentation: random-sized crop, colour jitter, lighting, normalise, flip."""
    return ImageNetTrain(size)


def imagenet_eval(size: int = 224, resize: int = 256) -> ImageNetEval:
    """Resize the short side to 256, center-crop 224, normalise."""
    return ImageNetEval(size, resize)


def for_dataset(dataset: str, train: bool, augment: bool = True) -> Callable[[Any], torch.Tensor]:
    """The paper's transform for ``dataset`` (cifar10, cifar100, svhn, imagenet) in training or evaluation."""
    if dataset in ("cifar10", "cifar100"):
        mean, std = (CIFAR10_MEAN, CIFAR10_STD) if dataset == "cifar10" else (CIFAR100_MEAN, CIFAR100_STD)
        return cifar_train(mean, std) if train and augment else cifar_eval(mean, std)
    if dataset == "svhn":
        return svhn()
    if dataset == "imagenet":
        return imagenet_train() if train else imagenet_eval()
    raise UserError(f"no transforms for dataset {dataset!r}; choose cifar10, cifar100, svhn or imagenet")
