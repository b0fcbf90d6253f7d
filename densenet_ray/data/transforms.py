"""The paper's input transforms (section 4.1: crops, flips, per-channel normalisation), on ``transforms.v2``.

Every transform takes a PIL RGB image and returns a float CHW tensor.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torchvision.transforms import v2

from densenet_ray.errors import UserError

# Per-channel statistics on the [0, 1] scale, as the original code uses them (DN-data).
CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4824, 0.4467), (0.2471, 0.2435, 0.2616)
CIFAR100_MEAN, CIFAR100_STD = (0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
# fb.resnet.torch's PCA lighting noise (AlexNet style): eigenvalues and eigenvectors (rows) of ImageNet RGB.
IMAGENET_EIGVAL = (0.2175, 0.0188, 0.0045)
IMAGENET_EIGVEC = ((-0.5675, 0.7192, 0.4009), (-0.5808, -0.0045, -0.8140), (-0.5836, -0.6948, 0.4203))


class Lighting(torch.nn.Module):
    """PCA lighting noise: adds ``eigvec @ (alpha * eigval)`` to every pixel, alpha ~ N(0, ``std``) per image.

    Applied on the [0, 1] scale before normalisation, as in the original code.
    """

    def __init__(
        self,
        std: float = 0.1,
        eigval: Sequence[float] = IMAGENET_EIGVAL,
        eigvec: Sequence[Sequence[float]] = IMAGENET_EIGVEC,
    ) -> None:
        super().__init__()
        self.std = std
        self.register_buffer("eigval", torch.tensor(eigval, dtype=torch.float32))
        self.register_buffer("eigvec", torch.tensor(eigvec, dtype=torch.float32))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        if self.std == 0:
            return image
        alpha = torch.randn(3) * self.std
        offset = self.eigvec @ (alpha * self.eigval)
        return image + offset.view(3, 1, 1)


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


def imagenet_train(size: int = 224) -> v2.Compose:
    """fb.resnet.torch's training augmentation: random-sized crop, colour jitter, lighting, normalise, flip."""
    return v2.Compose(
        [
            v2.ToImage(),
            v2.RandomResizedCrop(size, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), antialias=True),
            v2.ToDtype(torch.float32, scale=True),
            v2.RandomOrder(
                [v2.ColorJitter(brightness=0.4), v2.ColorJitter(contrast=0.4), v2.ColorJitter(saturation=0.4)]
            ),
            Lighting(0.1),
            v2.Normalize(IMAGENET_MEAN, IMAGENET_STD),
            v2.RandomHorizontalFlip(),
        ]
    )


def imagenet_eval(size: int = 224, resize: int = 256) -> v2.Compose:
    """Resize the short side to 256, center-crop 224, normalise."""
    return v2.Compose(
        [
            v2.ToImage(),
            v2.Resize(resize, antialias=True),
            v2.CenterCrop(size),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )


def for_dataset(dataset: str, train: bool, augment: bool = True) -> v2.Compose:
    """The paper's transform for ``dataset`` (cifar10, cifar100, svhn, imagenet) in training or evaluation."""
    if dataset in ("cifar10", "cifar100"):
        mean, std = (CIFAR10_MEAN, CIFAR10_STD) if dataset == "cifar10" else (CIFAR100_MEAN, CIFAR100_STD)
        return cifar_train(mean, std) if train and augment else cifar_eval(mean, std)
    if dataset == "svhn":
        return svhn()
    if dataset == "imagenet":
        return imagenet_train() if train else imagenet_eval()
    raise UserError(f"no transforms for dataset {dataset!r}; choose cifar10, cifar100, svhn or imagenet")
