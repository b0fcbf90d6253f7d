"""``--decode gpu``: decode a batch of JPEGs on the training device and augment it there.

CPU JPEG decoding is what bounds ImageNet training on a GPU machine (one core decodes and augments about 540
images/s at 224x224). With a decode device, loader workers only read shards, parse each JPEG header and draw the
sample's augmentation parameters (``samples.encode``); this stage decodes the whole batch at once with
``torchvision.io.decode_jpeg(..., device="cuda")`` (nvJPEG), then crops, resizes, jitters, lights, normalises and
flips it with the same code and parameters as the CPU path (``augment``). Images that are not JPEG are decoded on
the CPU by ``torchvision.io.decode_image`` and moved over.

torchvision 0.29 deprecates its image decoders in favour of TorchCodec's (the DeprecationWarning that
``torchvision.io`` emits links the migration guide); they are still the maintained ones our pinned versions ship.

A sample whose pixel data turns out corrupt is dropped from its training batch (the batch is one row shorter, the
only difference from the CPU path, which backfills from the stream) and masked out in evaluation; both count in
``skipped``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torchvision.io import ImageReadMode, decode_image, decode_jpeg

from densenet_ray.data.reading.samples import EncodedBatch, check_corrupt
from densenet_ray.errors import UserError

_JPEG_MAGIC = b"\xff\xd8\xff"


def decode_batch(data: list[torch.Tensor], device: torch.device) -> list[torch.Tensor | None]:
    """uint8 RGB CHW images on ``device`` (None where a row is empty or does not decode)."""
    images: list[torch.Tensor | None] = [None] * len(data)
    jpegs = [i for i, d in enumerate(data) if d.numel() >= 3 and bytes(d[:3].tolist()) == _JPEG_MAGIC]
    jpeg_rows = set(jpegs)
    others = [i for i, d in enumerate(data) if d.numel() and i not in jpeg_rows]
    if jpegs:
        try:
            decoded = decode_jpeg([data[i] for i in jpegs], mode=ImageReadMode.RGB, device=device)
        except RuntimeError:  # one corrupt image fails the whole batched call: find it one by one
            decoded = [_decode_one(data[i], device) for i in jpegs]
        for index, image in zip(jpegs, decoded, strict=True):
            images[index] = image
    for index in others:
        images[index] = _decode_one(data[index], device, jpeg=False)
    return images


def _decode_one(data: torch.Tensor, device: torch.device, jpeg: bool = True) -> torch.Tensor | None:
    try:
        if jpeg:
            return decode_jpeg(data, mode=ImageReadMode.RGB, device=device)
        return decode_image(data, mode=ImageReadMode.RGB).to(device, non_blocking=True)
    except RuntimeError:
        return None


class DeviceDecodedLoader:
    """Wraps an encoded-mode ``EpochLoader``: the same batches, decoded and augmented on ``device``."""

    def __init__(self, loader: Any, transform: Any, device: str) -> None:
        if not getattr(transform, "batched", False):
            raise UserError(
                f"--decode gpu needs a batch transform (ImageNet's); {type(transform).__name__} runs on one image "
                "at a time: use --decode cpu"
            )
        self.loader, self.transform, self.device = loader, transform, torch.device(device)
        self.config = loader.config
        self.failed = self.seen = 0

    @property
    def skipped(self) -> int:
        """Samples that failed to decode so far: in the loader workers (bad headers) and on the device."""
        return self.loader.skipped + self.failed

    @property
    def keys(self) -> tuple[str, ...]:
        """The sample keys of the training batch yielded last (decoding on the device keeps the loader's order)."""
        return tuple(self.loader.keys)

    @property
    def total_batches(self) -> int:
        """This rank's batches in the epoch, as :attr:`EpochLoader.total_batches` (the worker sizes its steps by it)."""
        return self.loader.total_batches

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        train = self.config.train
        for batch in self.loader:
            encoded, labels = batch[0], batch[1]
            mask = batch[2] if not train else torch.ones(len(labels), dtype=torch.bool)
            images, decoded = self._decode(encoded, mask)
            self.seen += int(mask.sum())
            self.failed += int((mask & ~decoded).sum())
            if train:
                check_corrupt(self.failed, self.seen, self.config.max_corrupt_fraction)
                if decoded.all():  # the usual case: no boolean indexing, which would wait for the device
                    yield images, labels
                else:
                    yield images[decoded.to(images.device)], labels[decoded]
            else:
                yield images, labels, mask & decoded

    def _decode(self, encoded: EncodedBatch, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The augmented batch (zeros in rows that did not decode) and which rows decoded."""
        data = [d if keep else d[:0] for d, keep in zip(encoded.data, mask.tolist(), strict=True)]
        images = decode_batch(data, self.device)
        decoded = torch.tensor([image is not None for image in images], dtype=torch.bool)
        rows = [i for i, image in enumerate(images) if image is not None]
        parameters = encoded.parameters[rows] if encoded.parameters.numel() else None
        if len(rows) == len(images):  # every row decoded: no scatter into a zeroed batch
            return self.transform.apply(images, parameters), decoded
        size = self.transform.size
        out = torch.zeros((len(images), 3, size, size), device=self.device)
        if rows:
            out[rows] = self.transform.apply([images[i] for i in rows], parameters)
        return out, decoded
