"""Input transforms for your own images, sized by their manifest
(:class:`~densenet_ray.data.reading.input_spec.InputSpec`), on ``transforms.v2``.

Images up to 64 pixels (``InputSpec.small``) train as the paper trains CIFAR (section 4.1): normalise, flip, zero-pad an
eighth of the side (4 of 32) and crop back; larger ones as torchvision's reference recipe trains ImageNet
(``references/classification/presets.py``): a random-resized crop and a flip, and for evaluation a resize to
``size / crop_pct`` and a center crop (0.875: 256 -> 224).
"""

from __future__ import annotations

import torch
from torchvision.transforms import v2

from densenet_ray.data.reading.input_spec import InputSpec


def _float(spec: InputSpec) -> list[v2.Transform]:
    return [v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(spec.mean, spec.std)]


def own_eval(spec: InputSpec) -> v2.Compose:
    """Resize (to ``spec.resize`` on the shorter side), center-crop ``spec.size``, normalise."""
    return v2.Compose([v2.Resize(spec.resize, antialias=True), v2.CenterCrop(spec.size), *_float(spec)])


def own_train(spec: InputSpec, policy: v2.Transform | None = None) -> v2.Compose:
    """Small images: to size, normalise, flip, zero-pad ``size // 8`` and crop (after normalising, so the border is
    the mean, as CIFAR's). Large: random-resized crop, flip, ``policy`` (RandAugment...), normalise."""
    if spec.small:
        padding = max(1, spec.size // 8)
        steps = [v2.Resize(spec.size, antialias=True), v2.CenterCrop(spec.size), *_float(spec)]
        steps += [v2.RandomHorizontalFlip(), v2.RandomCrop(spec.size, padding=padding, fill=0)]
        return v2.Compose(([policy] if policy is not None else []) + steps)
    steps = [v2.RandomResizedCrop(spec.size, antialias=True), v2.RandomHorizontalFlip()]
    return v2.Compose(steps + ([policy] if policy is not None else []) + _float(spec))
