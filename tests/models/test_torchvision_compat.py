"""torchvision DenseNet checkpoints load strictly into ours and give the same logits."""

from __future__ import annotations

import re

import pytest
import torch
import torchvision

from densenet_ray.models import create_model

_MODERN_KEY = re.compile(r"^(.*denselayer\d+\.(?:norm|relu|conv))([12])\.(weight|bias|running_mean|running_var)$")


def _legacy(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The layout of the original .pth files: ``norm.1``/``conv.2`` keys and no ``num_batches_tracked``."""
    legacy = {}
    for key, value in state_dict.items():
        if key.endswith("num_batches_tracked"):
            continue
        match = _MODERN_KEY.match(key)
        legacy[f"{match.group(1)}.{match.group(2)}.{match.group(3)}" if match else key] = value
    return legacy


def _perturb_bn_buffers(model: torch.nn.Module) -> None:
    # Fresh BN buffers are 0/1; random running statistics make the eval-mode comparison meaningful.
    generator = torch.Generator().manual_seed(3)
    for name, buffer in model.named_buffers():
        if name.endswith("running_mean"):
            buffer.copy_(torch.randn(buffer.shape, generator=generator) * 0.1)
        elif name.endswith("running_var"):
            buffer.copy_(torch.rand(buffer.shape, generator=generator) + 0.5)


@pytest.mark.parametrize("name", ["densenet121", "densenet161", "densenet169", "densenet201"])
def test_torchvision_state_dict_loads_strictly_and_matches_logits(name: str) -> None:
    torch.manual_seed(0)
    reference = getattr(torchvision.models, name)().eval()
    _perturb_bn_buffers(reference)
    ours = create_model(name).eval()
    result = ours.load_state_dict(reference.state_dict(), strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours(images), reference(images), atol=1e-5, rtol=0)


def test_state_dict_keys_are_torchvisions() -> None:
    ours = set(create_model("densenet121").state_dict())
    assert ours == set(torchvision.models.densenet121().state_dict())
    assert len(ours) == 727  # DENSENET.md section 8
    for key in (
        "features.conv0.weight",
        "features.denseblock1.denselayer1.norm1.weight",
        "features.transition1.conv.weight",
        "features.norm5.running_var",
        "classifier.bias",
    ):
        assert key in ours


def test_legacy_keys_load_strictly() -> None:
    torch.manual_seed(0)
    reference = torchvision.models.densenet121().eval()
    _perturb_bn_buffers(reference)
    legacy = _legacy(reference.state_dict())
    assert "features.denseblock1.denselayer1.norm.1.weight" in legacy
    assert len(legacy) == 606  # the original densenet121 .pth has 606 keys (DENSENET.md section 8)
    ours = create_model("densenet121").eval()
    ours.load_state_dict(legacy, strict=True)
    images = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours(images), reference(images), atol=1e-5, rtol=0)


def test_our_state_dict_loads_into_torchvision() -> None:
    ours = create_model("densenet121").eval()
    reference = torchvision.models.densenet121().eval()
    reference.load_state_dict(ours.state_dict(), strict=True)
    images = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours(images), reference(images), atol=1e-5, rtol=0)


def test_wrong_class_count_is_rejected_by_strict_loading() -> None:
    ours = create_model("densenet121", num_classes=10)
    with pytest.raises(RuntimeError, match="classifier.weight"):
        ours.load_state_dict(torchvision.models.densenet121().state_dict(), strict=True)
