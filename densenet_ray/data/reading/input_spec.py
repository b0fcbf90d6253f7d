"""What a model trained on your own images is fed: the crop size, the normalisation and the evaluation crop. Plain
values (no torch), so a configuration can carry it before anything heavy is imported."""

from __future__ import annotations

from dataclasses import dataclass

SMALL_IMAGE = 64
DEFAULT_CROP_PCT = 0.875
LARGEST_DEFAULT_SIZE = 224  # the default crop for large images, as ImageNet's


@dataclass(frozen=True)
class InputSpec:
    """What the model sees: ``size`` x ``size`` crops normalised by the dataset's per-channel ``mean`` and ``std``
    (the manifest's, on the [0, 1] scale); ``crop_pct`` sizes the evaluation resize of large images."""

    size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    crop_pct: float = DEFAULT_CROP_PCT

    @property
    def small(self) -> bool:
        """CIFAR-style: pad-and-crop augmentation and the CIFAR-form model by default."""
        return self.size <= SMALL_IMAGE

    @property
    def resize(self) -> int:
        """The shorter side evaluation resizes to before its center crop."""
        return self.size if self.small else round(self.size / self.crop_pct)


def default_size(short_side: int) -> int:
    """The training crop for images whose typical shorter side is ``short_side``: that side, at most 224."""
    return min(short_side, LARGEST_DEFAULT_SIZE)
