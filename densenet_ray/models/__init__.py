"""DenseNet models: pure PyTorch, no Ray. Each name is imported on first use, so the command line can read the
registry's light parts (export formats, say) without importing PyTorch."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# Each public name and the module that defines it.
_EXPORTS = {
    "IMAGENET_BLOCKS": "densenet_ray.models.config",
    "DenseNetConfig": "densenet_ray.models.config",
    "DenseNet": "densenet_ray.models.densenet",
    "ModelProfile": "densenet_ray.models.profile",
    "StageProfile": "densenet_ray.models.profile",
    "count_params": "densenet_ray.models.profile",
    "profile_model": "densenet_ray.models.profile",
    "ModelEntry": "densenet_ray.models.registry",
    "create_model": "densenet_ray.models.registry",
    "get_entry": "densenet_ray.models.registry",
    "list_models": "densenet_ray.models.registry",
    "register_model": "densenet_ray.models.registry",
    "resolve_config": "densenet_ray.models.registry",
}
__all__ = [
    "IMAGENET_BLOCKS",
    "DenseNet",
    "DenseNetConfig",
    "ModelEntry",
    "ModelProfile",
    "StageProfile",
    "count_params",
    "create_model",
    "get_entry",
    "list_models",
    "profile_model",
    "register_model",
    "resolve_config",
]

if TYPE_CHECKING:  # what type checkers and IDEs see; at run time each name loads on first use
    from densenet_ray.models.config import IMAGENET_BLOCKS, DenseNetConfig
    from densenet_ray.models.densenet import DenseNet
    from densenet_ray.models.profile import ModelProfile, StageProfile, count_params, profile_model
    from densenet_ray.models.registry import (
        ModelEntry,
        create_model,
        get_entry,
        list_models,
        register_model,
        resolve_config,
    )


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'densenet_ray.models' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value
