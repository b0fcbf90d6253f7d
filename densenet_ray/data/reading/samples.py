"""One sample from stored bytes to what a loader worker ships, and batches of them.

Two forms: decoded (a float CHW tensor, transformed in the loader worker: the default, CPU decoding) and encoded
(the JPEG bytes plus the sample's augmentation parameters, for ``--decode gpu``, which decodes and augments whole
batches on the training device; see ``device_decode``). Both draw their randomness from the same per-sample seed,
so the two forms augment a given sample identically.
"""

from __future__ import annotations

import contextlib
import io
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch

from densenet_ray.data.format.image_check import over_pixel_limit
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


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """The CPU generator seeded with ``seed`` inside, and as it was after: the same stream ``torch.manual_seed``
    starts, without its cost per call (it also seeds every accelerator and passes through dynamo's guard, about
    0.9 ms a sample on our CPUs against a few microseconds for the generator's own methods)."""
    generator = torch.default_generator
    state = generator.get_state()
    generator.manual_seed(seed)
    try:
        yield
    finally:
        generator.set_state(state)


def decode(image_bytes: bytes, transform: Transform | None, seed: int, tensors: bool = False) -> torch.Tensor | None:
    """The transformed image, or None when the bytes do not decode. The image is a PIL RGB image, or with
    ``tensors`` a uint8 CHW tensor from ``torchvision.io`` (about 1.6x faster, decode and transform, on our CPUs;
    PIL decodes what it does not read)."""
    from torchvision.transforms.v2 import functional as TF

    image = _tensor_image(image_bytes) if tensors else _pil_image(image_bytes)
    if image is None:
        return None
    if transform is None:
        return TF.to_dtype(image if tensors else TF.pil_to_tensor(image), torch.float32, scale=True)
    # Per-sample augmentation randomness, independent of what was skipped before; the caller's RNG (dropout, when
    # decoding runs in the training process) is left exactly as it was.
    with seeded(seed):
        return transform(image)


def _pil_image(image_bytes: bytes) -> Any:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(image_bytes)) as opened:
            return opened.convert("RGB")
    except Exception:  # PIL raises many exception types for corrupt data
        return None


def _tensor_image(image_bytes: bytes) -> torch.Tensor | None:
    from torchvision.io import ImageReadMode, decode_image
    from torchvision.transforms.v2 import functional as TF

    if over_pixel_limit(image_bytes):  # torchvision.io has none: it allocates what the header says (or crashes)
        return None
    try:
        return decode_image(torch.frombuffer(bytearray(image_bytes), dtype=torch.uint8), mode=ImageReadMode.RGB)
    except RuntimeError:  # a format torchvision.io does not read (BMP), or damaged bytes
        image = _pil_image(image_bytes)
        return None if image is None else TF.pil_to_tensor(image)


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
    with seeded(seed):
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


def _batch_buffer(template: torch.Tensor, size: int) -> torch.Tensor:
    """A zeroed batch of ``size`` rows shaped as ``template``; in a loader worker, in shared memory from the start,
    as ``default_collate`` allocates it, so handing it to the training process copies nothing."""
    shape = (size, *template.shape)
    if torch.utils.data.get_worker_info() is None:
        return template.new_zeros(shape)
    storage = template._typed_storage()._new_shared(math.prod(shape), device=template.device)
    return template.new(storage).resize_(shape).zero_()


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
    images = _batch_buffer(template, size)
    for row, (tensor, _) in enumerate(batch):
        if mask[row]:
            images[row] = tensor
    return images, labels, mask, skipped
