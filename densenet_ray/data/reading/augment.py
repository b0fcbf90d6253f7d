"""ImageNet augmentation as explicit per-sample parameters, applied to a batch on any device.

fb.resnet.torch's training augmentation (the paper's ImageNet recipe, section 4.1 and its reference code):
random-sized crop (8-100 % of the area, aspect 3/4-4/3) resized to 224, brightness, contrast and saturation
jitter of 0.4 in random order, PCA lighting noise, normalisation, horizontal flip.

The CPU pipeline and ``--decode gpu`` share this module, so both draw the same parameters from the same per-sample
seed and apply them with the same arithmetic: :meth:`ImageNetTrain.sample` runs where the image is read (it needs
only the image size, from the JPEG header) and :meth:`ImageNetTrain.apply` runs wherever the pixels are, on one
image or a batch. Crops use torchvision's ``RandomResizedCrop.get_params`` and ``v2.functional.resized_crop``; the
colour jitter is torchvision's ``adjust_brightness/contrast/saturation`` arithmetic with one factor per sample
(torchvision's functions take one factor per call, which on a batch would cost a kernel launch per image).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torchvision.transforms import RandomResizedCrop
from torchvision.transforms.v2 import functional as TF

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
# fb.resnet.torch's PCA lighting noise (AlexNet style): eigenvalues and eigenvectors (rows) of ImageNet RGB.
IMAGENET_EIGVAL = (0.2175, 0.0188, 0.0045)
IMAGENET_EIGVEC = ((-0.5675, 0.7192, 0.4009), (-0.5808, -0.0045, -0.8140), (-0.5836, -0.6948, 0.4203))

# Layout of one sample's parameter row.
CROP = slice(0, 4)  # top, left, height, width in source pixels
ORDER = slice(4, 7)  # the jitter applied at position 0, 1, 2 (0 brightness, 1 contrast, 2 saturation)
FACTORS = slice(7, 10)  # brightness, contrast, saturation factors
LIGHTING = slice(10, 13)  # PCA noise coefficients alpha
FLIP = 13
PARAMETERS = 14


class ImageNetTrain:
    """Training augmentation; ``transform(pil_image)`` is the CPU path, ``sample``/``apply`` the split form."""

    batched = True  # ``apply`` takes a whole batch: ``--decode gpu`` can use it

    def __init__(
        self,
        size: int = 224,
        scale: Sequence[float] = (0.08, 1.0),
        ratio: Sequence[float] = (3 / 4, 4 / 3),
        jitter: float = 0.4,
        lighting: float = 0.1,
    ) -> None:
        self.size, self.scale, self.ratio = size, list(scale), list(ratio)
        self.jitter, self.lighting = jitter, lighting
        self.eigval = torch.tensor(IMAGENET_EIGVAL)
        self.eigvec = torch.tensor(IMAGENET_EIGVEC)

    def sample(self, height: int, width: int) -> torch.Tensor:
        """One sample's parameters (a float64 row of :data:`PARAMETERS`), drawn from torch's global RNG."""
        row = torch.zeros(PARAMETERS, dtype=torch.float64)
        shape_only = torch.empty((3, height, width), device="meta")
        row[CROP] = torch.tensor(RandomResizedCrop.get_params(shape_only, self.scale, self.ratio), dtype=torch.float64)
        row[ORDER] = torch.randperm(3).double()
        row[FACTORS] = torch.empty(3).uniform_(1 - self.jitter, 1 + self.jitter).double()
        row[LIGHTING] = (torch.randn(3) * self.lighting).double()
        row[FLIP] = float(torch.rand(1).item() < 0.5)
        return row

    def apply(self, images: Sequence[torch.Tensor], parameters: torch.Tensor) -> torch.Tensor:
        """Augment uint8 CHW ``images`` (any sizes, one device) with ``parameters`` rows: a float NCHW batch.

        ``parameters`` stay on the CPU: what to skip is decided there, so a GPU batch never waits on a read-back.
        """
        crops = []
        for image, row in zip(images, parameters.tolist(), strict=True):
            top, left, height, width = (int(v) for v in row[CROP])
            crops.append(TF.resized_crop(image, top, left, height, width, [self.size, self.size], antialias=True))
        batch = torch.stack(crops).float().div_(255)
        order, factors = parameters[:, ORDER], parameters[:, FACTORS].float()
        for position in range(3):
            for jitter in range(3):
                chosen = order[:, position] == jitter
                if chosen.any():
                    # Samples that apply another jitter here get factor 1, which leaves them exactly as they are.
                    factor = torch.where(chosen, factors[:, jitter], 1.0).view(-1, 1, 1, 1)
                    batch = _JITTERS[jitter](batch, factor.to(batch.device, non_blocking=True))
        offset = (parameters[:, LIGHTING].float() * self.eigval) @ self.eigvec.T
        batch = TF.normalize(batch + offset.view(-1, 3, 1, 1).to(batch.device), IMAGENET_MEAN, IMAGENET_STD)
        flip = parameters[:, FLIP] > 0.5
        if flip.all() or not flip.any():
            return batch.flip(-1) if flip.all() else batch
        return torch.where(flip.view(-1, 1, 1, 1).to(batch.device), batch.flip(-1), batch)

    def __call__(self, image: object) -> torch.Tensor:
        tensor = _as_tensor(image)
        return self.apply([tensor], self.sample(tensor.shape[-2], tensor.shape[-1])[None])[0]


class ImageNetEval:
    """Evaluation: resize the short side to ``resize``, center-crop ``size``, normalise; one image or a batch."""

    batched = True

    def __init__(self, size: int = 224, resize: int = 256) -> None:
        self.size, self.resize = size, resize

    def apply(self, images: Sequence[torch.Tensor], parameters: torch.Tensor | None = None) -> torch.Tensor:
        """uint8 CHW ``images`` to a float NCHW batch (``parameters`` is unused: evaluation draws nothing)."""
        crops = [TF.center_crop(TF.resize(image, [self.resize], antialias=True), [self.size]) for image in images]
        return TF.normalize(torch.stack(crops).float().div_(255), IMAGENET_MEAN, IMAGENET_STD)

    def __call__(self, image: object) -> torch.Tensor:
        return self.apply([_as_tensor(image)])[0]


def _as_tensor(image: object) -> torch.Tensor:
    """A PIL image (the CPU path) or a uint8 CHW tensor, as the tensor."""
    return image if isinstance(image, torch.Tensor) else TF.pil_to_tensor(image)


def _blend(images: torch.Tensor, other: torch.Tensor | float, factor: torch.Tensor) -> torch.Tensor:
    return (images * factor + other * (1 - factor)).clamp_(0, 1)


def _brightness(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return _blend(images, 0.0, factor)


def _contrast(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    mean = TF.rgb_to_grayscale(images).mean(dim=(-3, -2, -1), keepdim=True)
    return _blend(images, mean, factor)


def _saturation(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return _blend(images, TF.rgb_to_grayscale(images), factor)


_JITTERS = (_brightness, _contrast, _saturation)
