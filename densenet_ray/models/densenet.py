"""DenseNet (Huang et al., CVPR 2017) in both of the paper's forms, with torchvision's module names.

Module names follow torchvision (``features.conv0``, ``features.denseblock1.denselayer1.norm1``,
``features.transition1.conv``, ``features.norm5``, ``classifier``), so torchvision and timm checkpoints load with
``strict=True``; the legacy ``norm.1``/``conv.1`` keys of the original ``.pth`` files are renamed on load.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from densenet_ray.models.config import DenseNetConfig
from densenet_ray.models.efficient import SharedScratch, concat_norm_relu_conv

# The original torchvision .pth files named dense-layer submodules "norm.1", "conv.2", ...; dots are no longer
# allowed in module names, so such keys are renamed to "norm1", "conv2" (as torchvision's own
# models/densenet.py _load_state_dict does).
_LEGACY_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$"
)


class _DenseLayer(nn.Module):
    """BN-ReLU-Conv(1x1, bn_size*k)-BN-ReLU-Conv(3x3, k) with bottleneck, BN-ReLU-Conv(3x3, k) without."""

    def __init__(self, in_channels: int, growth_rate: int, bottleneck: bool, bn_size: int, drop_rate: float) -> None:
        super().__init__()
        first_out = bn_size * growth_rate if bottleneck else growth_rate
        self.norm1 = nn.BatchNorm2d(in_channels)
        self.relu1 = nn.ReLU(inplace=True)
        kernel = 1 if bottleneck else 3
        self.conv1 = nn.Conv2d(in_channels, first_out, kernel, padding=kernel // 2, bias=False)
        if bottleneck:
            self.norm2 = nn.BatchNorm2d(first_out)
            self.relu2 = nn.ReLU(inplace=True)
            self.conv2 = nn.Conv2d(first_out, growth_rate, 3, padding=1, bias=False)
        self.bottleneck = bottleneck
        self.drop_rate = drop_rate
        self.memory_efficient = False
        self.scratch: SharedScratch | None = None

    def _concat_norm_relu_conv(self, *features: torch.Tensor) -> torch.Tensor:
        return self.conv1(self.relu1(self.norm1(torch.cat(features, 1))))

    def _first_conv(self, features: list[torch.Tensor]) -> torch.Tensor:
        if not (self.memory_efficient and torch.is_grad_enabled() and any(f.requires_grad for f in features)):
            return self._concat_norm_relu_conv(*features)
        if torch.compiler.is_compiling():
            # Under torch.compile a checkpointed region is recomputed by the compiled backward, which needs only
            # the convolution's input back: concat, BN and ReLU are recomputed, the convolution is not, and the
            # BN running statistics move once (the recomputation is not a second module call).
            return checkpoint(self._concat_norm_relu_conv, *features, use_reentrant=False)
        if self.scratch is not None and type(self.norm1) is nn.BatchNorm2d:  # SyncBatchNorm: its own backward
            return concat_norm_relu_conv(features, self.norm1, self.conv1, self.scratch, len(features) == 1)
        return self._concat_norm_relu_conv(*features)

    def _dropout(self, x: torch.Tensor) -> torch.Tensor:
        return F.dropout(x, p=self.drop_rate, training=self.training) if self.drop_rate > 0 else x

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        out = self._dropout(self._first_conv(features))
        if self.bottleneck:
            out = self._dropout(self.conv2(self.relu2(self.norm2(out))))
        return out


class _DenseBlock(nn.ModuleDict):
    """N dense layers; layer i sees the concatenation of the block input and every earlier layer's output."""

    def __init__(
        self, num_layers: int, in_channels: int, growth_rate: int, bottleneck: bool, bn_size: int, drop_rate: float
    ) -> None:
        super().__init__()
        for i in range(num_layers):
            layer = _DenseLayer(in_channels + i * growth_rate, growth_rate, bottleneck, bn_size, drop_rate)
            self.add_module(f"denselayer{i + 1}", layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        layers = cast(list[_DenseLayer], list(self.values()))  # ModuleDict's values are typed Module; these are ours
        eager_efficient = layers[0].memory_efficient and torch.is_grad_enabled() and not torch.compiler.is_compiling()
        scratch = layers[0].scratch if eager_efficient else None
        if scratch is not None:
            scratch.reserve(x, layers[-1].norm1.num_features)
        features = [x]
        try:
            for layer in layers:
                features.append(layer(features))
        finally:
            if scratch is not None:
                scratch.clear()
        return torch.cat(features, 1)


class _Transition(nn.Sequential):
    """BN-ReLU-Conv(1x1, floor(theta*m))-[Dropout]-AvgPool(2x2) between dense blocks."""

    def __init__(self, in_channels: int, out_channels: int, drop_rate: float) -> None:
        super().__init__()
        self.add_module("norm", nn.BatchNorm2d(in_channels))
        self.add_module("relu", nn.ReLU(inplace=True))
        self.add_module("conv", nn.Conv2d(in_channels, out_channels, 1, bias=False))
        if drop_rate > 0:
            self.add_module("drop", nn.Dropout(drop_rate))
        self.add_module("pool", nn.AvgPool2d(2, stride=2))


def _stem(config: DenseNetConfig) -> list[tuple[str, nn.Module]]:
    channels = config.initial_channels
    if config.form == "cifar":
        return [("conv0", nn.Conv2d(3, channels, 3, padding=1, bias=False))]
    return [
        ("conv0", nn.Conv2d(3, channels, 7, stride=2, padding=3, bias=False)),
        ("norm0", nn.BatchNorm2d(channels)),
        ("relu0", nn.ReLU(inplace=True)),
        ("pool0", nn.MaxPool2d(3, stride=2, padding=1)),
    ]


class DenseNet(nn.Module):
    """A DenseNet built from a :class:`DenseNetConfig`; see ``densenet_ray.models.create_model`` for named ones."""

    def __init__(self, config: DenseNetConfig) -> None:
        super().__init__()
        blocks = config.blocks()
        self.config = config
        layers = _stem(config)
        channels = config.initial_channels
        for index, num_layers in enumerate(blocks, start=1):
            block = _DenseBlock(
                num_layers, channels, config.growth_rate, config.bottleneck, config.bn_size, config.drop_rate
            )
            layers.append((f"denseblock{index}", block))
            channels += num_layers * config.growth_rate
            if index < len(blocks):
                reduced = int(config.reduction * channels)
                layers.append((f"transition{index}", _Transition(channels, reduced, config.drop_rate)))
                channels = reduced
        layers.append(("norm5", nn.BatchNorm2d(channels)))
        self.features = nn.Sequential(OrderedDict(layers))
        self.num_features = channels
        self.classifier: nn.Module = nn.Linear(channels, config.classes)
        self._init_weights()
        self.set_grad_checkpointing(config.memory_efficient)
        self.register_load_state_dict_pre_hook(_rename_legacy_keys)

    def _init_weights(self) -> None:
        # The original Lua code: He normal in fan_out mode for convs (torchvision uses fan_in), BN 1/0, FC bias 0.
        if self.classifier.weight.is_meta:  # built for its shapes and counts only: no values to set
            return
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                nn.init.zeros_(module.bias)

    @property
    def memory_efficient(self) -> bool:
        """Whether dense layers recompute concat+BN+ReLU in backward instead of storing them."""
        return self._memory_efficient

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Switch the memory-efficient dense layers on or off (timm's name for it)."""
        self._memory_efficient = bool(enable)
        self.scratch = SharedScratch()
        for module in self.modules():
            if isinstance(module, _DenseLayer):
                module.memory_efficient = self._memory_efficient
                module.scratch = self.scratch

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Feature maps after the final BN and ReLU, before pooling."""
        return F.relu(self.features(x), inplace=True)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Global average pooling, then the classifier unless ``pre_logits``."""
        x = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
        return x if pre_logits else self.classifier(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        """The final linear layer."""
        return self.classifier

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the classifier with a freshly initialised one for ``num_classes`` (0 gives an identity)."""
        if num_classes < 0:
            raise ValueError(f"num_classes {num_classes} must be >= 0")
        device = self.classifier.weight.device if isinstance(self.classifier, nn.Linear) else None
        if num_classes == 0:
            self.classifier = nn.Identity()
        else:
            self.classifier = nn.Linear(self.num_features, num_classes, device=device)
            nn.init.zeros_(self.classifier.bias)
        self.config = self.config.replace(num_classes=max(num_classes, 1))


def _rename_legacy_keys(module: nn.Module, state_dict: dict[str, Any], prefix: str, *_: Any) -> None:
    for key in list(state_dict):
        if not key.startswith(prefix):
            continue
        match = _LEGACY_KEY.match(key[len(prefix) :])
        if match:
            state_dict[prefix + match.group(1) + match.group(2)] = state_dict.pop(key)
