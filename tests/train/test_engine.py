"""The epoch engine on real CIFAR-10 shards, in one process: loss falls, evaluation is exact."""

from __future__ import annotations

import copy

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


def test_the_step_loop_reads_nothing_back_from_the_device(shards, monkeypatch) -> None:
    """Loss and hits accumulate on the device: no ``.item()``, ``float()``, ``int()`` or ``bool()`` of a tensor runs
    inside the loop (each would wait for the GPU), and the sums equal a loop that reads every step."""
    torch.manual_seed(0)
    model = create_model("densenet_bc100_k12", depth=16)
    reference = copy.deepcopy(model)
    batches = list(make_loader(PipelineConfig(shards, "train", 50, loader_workers=0), cifar_eval()))
    reads: list[str] = []
    for name in ("item", "tolist", "__float__", "__int__", "__bool__", "__index__"):
        original = getattr(torch.Tensor, name)
        monkeypatch.setattr(torch.Tensor, name, lambda self, *a, _n=name, _o=original: reads.append(_n) or _o(self, *a))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True)
    stats = train_epoch(StepContext(model, torch.device("cpu"), optimizer=optimizer), batches)
    assert reads == []
    assert stats.loss > 0 and reads  # reading the statistics is the sync, and it is seen
    monkeypatch.undo()
    optimizer = torch.optim.SGD(reference.parameters(), lr=0.1, momentum=0.9, nesterov=True)
    reference.train()
    loss_sum, correct = 0.0, 0
    for images, labels in batches:
        logits = reference(images)
        loss = torch.nn.functional.cross_entropy(logits, labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        loss_sum += float(loss.detach()) * len(labels)
        correct += int((logits.argmax(1) == labels).sum())
    assert (stats.steps, stats.samples, stats.correct) == (10, 500, correct)
    assert stats.loss_sum == pytest.approx(loss_sum, rel=1e-5)


def test_unequal_rank_shares_average_to_the_global_batch_mean(shards) -> None:
    """Global batch 21 on 2 ranks (11 + 10 rows): with each rank's loss divided by 21 / 2, the average of the two
    ranks' updates (what DDP's gradient average gives) equals one step on the mean loss of all 21 rows. A plain
    per-rank batch mean would weigh the 10-row rank's samples more; the test checks that it differs too."""
    ((images, labels),) = list(make_loader(PipelineConfig(shards, "train", 21, loader_workers=0), cifar_eval()))[:1]
    torch.manual_seed(0)
    start = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 10))  # no BatchNorm: rows independent

    def update(rows: slice, rows_per_rank: float | None) -> torch.Tensor:
        model = copy.deepcopy(start)
        optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
        context = StepContext(model, torch.device("cpu"), optimizer=optimizer, rows_per_rank=rows_per_rank)
        train_epoch(context, [(images[rows], labels[rows])])
        return torch.cat([(a - b).flatten() for a, b in zip(start.parameters(), model.parameters(), strict=True)])

    reference = update(slice(0, 21), None)
    weighted = (update(slice(0, 11), 21 / 2) + update(slice(11, 21), 21 / 2)) / 2
    torch.testing.assert_close(weighted, reference, rtol=1e-5, atol=1e-7)
    unweighted = (update(slice(0, 11), None) + update(slice(11, 21), None)) / 2
    assert not torch.allclose(unweighted, reference, rtol=1e-5, atol=1e-7)
