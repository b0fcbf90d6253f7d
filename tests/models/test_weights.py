"""--init-from: torchvision-format state_dicts (legacy keys too) and our checkpoints, new head when classes differ."""

from __future__ import annotations

import re

import pytest
import torch
import torchvision

from densenet_ray.models import create_model
from densenet_ray.models.weights import load_initial_weights
from densenet_ray.train.config.options import TrainConfig
from densenet_ray.train.config.resolved import resolve


def test_torchvision_weights_with_a_new_classifier(tmp_path) -> None:
    reference = torchvision.models.densenet121()
    path = tmp_path / "densenet121.pth"
    torch.save(reference.state_dict(), path)
    model = create_model("densenet121", num_classes=10)
    assert load_initial_weights(model, str(path)) == ["classifier.weight", "classifier.bias"]
    assert torch.equal(model.features.conv0.weight, reference.features.conv0.weight)
    assert model.classifier.out_features == 10


def test_legacy_keys_and_our_checkpoint(tmp_path) -> None:
    reference = torchvision.models.densenet121()
    legacy = {
        re.sub(r"(denselayer\d+\.(?:norm|conv))([12])\.", r"\1.\2.", k): v
        for k, v in reference.state_dict().items()
        if "num_batches_tracked" not in k
    }
    torch.save(legacy, tmp_path / "legacy.pth")
    model = create_model("densenet121")
    assert load_initial_weights(model, str(tmp_path / "legacy.pth")) == []
    assert torch.equal(model.classifier.weight, reference.classifier.weight)
    (tmp_path / "run").mkdir()
    torch.save({"model": model.state_dict(), "epoch": 3}, tmp_path / "run" / "state.pt")
    again = create_model("densenet121")
    assert load_initial_weights(again, str(tmp_path / "run")) == []
    assert torch.equal(again.features.norm5.running_var, model.features.norm5.running_var)


def test_init_from_errors(tmp_path) -> None:
    with pytest.raises(ValueError, match="--init-from .*missing.pth does not exist"):
        resolve(TrainConfig(init_from=str(tmp_path / "missing.pth")))
    torch.save(create_model("densenet_bc100_k12").state_dict(), tmp_path / "bc100.pth")
    with pytest.raises(ValueError, match="--init-from .*bc100.pth does not fit the model"):
        resolve(TrainConfig(dataset="imagenet", workers=4, init_from=str(tmp_path / "bc100.pth"), data="/no/data"))
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="is not a PyTorch checkpoint"):
        resolve(TrainConfig(init_from=str(tmp_path / "junk.pth")))


def test_pretrained_goes_through_torchvisions_weights_api(tmp_path, monkeypatch) -> None:
    """A file already in torchvision's cache is what --pretrained loads (the state_dict torchvision publishes)."""
    from densenet_ray.models.weights import pretrained_state_dict

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    url = torchvision.models.DenseNet121_Weights.DEFAULT.url
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    reference = torchvision.models.densenet121()
    torch.save(reference.state_dict(), tmp_path / "hub" / "checkpoints" / url.rsplit("/", 1)[1])
    model = create_model("densenet121", num_classes=10)
    assert load_initial_weights(model, pretrained_state_dict("densenet121"), "--pretrained") == [
        "classifier.weight",
        "classifier.bias",
    ]
    assert torch.equal(
        model.features.denseblock4.denselayer16.conv2.weight, reference.features.denseblock4.denselayer16.conv2.weight
    )
    resolve(
        TrainConfig(dataset="imagenet", workers=4, pretrained=True, data="/no/data")
    )  # checked before any worker starts


def test_pretrained_errors(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    for proxy in ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY"):
        monkeypatch.setenv(proxy, "http://127.0.0.1:9")  # nothing listens: offline, and fast
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    with pytest.raises(
        ValueError, match=r"^--pretrained: cannot get https://download\.pytorch\.org/.*densenet169.*"
    ) as info:
        resolve(TrainConfig(dataset="imagenet", model="densenet169", workers=4, pretrained=True, data="/no/data"))
    assert "--init-from" in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(
        ValueError, match="ImageNet weights for densenet121, densenet161, densenet169, densenet201 only"
    ):
        resolve(TrainConfig(model="densenet_bc100_k12", pretrained=True))
    with pytest.raises(ValueError, match="not both"):
        resolve(TrainConfig(dataset="imagenet", workers=4, pretrained=True, init_from="x.pth", data="/no/data"))


def test_init_from_a_safetensors_file(tmp_path) -> None:
    from safetensors.torch import save_file

    reference = torchvision.models.densenet121()
    save_file(reference.state_dict(), tmp_path / "densenet121.safetensors")
    model = create_model("densenet121", num_classes=10)
    assert load_initial_weights(model, str(tmp_path / "densenet121.safetensors")) == [
        "classifier.weight",
        "classifier.bias",
    ]
    assert torch.equal(model.features.norm5.running_mean, reference.features.norm5.running_mean)
    (tmp_path / "broken.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{junk}")
    with pytest.raises(ValueError, match=r"--init-from .*broken.safetensors is not a safetensors file"):
        load_initial_weights(model, str(tmp_path / "broken.safetensors"))
