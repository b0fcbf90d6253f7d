"""One sample from stored bytes to what a loader worker ships, and batches of them.

Two forms: decoded (a float CHW tensor, transformed in the loader worker: the default, CPU decoding) and encoded
(the JPEG bytes plus the sample's augmentation parameters, for ``--decode gpu``, which decodes and augments whole
batches on the training device; see ``device_decode``). Both draw their randomness from the same per-sample seed,
so the two forms augment a given sample identically.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from densenet_ray.errors import DataError

Transform = Callable[[Any], torch.Tensor]


@dataclass
class EncodedBatch:
    """A batch of undecoded images: uint8 byte tensors (empty for masked rows) and one parameter row each."""

    data: list[torch.Tensor]
    parameters: torch.Tensor

    def pin_memory(self) -> EncodedBatch:
        """Page-locked copies, so the copy to the device can overlap (DataLoader calls this with pin_memory)."""
        return EncodedBatch([d.pin_memory() for d in self.data], self.parameters.pin_memory())

    def blank(self) -> EncodedBatch:
        """A batch of the same size with nothing in it (evaluation padding, masked out)."""
        return EncodedBatch([torch.empty(0, dtype=torch.uint8)] * len(self.data), torch.zeros_like(self.parameters))


def decode(image_bytes: bytes, transform: Transform | None, seed: int) -> torch.Tensor | None:
    """The transformed image, or None when the bytes do not decode."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(image_bytes)) as opened:
            image = opened.convert("RGB")
    except Exception:  # PIL raises many exception types for corrupt data
        return None
    if transform is None:
        from torchvision.transforms.v2 import functional as TF

        return TF.to_dtype(TF.pil_to_tensor(image), torch.float32, scale=True)
    # Per-sample augmentation randomness, independent of what was skipped before; the caller's RNG (dropout, when
    # decoding runs in the training process) is left exactly as it was.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return transform(image)


def encode(image_bytes: bytes, transform: Any, seed: int) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The bytes as a uint8 tensor and the sample's parameters, or None when the header does not parse.

    Only the header is read (for the image size the random crop needs); a file whose pixel data is corrupt is
    found when the device decodes it.
    """
    from PIL import Image

    try:
        with Image.open(io.BytesIO(image_bytes)) as opened:
            width, height = opened.size
    except Exception:
        return None
    sample = getattr(transform, "sample", None)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        parameters = sample(height, width) if sample is not None else torch.zeros(0, dtype=torch.float64)
    return torch.frombuffer(bytearray(image_bytes), dtype=torch.uint8), parameters


def check_corrupt(failures: int, seen: int, max_fraction: float) -> None:
    """Raise once more than ``max_fraction`` of the samples seen failed to decode."""
    # Judge the fraction once a few samples have been seen, so one early failure is not "100 %".
    if failures > max(1, max_fraction * max(seen, 100)):
        raise DataError(
            f"{failures} of {seen} samples failed to decode, more than the allowed {max_fraction:.1%} "
            "(run `densenet-ray data verify`)"
        )


def labelled(label: int | tuple[int, ...]) -> bool:
    """Whether a sample has a label: a class index, or a multi-label sample's tuple (empty too: no class present)."""
    return isinstance(label, tuple) or label >= 0


def empty_labels(size: int, classes: int = 0) -> torch.Tensor:
    """``size`` rows of labels: class indices, or for multi-label data (``classes`` > 0) multi-hot float rows."""
    return torch.zeros(size, classes) if classes else torch.zeros(size, dtype=torch.long)


def collate(
    batch: list[tuple[Any, Any]], size: int, skipped: int, classes: int = 0
) -> tuple[Any, torch.Tensor, torch.Tensor, int]:
    """``(images, labels, mask, skipped)`` of ``size`` rows; rows past ``batch`` or without a sample are masked.
    With ``classes``, labels are multi-hot rows over that many classes (multi-label data)."""
    template = next((t for t, _ in batch if t is not None), None)
    if template is None:
        raise DataError("a whole batch failed to decode")
    labels = empty_labels(size, classes)
    mask = torch.zeros(size, dtype=torch.bool)
    for row, (sample, label) in enumerate(batch):
        if sample is not None and labelled(label):
            if classes:
                labels[row, list(label)] = 1.0
            else:
                labels[row] = label
            mask[row] = True
    if isinstance(template, tuple):  # encoded: empty bytes in masked rows
        data = [torch.empty(0, dtype=torch.uint8)] * size
        parameters = torch.zeros(size, template[1].numel(), dtype=torch.float64)
        for row, (sample, _) in enumerate(batch):
            if mask[row]:
                data[row], parameters[row] = sample
        return EncodedBatch(data, parameters), labels, mask, skipped
    images = torch.zeros((size, *template.shape), dtype=template.dtype)
    for row, (tensor, _) in enumerate(batch):
        if mask[row]:
            images[row] = tensor
    return images, labels, mask, skipped
