"""The epoch engine on real CIFAR-10 shards, in one process: loss falls, evaluation is exact, and an epoch runs with
the schedule, mixing and frozen parameters it is given."""

from __future__ import annotations

import copy
import itertools

import pytest
import torch

from densenet_ray.data.building.build import build_dataset
from densenet_ray.data.building.sources import imagefolder_source
from densenet_ray.data.reading.pipeline import PipelineConfig, make_loader
from densenet_ray.data.reading.transforms import cifar_eval
from densenet_ray.models import create_model
from densenet_ray.train.checkpoint.state import Position, TrainingState
from densenet_ray.train.config.options import TrainConfig
from densenet_ray.train.config.resolved import resolve
from densenet_ray.train.engine import NOTHING_FROZEN, StepContext, StepSettings, evaluate, train_epoch
from densenet_ray.train.epoch import EpochData, EpochSchedule, frozen_in, train_and_evaluate
from densenet_ray.train.recipe import WeightAverage, make_optimizer, parameter_groups
from densenet_ray.train.schedule import mean_rate


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
        stats = train_epoch(StepContext(model, device, optimizer=optimizer), loader, schedule=lambda i: 0.1)
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


def test_each_optimizer_step_takes_the_schedules_rate_and_each_batch_its_mixing_key(shards) -> None:
    """Resumed at batch 2 with 2 batches a step: steps 1 and 2 run at the schedule's rates (each group's times its
    ``lr_scale``), and the mixer sees every batch under its index in the epoch."""
    loader = make_loader(PipelineConfig(shards, "train", 25, loader_workers=0), cifar_eval())
    batches = list(itertools.islice(loader, 4))
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 10))
    groups = [{"params": [model[1].weight], "lr_scale": 1.0}, {"params": [model[1].bias], "lr_scale": 0.1}]
    optimizer = torch.optim.SGD(groups, lr=1.0)
    context = StepContext(model, torch.device("cpu"), optimizer=optimizer, settings=StepSettings(accumulate=2))
    mixed, rates = [], []

    def mixer(index: int, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mixed.append(index)
        return images.flip(0), torch.nn.functional.one_hot(labels.flip(0), 10).float()

    def after(index: int, stats: object) -> None:
        rates.append([group["lr"] for group in optimizer.param_groups])

    schedule = [0.4, 0.2, 0.1].__getitem__
    stats = train_epoch(context, batches, schedule=schedule, mixer=mixer, first_step=2, on_step=after)
    assert mixed == [2, 3, 4, 5] and stats.steps == 4
    assert [rate for step in rates for rate in step] == pytest.approx([0.2, 0.02, 0.2, 0.02, 0.1, 0.01, 0.1, 0.01])


def test_an_epoch_from_a_resume_trains_the_rest_evaluates_every_sample_and_moves_on(shards) -> None:
    """Epoch 1 of 3 resumed at batch 4 of 10: batches 4 to 9 train at the epoch's cosine rates, the weights and their
    moving average are each evaluated over all 500 samples, and the position goes to the next epoch's start."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 10))
    optimizer = make_optimizer(parameter_groups(model, 1e-4, False), "sgd", 0.1, 0.9)
    position = Position(epoch=1, next_batch=4, global_step=14)
    state = TrainingState(model, optimizer, average=WeightAverage(model, 0.9), position=position)
    context = StepContext(model, torch.device("cpu"), optimizer=optimizer)
    train = make_loader(PipelineConfig(shards, "train", 50, loader_workers=0, epoch=1, start_batch=4), cifar_eval())
    evaluation = PipelineConfig(shards, "train", 64, loader_workers=0, train=False)
    data = EpochData(train, 10, lambda: make_loader(evaluation, cifar_eval()))
    schedule = EpochSchedule(resolve(TrainConfig(epochs=3, lr=0.1, lr_schedule="cosine")).options, 1, 10)
    steps: list[int] = []
    frozen = frozen_in(model, 1, freeze_epochs=1)
    assert frozen is NOTHING_FROZEN and len(frozen_in(model, 0, freeze_epochs=1).parameters) == 2
    outcome = train_and_evaluate(context, state, schedule, None, frozen, data, lambda i, s: steps.append(i))
    assert steps == list(range(4, 10)) and outcome.stats.samples == 300
    assert [result.samples for result in outcome.results] == [500, 500]
    assert outcome.results[0].loss != outcome.results[1].loss  # the average is not the raw weights
    assert (position.epoch, position.next_batch, position.history) == (2, 0, ())
    assert position.best_error == outcome.results[0].top1_error
    assert outcome.lr == pytest.approx(schedule(9))  # the last step's
    assert outcome.mean_lr == pytest.approx(mean_rate(schedule.options, 1, 10))
    assert outcome.steady is not None and outcome.steady[0] == 50  # the sixth step's samples, after five warm-up steps
    assert outcome.skipped == 0
