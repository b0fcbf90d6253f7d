"""Named DenseNets from the paper's and the original code's tables, and ``create_model``."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from densenet_ray.errors import UserError
from densenet_ray.models.config import DenseNetConfig
from densenet_ray.models.densenet import DenseNet


@dataclass(frozen=True)
class ModelEntry:
    """A registered model: its name, a one-line description and its configuration."""

    name: str
    description: str
    config: DenseNetConfig


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(
    name: str, description: str
) -> Callable[[Callable[[], DenseNetConfig]], Callable[[], DenseNetConfig]]:
    """Decorator registering the configuration a zero-argument function returns under ``name``."""

    def decorator(function: Callable[[], DenseNetConfig]) -> Callable[[], DenseNetConfig]:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is already registered")
        _REGISTRY[name] = ModelEntry(name, description, function())
        return function

    return decorator


def list_models() -> list[str]:
    """Registered model names in registration order (CIFAR forms first, then ImageNet)."""
    return list(_REGISTRY)


def get_entry(name: str) -> ModelEntry:
    """The registry entry for ``name``; ``ValueError`` naming the valid choices when there is none."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UserError(f"unknown model {name!r}; choose one of: {', '.join(_REGISTRY)}") from None


def resolve_config(name: str | None = None, **overrides: Any) -> DenseNetConfig:
    """The configuration of ``name`` (or the defaults, BC-100-12, when ``None``) with non-``None`` overrides."""
    base = get_entry(name).config if name is not None else DenseNetConfig()
    if "block_config" in overrides and overrides["block_config"] is not None:
        overrides["block_config"] = tuple(int(n) for n in overrides["block_config"])
    config = base.replace(**overrides)
    config.validate()
    return config


def create_model(
    name: str | None = None,
    num_classes: int | None = None,
    device: torch.device | str | None = None,
    **overrides: object,
) -> DenseNet:
    """Build a DenseNet by registered name, with any :class:`DenseNetConfig` field overridden.

    ``None`` overrides are dropped, so unset CLI flags keep the preset's values. Examples::

        create_model("densenet_bc100_k12")                      # 769,162 params, 10 classes
        create_model("densenet121", num_classes=100)
        create_model(None, depth=40, growth_rate=12, bottleneck=False, reduction=1.0)  # basic L=40 k=12
        create_model("densenet_bc100_k12", depth=190, growth_rate=40, memory_efficient=True)
    """
    config = resolve_config(name, num_classes=num_classes, **overrides)
    with torch.device(device) if device is not None else contextlib.nullcontext():
        return DenseNet(config)


def _cifar(depth: int, growth_rate: int, bottleneck: bool = True, reduction: float = 0.5) -> DenseNetConfig:
    return DenseNetConfig(
        form="cifar", depth=depth, growth_rate=growth_rate, bottleneck=bottleneck, reduction=reduction
    )


def _imagenet(depth: int, growth_rate: int) -> DenseNetConfig:
    return DenseNetConfig(form="imagenet", depth=depth, growth_rate=growth_rate)


@register_model("densenet40_k12", "DenseNet L=40 k=12 (basic, paper Table 2)")
def densenet40_k12() -> DenseNetConfig:
    return _cifar(40, 12, bottleneck=False, reduction=1.0)


@register_model("densenet100_k12", "DenseNet L=100 k=12 (basic, paper Table 2)")
def densenet100_k12() -> DenseNetConfig:
    return _cifar(100, 12, bottleneck=False, reduction=1.0)


@register_model("densenet100_k24", "DenseNet L=100 k=24 (basic, paper Table 2)")
def densenet100_k24() -> DenseNetConfig:
    return _cifar(100, 24, bottleneck=False, reduction=1.0)


@register_model("densenet_bc100_k12", "DenseNet-BC L=100 k=12 (paper Table 2)")
def densenet_bc100_k12() -> DenseNetConfig:
    return _cifar(100, 12)


@register_model("densenet_bc250_k24", "DenseNet-BC L=250 k=24 (paper Table 2)")
def densenet_bc250_k24() -> DenseNetConfig:
    return _cifar(250, 24)


@register_model("densenet_bc190_k40", "DenseNet-BC L=190 k=40 (paper Table 2)")
def densenet_bc190_k40() -> DenseNetConfig:
    return _cifar(190, 40)


@register_model("wide_densenet_bc40_k36", "Wide-DenseNet-BC L=40 k=36 (original code's README)")
def wide_densenet_bc40_k36() -> DenseNetConfig:
    return _cifar(40, 36)


@register_model("wide_densenet_bc40_k48", "Wide-DenseNet-BC L=40 k=48 (original code's README)")
def wide_densenet_bc40_k48() -> DenseNetConfig:
    return _cifar(40, 48)


@register_model("wide_densenet_bc40_k60", "Wide-DenseNet-BC L=40 k=60 (original code's README)")
def wide_densenet_bc40_k60() -> DenseNetConfig:
    return _cifar(40, 60)


@register_model("densenet121", "DenseNet-121 k=32 (paper Table 1, torchvision)")
def densenet121() -> DenseNetConfig:
    return _imagenet(121, 32)


@register_model("densenet169", "DenseNet-169 k=32 (paper Table 1, torchvision)")
def densenet169() -> DenseNetConfig:
    return _imagenet(169, 32)


@register_model("densenet201", "DenseNet-201 k=32 (paper Table 1, torchvision)")
def densenet201() -> DenseNetConfig:
    return _imagenet(201, 32)


@register_model("densenet161", "DenseNet-161 k=48 (original code, torchvision)")
def densenet161() -> DenseNetConfig:
    return _imagenet(161, 48)


@register_model("densenet264", "DenseNet-264 k=32 (paper Table 1)")
def densenet264() -> DenseNetConfig:
    return _imagenet(264, 32)


@register_model("densenet232", "DenseNet-232 k=48 (memory-efficient technical report)")
def densenet232() -> DenseNetConfig:
    return _imagenet(232, 48)


@register_model("densenet264_k48", "DenseNet-264 k=48 (memory-efficient technical report)")
def densenet264_k48() -> DenseNetConfig:
    return _imagenet(264, 48)
