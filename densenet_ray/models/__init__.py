"""DenseNet models: pure PyTorch, no Ray."""

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
