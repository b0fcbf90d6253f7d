"""The paper's input transforms (section 4.1: crops, flips, per-channel normalisation), on ``transforms.v2``, and the
modern recipe's per-sample options (:class:`ExtraAugment`: RandAugment, TrivialAugmentWide, AutoAugment, random
erasing, all ``transforms.v2``'s).

Every transform takes a PIL RGB image and returns a float CHW tensor. ImageNet's live in ``augment``, which
``--decode gpu`` shares. Randomness comes from torch's global generator, which the pipeline seeds per sample
(``samples.decode``), so the options keep exact resume.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torchvision.transforms import v2

from densenet_ray.data.reading.augment import IMAGENET_MEAN, IMAGENET_STD, ImageNetEval, ImageNetTrain
from densenet_ray.data.reading.image_transforms import own_eval, own_train
from densenet_ray.data.reading.input_spec import InputSpec
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


@dataclass(frozen=True)
class ExtraAugment:
    """Per-sample augmentation beyond the paper's: ``policy`` (``none``, ``randaugment`` with ``ops`` operations
    of ``magnitude`` out of 30, ``trivialaugment``, ``autoaugment`` with the dataset's learned policy) before the
    pixels become floats, and random erasing with probability ``erasing`` after normalisation (erased pixels become
    0, the mean)."""

    policy: str = "none"
    ops: int = 2
    magnitude: int = 9
    erasing: float = 0.0

    def policy_transform(self, dataset: str) -> v2.Transform | None:
        if self.policy == "randaugment":
            return v2.RandAugment(num_ops=self.ops, magnitude=self.magnitude)
        if self.policy == "trivialaugment":
            return v2.TrivialAugmentWide()
        if self.policy == "autoaugment":
            learned = {"svhn": v2.AutoAugmentPolicy.SVHN, "imagenet": v2.AutoAugmentPolicy.IMAGENET}
            return v2.AutoAugment(learned.get(dataset, v2.AutoAugmentPolicy.CIFAR10))
        if self.policy != "none":
            raise UserError(
                f"unknown augmentation policy {self.policy!r}; choose randaugment, trivialaugment, autoaugment"
            )
        return None

    def around(self, dataset: str, transform: Callable[[Any], torch.Tensor]) -> Callable[[Any], torch.Tensor]:
        """``transform`` with the policy before it and random erasing after it."""
        policy = self.policy_transform(dataset)
        steps = [policy] if policy is not None else []
        steps += [transform]
        steps += [v2.RandomErasing(p=self.erasing, value=0)] if self.erasing else []
        return transform if len(steps) == 1 else v2.Compose(steps)


def imagenet_policy_train(policy: v2.Transform, size: int = 224) -> v2.Compose:
    """ImageNet training with an augmentation policy, as torchvision's reference recipe
    (``references/classification/presets.py``): random-resized crop and flip, then the policy in place of the
    colour jitter and lighting noise, then normalisation."""
    return v2.Compose(
        [
            v2.RandomResizedCrop(size, antialias=True),
            v2.RandomHorizontalFlip(),
            policy,
            *_to_float(),
            v2.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )


def eval_input(dataset: str) -> tuple[int, tuple[float, ...], tuple[float, ...]]:
    """What the evaluation transform of ``dataset`` hands a model: the square input size and the per-channel mean and
    std it normalised with (SVHN only divides by 255: mean 0, std 1)."""
    if dataset in ("cifar10", "cifar100"):
        return (32, *((CIFAR10_MEAN, CIFAR10_STD) if dataset == "cifar10" else (CIFAR100_MEAN, CIFAR100_STD)))
    if dataset == "svhn":
        return 32, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    if dataset == "imagenet":
        return 224, IMAGENET_MEAN, IMAGENET_STD
    raise UserError(f"no transforms for dataset {dataset!r}; choose cifar10, cifar100, svhn or imagenet")


def for_dataset(
    dataset: str,
    train: bool,
    augment: bool = True,
    extra: ExtraAugment | None = None,
    spec: InputSpec | None = None,
) -> Callable[[Any], torch.Tensor]:
    """The paper's transform for ``dataset`` (cifar10, cifar100, svhn, imagenet), or for your own ``images`` sized
    by ``spec``, in training or evaluation; in training with ``extra``, the modern recipe's per-sample options
    around it."""
    if dataset == "images":
        return _own_transform(spec, train, augment, extra or ExtraAugment())
    base = _paper_transform(dataset, train, augment)
    if not train or extra is None or extra == ExtraAugment():
        return base
    if dataset == "imagenet" and extra.policy != "none":
        policy = extra.policy_transform(dataset)
        assert policy is not None
        return ExtraAugment(erasing=extra.erasing).around(dataset, imagenet_policy_train(policy))
    return extra.around(dataset, base)


def _own_transform(
    spec: InputSpec | None, train: bool, augment: bool, extra: ExtraAugment
) -> Callable[[Any], torch.Tensor]:
    if spec is None:
        raise ValueError("your own images' transforms need their InputSpec")
    if not train or not augment:
        return own_eval(spec)
    base = own_train(spec, extra.policy_transform("images"))
    return v2.Compose([base, v2.RandomErasing(p=extra.erasing, value=0)]) if extra.erasing else base


def _paper_transform(dataset: str, train: bool, augment: bool) -> Callable[[Any], torch.Tensor]:
    if dataset in ("cifar10", "cifar100"):
        mean, std = (CIFAR10_MEAN, CIFAR10_STD) if dataset == "cifar10" else (CIFAR100_MEAN, CIFAR100_STD)
        return cifar_train(mean, std) if train and augment else cifar_eval(mean, std)
    if dataset == "svhn":
        return svhn()
    if dataset == "imagenet":
        return imagenet_train() if train else imagenet_eval()
    raise UserError(f"no transforms for dataset {dataset!r}; choose cifar10, cifar100, svhn or imagenet")
