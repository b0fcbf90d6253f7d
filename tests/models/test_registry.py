"""The model registry: every name resolves, overrides apply, and mistakes are one line naming the choices."""

from __future__ import annotations

import pytest

from densenet_ray.errors import UserError
from densenet_ray.models import create_model, get_entry, list_models, register_model, resolve_config
from densenet_ray.models.config import DenseNetConfig


def test_names_in_order_and_entries() -> None:
    names = list_models()
    assert names[:3] == ["densenet40_k12", "densenet100_k12", "densenet100_k24"]
    assert {"densenet_bc100_k12", "wide_densenet_bc40_k60", "densenet121", "densenet264"} <= set(names)
    entry = get_entry("wide_densenet_bc40_k36")
    assert (entry.config.depth, entry.config.growth_rate, entry.config.bottleneck, entry.config.reduction) == (
        40,
        36,
        True,
        0.5,
    )


def test_overrides_apply_and_none_keeps_the_preset() -> None:
    config = resolve_config("densenet_bc100_k12", depth=40, growth_rate=None, num_classes=100)
    assert (config.depth, config.growth_rate, config.num_classes, config.form) == (40, 12, 100, "cifar")
    assert resolve_config(None) == DenseNetConfig()
    assert create_model("densenet_bc100_k12", depth=16).config.depth == 16


def test_mistakes_are_one_line() -> None:
    with pytest.raises(UserError) as raised:
        get_entry("densenet_bc101")
    assert str(raised.value).startswith("unknown model 'densenet_bc101'; choose one of: densenet40_k12, ")
    with pytest.raises(ValueError, match="model 'densenet121' is already registered"):
        register_model("densenet121", "again")(DenseNetConfig)
