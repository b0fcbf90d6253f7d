"""The typed description of one DenseNet, and how depth turns into layers per block."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

from densenet_ray.errors import UserError

Form = Literal["cifar", "imagenet"]

# ImageNet block configurations keyed by the depth they are named by (paper, Table 1). 264 and 232 use 12
# layers in the second block: the technical report's footnote says 32, but only 12 reproduces its 33M/55M/73M.
IMAGENET_BLOCKS: dict[int, tuple[int, ...]] = {
    121: (6, 12, 24, 16),
    169: (6, 12, 32, 32),
    201: (6, 12, 48, 32),
    161: (6, 12, 36, 24),
    232: (6, 12, 48, 48),
    264: (6, 12, 64, 48),
}

NATIVE_RESOLUTION: dict[str, int] = {"cifar": 32, "imagenet": 224}
DEFAULT_CLASSES: dict[str, int] = {"cifar": 10, "imagenet": 1000}


@dataclass(frozen=True)
class DenseNetConfig:
    """Everything that determines a DenseNet's structure.

    Attributes:
        form: ``"cifar"`` (3x3 stem, 3 dense blocks, for 32x32 CIFAR/SVHN images) or ``"imagenet"`` (7x7 stride-2
            stem, max-pool, 4 dense blocks).
        depth: L. CIFAR form: L = 3N+4 (basic) or 6N+4 (bottleneck) with N layers per block. ImageNet form: one of
            the named depths in ``IMAGENET_BLOCKS`` unless ``block_config`` is given.
        growth_rate: k, the feature maps each dense layer adds.
        bottleneck: B, a 1x1 conv to ``bn_size * k`` channels before each 3x3 conv.
        reduction: theta, the transition layers' compression (1 = none, 0.5 for C/BC).
        drop_rate: dropout after every conv except the first, transition convs included (the paper's placement).
        num_classes: classifier outputs; ``None`` means 10 for CIFAR form and 1000 for ImageNet form.
        stem_channels: output channels of the first conv; ``None`` means the paper's choice (16 for a basic CIFAR
            DenseNet, 2k otherwise).
        block_config: layers per dense block, overriding what ``depth`` implies.
        bn_size: bottleneck width multiplier (4 in the paper).
        memory_efficient: recompute concat+BN+ReLU in backward so activation memory grows linearly with depth.
    """

    form: Form = "cifar"
    depth: int = 100
    growth_rate: int = 12
    bottleneck: bool = True
    reduction: float = 0.5
    drop_rate: float = 0.0
    num_classes: int | None = None
    stem_channels: int | None = None
    block_config: tuple[int, ...] | None = None
    bn_size: int = 4
    memory_efficient: bool = False

    def replace(self, **changes: object) -> DenseNetConfig:
        """A copy with ``changes`` applied; ``None`` values are ignored so CLI defaults never clobber presets."""
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            valid = ", ".join(f.name for f in dataclasses.fields(self))
            raise UserError(f"unknown DenseNet option(s) {', '.join(unknown)}; valid options: {valid}")
        # Any: the values come from flags and YAML; the names are checked above, the values by validate().
        kept: dict[str, Any] = {key: value for key, value in changes.items() if value is not None}
        return dataclasses.replace(self, **kept)

    @property
    def classes(self) -> int:
        """The number of classifier outputs, defaults applied."""
        return self.num_classes if self.num_classes is not None else DEFAULT_CLASSES[self.form]

    @property
    def resolution(self) -> int:
        """The native input resolution (32 or 224)."""
        return NATIVE_RESOLUTION[self.form]

    @property
    def initial_channels(self) -> int:
        """Channels out of the stem: 16 for a basic (non-B, non-C) CIFAR DenseNet, 2k otherwise (paper section 3)."""
        if self.stem_channels is not None:
            return self.stem_channels
        if self.form == "cifar" and not self.bottleneck and self.reduction == 1:
            return 16
        return 2 * self.growth_rate

    def blocks(self) -> tuple[int, ...]:
        """Layers per dense block, validated."""
        self.validate()
        if self.block_config is not None:
            return tuple(self.block_config)
        if self.form == "imagenet":
            return IMAGENET_BLOCKS[self.depth]
        per_block = (self.depth - 4) // self._convs_per_layer() // 3
        return (per_block,) * 3

    def _convs_per_layer(self) -> int:
        return 2 if self.bottleneck else 1

    def validate(self) -> None:
        """Raise ``ValueError`` with a one-line explanation when the configuration cannot be built."""
        if self.form not in NATIVE_RESOLUTION:
            raise UserError(f"form {self.form!r} is not one of: cifar, imagenet")
        if self.growth_rate < 1:
            raise UserError(f"growth_rate {self.growth_rate} must be a positive integer")
        if not 0 < self.reduction <= 1:
            raise UserError(f"reduction {self.reduction} must be in (0, 1]")
        if not 0 <= self.drop_rate < 1:
            raise UserError(f"drop_rate {self.drop_rate} must be in [0, 1)")
        if self.num_classes is not None and self.num_classes < 1:
            raise UserError(f"num_classes {self.num_classes} must be a positive integer")
        if self.stem_channels is not None and self.stem_channels < 1:
            raise UserError(f"stem_channels {self.stem_channels} must be a positive integer")
        if self.bn_size < 1:
            raise UserError(f"bn_size {self.bn_size} must be a positive integer")
        if self.block_config is not None:
            if not self.block_config or any(int(n) < 1 for n in self.block_config):
                raise UserError(f"block_config {tuple(self.block_config)} must list at least one positive count")
            return
        if self.form == "imagenet":
            if self.depth not in IMAGENET_BLOCKS:
                known = ", ".join(str(d) for d in sorted(IMAGENET_BLOCKS))
                raise UserError(
                    f"depth {self.depth} has no standard ImageNet DenseNet; use one of {known} or give block_config"
                )
            return
        step = 3 * self._convs_per_layer()
        kind = "DenseNet-BC/B (depth = 6N+4)" if self.bottleneck else "basic DenseNet (depth = 3N+4)"
        minimum = 4 + step
        if self.depth < minimum or (self.depth - 4) % step:
            below = self.depth - (self.depth - 4) % step
            nearest = [minimum] if self.depth < minimum else [below, below + step]
            raise UserError(
                f"depth {self.depth} does not fit a {kind} with N layers per block; nearest valid depths: "
                + ", ".join(str(d) for d in nearest)
            )
