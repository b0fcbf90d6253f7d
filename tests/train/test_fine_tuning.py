"""Fine-tuning: a loaded backbone with a new head, the backbone's own learning rate, AdamW, and the head-only
epochs that leave the backbone and its BatchNorm statistics as loaded (on real CIFAR-10 photographs)."""

from __future__ import annotations

import io
import tarfile

import pytest
import torch
import torchvision
from PIL import Image

from densenet_ray.data.reading.transforms import cifar_eval
from densenet_ray.models import create_model
from densenet_ray.models.weights import load_initial_weights
from densenet_ray.train.engine import Frozen, StepContext, train_epoch
from densenet_ray.train.recipe import backbone, head_parameters, make_optimizer, parameter_groups

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def photos(fixture_tar: str) -> tuple[torch.Tensor, torch.Tensor]:
    """16 real CIFAR-10 training images (normalised) and their labels."""
    images, labels = [], []
    with tarfile.open(fixture_tar) as archive:
        members = [m for m in archive.getmembers() if m.isfile()][::31][:16]
        for member in members:
            images.append(cifar_eval()(Image.open(io.BytesIO(archive.extractfile(member).read())).convert("RGB")))
            labels.append(len(images) % 5)
    return torch.stack(images), torch.tensor(labels)


def test_a_torchvision_backbone_loads_and_the_head_starts_anew() -> None:
    reference = torchvision.models.densenet121()
    torch.manual_seed(7)
    fresh = create_model("densenet121", num_classes=1000)
    torch.manual_seed(7)
    model = create_model("densenet121", num_classes=1000)
    # Same shape, other classes (an own-images run): the classifier is re-initialised, the rest loaded.
    assert load_initial_weights(model, reference.state_dict(), reset_head=True) == [
        "classifier.weight",
        "classifier.bias",
    ]
    loaded, theirs = model.state_dict(), reference.state_dict()
    assert all(torch.equal(loaded[key], theirs[key]) for key in theirs if not key.startswith("classifier."))
    assert torch.equal(model.classifier.weight, fresh.classifier.weight)
    assert not torch.equal(model.classifier.weight, reference.classifier.weight)


def test_the_backbone_learns_at_its_own_rate(photos) -> None:
    model = create_model("densenet_bc100_k12", depth=10, num_classes=5)
    groups = parameter_groups(model, 1e-4, True, backbone_lr_scale=0.1)
    assert [(g["weight_decay"], g["lr_scale"]) for g in groups] == [(1e-4, 1.0), (1e-4, 0.1), (0.0, 1.0), (0.0, 0.1)]
    head = {id(p) for p in head_parameters(model)}
    assert head == {id(model.classifier.weight), id(model.classifier.bias)}
    assert {id(p) for g in groups if g["lr_scale"] == 1.0 for p in g["params"]} == head
    optimizer = make_optimizer(groups, "adamw", 1e-3, 0.9)
    assert isinstance(optimizer, torch.optim.AdamW) and optimizer.param_groups[1]["lr_scale"] == 0.1


def test_frozen_epochs_leave_the_backbone_and_its_statistics_as_loaded(photos) -> None:
    images, labels = photos
    model = create_model("densenet_bc100_k12", depth=10, num_classes=5)
    before = {key: value.clone() for key, value in model.state_dict().items()}
    parameters, norms = backbone(model)
    optimizer = make_optimizer(parameter_groups(model, 1e-4, False), "sgd", 0.1, 0.9)
    context = StepContext(model, CPU, optimizer=optimizer)
    train_epoch(context, [(images, labels)] * 2, frozen=Frozen(parameters, norms))
    after = model.state_dict()
    changed = sorted(key for key in before if not torch.equal(before[key], after[key]))
    assert changed == ["classifier.bias", "classifier.weight"]  # no weight, no running mean or variance moved
    train_epoch(context, [(images, labels)])  # nothing frozen
    assert not torch.equal(model.features.conv0.weight, before["features.conv0.weight"])
    assert not torch.equal(model.features.norm5.running_mean, before["features.norm5.running_mean"])
