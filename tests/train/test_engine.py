"""The epoch engine on real CIFAR-10 shards, in one process: loss falls, evaluation is exact."""

from __future__ import annotations

import pytest
import torch

from densenet_ray.data.build import build_dataset
from densenet_ray.data.pipeline import PipelineConfig, make_loader
from densenet_ray.data.sources import imagefolder_source
from densenet_ray.data.transforms import cifar_eval
from densenet_ray.models import create_model
from densenet_ray.train.engine import StepContext, evaluate, train_epoch


@pytest.fixture(scope="module")
def shards(tmp_path_factory, fixture_tar) -> str:
    out = tmp_path_factory.mktemp("shards")
    build_dataset(imagefolder_source(fixture_tar), str(out), shard_size=100)
    return str(out)


@pytest.mark.slow
def test_training_lowers_the_loss_on_real_images(shards) -> None:
    torch.manual_seed(0)
    model = create_model("densenet_bc100_k12", depth=16, growth_rate=12)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-4)
    device = torch.device("cpu")
    losses = []
    for epoch in range(4):
        loader = make_loader(PipelineConfig(shards, "train", 50, loader_workers=0, epoch=epoch), cifar_eval())
        stats = train_epoch(StepContext(model, device, optimizer=optimizer, set_lr=lambda i: 0.1), loader)
        assert stats.steps == 10 and stats.samples == 500
        losses.append(stats.loss)
    assert losses[-1] < losses[0] - 0.2, losses


def test_evaluation_counts_every_masked_sample_exactly(shards) -> None:
    model = create_model("densenet_bc100_k12", depth=16, num_classes=10)
    loader = make_loader(PipelineConfig(shards, "train", 64, loader_workers=0, train=False), cifar_eval())
    stats = evaluate(StepContext(model, torch.device("cpu")), loader)
    assert stats.samples == 500
    assert 0 <= stats.top5_error <= stats.top1_error <= 1
    # The same numbers computed by hand over the unpadded rows:
    model.eval()
    hits = total = 0
    with torch.no_grad():
        for images, labels, mask in make_loader(
            PipelineConfig(shards, "train", 64, loader_workers=0, train=False), cifar_eval()
        ):
            hits += int((model(images).argmax(1) == labels)[mask].sum())
            total += int(mask.sum())
    assert total == 500 and stats.top1_error == pytest.approx(1 - hits / 500)
