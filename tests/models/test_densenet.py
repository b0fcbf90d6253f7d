"""Structure, head API, initialisation and configuration errors of the DenseNet family."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from densenet_ray.models import DenseNetConfig, create_model


@pytest.mark.parametrize(("name", "size", "classes"), [("densenet_bc100_k12", 32, 10), ("densenet121", 224, 1000)])
def test_output_shapes_at_native_resolution(name: str, size: int, classes: int) -> None:
    model = create_model(name).eval()
    with torch.no_grad():
        logits = model(torch.randn(2, 3, size, size))
    assert logits.shape == (2, classes)
    assert torch.isfinite(logits).all()


def test_cifar_form_feature_maps_are_32_16_8() -> None:
    model = create_model("densenet_bc100_k12", depth=40)
    sizes = {}
    for name in ("denseblock1", "denseblock2", "denseblock3"):
        getattr(model.features, name).register_forward_hook(lambda m, i, o, n=name: sizes.__setitem__(n, o.shape[-1]))
    model(torch.randn(1, 3, 32, 32))
    assert sizes == {"denseblock1": 32, "denseblock2": 16, "denseblock3": 8}


@pytest.mark.parametrize("memory_efficient", [False, True])
def test_every_parameter_receives_a_gradient(memory_efficient: bool) -> None:
    # torchvision#2221: a broken memory-efficient path silently stopped gradients reaching early layers.
    model = create_model("densenet_bc100_k12", depth=40, num_classes=42, memory_efficient=memory_efficient).train()
    logits = model(torch.randn(4, 3, 32, 32))
    assert logits.shape == (4, 42)
    F.cross_entropy(logits, torch.randint(0, 42, (4,))).backward()
    missing = [name for name, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing


def test_imagenet_every_parameter_receives_a_gradient_224() -> None:
    model = create_model("densenet121", num_classes=5, memory_efficient=True).train()
    F.cross_entropy(model(torch.randn(2, 3, 224, 224)), torch.tensor([1, 3])).backward()
    assert all(p.grad is not None for p in model.parameters())


def test_head_api() -> None:
    model = create_model("densenet_bc100_k12", depth=40).eval()
    images = torch.randn(2, 3, 32, 32)
    features = model.forward_features(images)
    assert features.shape == (2, model.num_features, 8, 8)
    assert (features >= 0).all()  # final BN-ReLU applied
    pooled = model.forward_head(features, pre_logits=True)
    assert pooled.shape == (2, model.num_features)
    torch.testing.assert_close(model.forward_head(features), model(images))
    model.reset_classifier(7)
    assert model(images).shape == (2, 7) and model.config.classes == 7
    assert model.get_classifier().out_features == 7
    model.reset_classifier(0)
    assert model(images).shape == (2, model.num_features)


def test_set_grad_checkpointing_toggles_every_layer() -> None:
    model = create_model("densenet_bc100_k12", depth=40)
    assert not model.memory_efficient
    model.set_grad_checkpointing(True)
    layers = [m for n, m in model.named_modules() if "denselayer" in n and n.count(".") == 2]
    assert layers and all(layer.memory_efficient for layer in layers)
    assert create_model("densenet121", memory_efficient=True).memory_efficient


def test_dropout_after_every_conv_but_the_first() -> None:
    # With dropout p, each of the 2 dense-layer convs and each transition conv is followed by dropout: count the
    # dropout calls in a forward pass of BC-40 (3 blocks x 6 layers x 2 + 2 transitions = 38).
    model = create_model("densenet_bc100_k12", depth=40, drop_rate=0.2).train()
    calls = []
    original = F.dropout

    def counting_dropout(x: torch.Tensor, p: float = 0.5, training: bool = True, inplace: bool = False):
        calls.append(p)
        return original(x, p, training, inplace)

    F.dropout = counting_dropout
    try:
        model(torch.randn(2, 3, 32, 32))
    finally:
        F.dropout = original
    assert calls == [0.2] * 38
    model.eval()
    with torch.no_grad():
        images = torch.randn(2, 3, 32, 32)
        torch.testing.assert_close(model(images), model(images))


def test_initialisation_matches_the_original_code() -> None:
    torch.manual_seed(0)
    model = create_model("densenet_bc100_k12")
    conv = model.features.denseblock3.denselayer16.conv2  # 48 -> 12, 3x3: fan_out = 12 * 9
    assert conv.weight.std().item() == pytest.approx(math.sqrt(2 / (12 * 9)), rel=0.05)
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert all(torch.all(m.weight == 1) and torch.all(m.bias == 0) for m in norms)
    assert torch.all(model.classifier.bias == 0)
    bound = 1 / math.sqrt(model.num_features)
    assert model.classifier.weight.abs().max().item() <= bound


def test_stem_channels_follow_the_paper() -> None:
    assert create_model("densenet40_k12").features.conv0.out_channels == 16
    assert create_model("densenet_bc100_k12").features.conv0.out_channels == 24
    assert create_model("densenet161").features.conv0.out_channels == 96
    assert create_model("densenet40_k12", stem_channels=24).features.conv0.out_channels == 24
    assert create_model("densenet121").features.conv0.kernel_size == (7, 7)


def test_create_model_drops_none_overrides_and_accepts_arbitrary_configs() -> None:
    model = create_model("wide_densenet_bc40_k48", num_classes=None, growth_rate=None, drop_rate=None)
    assert model.config.growth_rate == 48 and model.config.classes == 10
    custom = create_model(None, depth=28, growth_rate=8, bottleneck=False, reduction=1.0, num_classes=3)
    assert [len(getattr(custom.features, f"denseblock{i}")) for i in (1, 2, 3)] == [8, 8, 8]
    assert custom(torch.randn(1, 3, 32, 32)).shape == (1, 3)
    imagenet = create_model("densenet121", block_config=[2, 2, 2], num_classes=4)
    assert imagenet(torch.randn(1, 3, 64, 64)).shape == (1, 4)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"depth": 101}, r"depth 101 does not fit a DenseNet-BC.*nearest valid depths: 100, 106"),
        ({"depth": 41, "bottleneck": False}, r"depth 41 does not fit a basic DenseNet.*nearest valid depths: 40, 43"),
        ({"depth": 6}, r"depth 6 .*nearest valid depths: 10$"),
        ({"growth_rate": 0}, r"growth_rate 0 must be a positive integer"),
        ({"reduction": 0}, r"reduction 0 must be in \(0, 1\]"),
        ({"reduction": 1.5}, r"reduction 1.5 must be in \(0, 1\]"),
        ({"drop_rate": 1.0}, r"drop_rate 1.0 must be in \[0, 1\)"),
        ({"num_classes": 0}, r"num_classes 0 must be a positive integer"),
        ({"form": "mnist"}, r"form 'mnist' is not one of: cifar, imagenet"),
        ({"form": "imagenet", "depth": 100}, r"depth 100 has no standard ImageNet DenseNet; use one of 121, 161"),
        ({"block_config": [4, 0]}, r"block_config \(4, 0\) must list at least one positive count"),
        ({"width": 3}, r"unknown DenseNet option\(s\) width; valid options: form, depth"),
    ],
)
def test_bad_configurations_raise_clear_errors(overrides: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        create_model("densenet_bc100_k12", **overrides)


def test_unknown_model_name_lists_the_choices() -> None:
    with pytest.raises(ValueError, match=r"unknown model 'densenet_bc100'; choose one of: densenet40_k12"):
        create_model("densenet_bc100")


def test_config_defaults() -> None:
    config = DenseNetConfig()
    assert (config.form, config.depth, config.growth_rate, config.classes) == ("cifar", 100, 12, 10)
    assert config.blocks() == (16, 16, 16)
    assert DenseNetConfig(form="imagenet", depth=264, growth_rate=48).blocks() == (6, 12, 64, 48)
