"""The modern recipe's options change the computation as documented: label smoothing, MixUp/CutMix, the weights'
moving average, warmup, clipping, accumulation (with DDP's no_sync) and the parameter groups."""

from __future__ import annotations

import copy
import dataclasses
import io
import tarfile

import pytest
import torch
import torch.distributed as dist
from PIL import Image
from torch import nn

from densenet_ray.data.reading.transforms import cifar_eval
from densenet_ray.models import create_model
from densenet_ray.train.config.options import TrainConfig
from densenet_ray.train.config.resolved import resolve
from densenet_ray.train.engine import StepContext, StepSettings, train_epoch
from densenet_ray.train.recipe import WeightAverage, batch_mixer, parameter_groups
from densenet_ray.train.schedule import learning_rate

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def cifar_batch(fixture_tar: str) -> tuple[torch.Tensor, torch.Tensor]:
    """32 real CIFAR-10 training images (normalised) and their labels."""
    images, labels = [], []
    with tarfile.open(fixture_tar) as archive:
        members = [m for m in archive.getmembers() if m.isfile() and m.name.startswith("train/")]
        classes = sorted({m.name.split("/")[1] for m in members})
        for member in members[::15][:32]:
            image = Image.open(io.BytesIO(archive.extractfile(member).read())).convert("RGB")
            images.append(cifar_eval()(image))
            labels.append(classes.index(member.name.split("/")[1]))
    return torch.stack(images), torch.tensor(labels)


def _one_hot_model() -> nn.Module:
    """Logits 100 times a one-hot input: a confident, correct prediction of class ``argmax(input)``."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(10, 10))
    with torch.no_grad():
        model[1].weight.copy_(100 * torch.eye(10))
        model[1].bias.zero_()
    return model


def _train(model: nn.Module, batches: list, settings: StepSettings, lr: float = 0.1, momentum: float = 0.0):
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    context = StepContext(model, CPU, optimizer=optimizer, settings=settings)
    return train_epoch(context, batches)


def test_label_smoothing_keeps_the_loss_of_a_confident_correct_prediction_above_zero() -> None:
    labels = torch.arange(10)
    batch = [(torch.eye(10).view(10, 10, 1, 1), labels)]
    plain = _train(_one_hot_model(), batch, StepSettings(), lr=0.0)
    smoothed = _train(_one_hot_model(), batch, StepSettings(label_smoothing=0.1), lr=0.0)
    assert plain.loss < 1e-30
    # Smoothing 0.1 over 10 classes puts 0.01 on each wrong class, each 100 logits below: a loss of about 0.09 * 100.
    assert smoothed.loss == pytest.approx(0.09 * 100, rel=0.01)
    assert plain.error == smoothed.error == 0.0  # hits are counted against the true labels


def test_mixed_batches_have_soft_targets_that_sum_to_one(cifar_batch) -> None:
    images, labels = cifar_batch
    mixer = batch_mixer(0.2, 1.0, 1.0, 0.5, num_classes=10, seed=0)
    assert mixer is not None and batch_mixer(0.0, 0.0, 1.0, 0.5, 10, 0) is None
    before = torch.get_rng_state()
    kinds = set()
    for key in range(12):
        mixed, targets = mixer(key, images.clone(), labels)
        assert targets.shape == (32, 10) and torch.allclose(targets.sum(1), torch.ones(32))
        assert not torch.equal(mixed, images)  # every batch is mixed at mix_prob 1
        kinds.add(_mixing_kind(mixed, images, targets, labels))
        assert torch.equal(mixer(key, images.clone(), labels)[0], mixed)  # its own seed: the same on a resume
    assert kinds == {"mixup", "cutmix"}  # the switch chooses both
    assert torch.equal(torch.get_rng_state(), before)  # the caller's generator (dropout) is untouched


def _mixing_kind(mixed: torch.Tensor, images: torch.Tensor, targets: torch.Tensor, labels: torch.Tensor) -> str:
    """CutMix: one box of every image replaced by the batch's previous image; MixUp: every image blended with it,
    by the weight its own label has in the target."""
    rolled = images.roll(1, 0)
    box = (mixed == rolled).all(0).all(0)
    if torch.equal(torch.where(box, rolled, images), mixed):
        return "cutmix"
    row = next(i for i in range(1, len(labels)) if labels[i] != labels[i - 1])
    weight = targets[row, labels[row]]
    assert torch.allclose(mixed, weight * images + (1 - weight) * rolled, atol=1e-5)
    return "mixup"


def test_unmixed_batches_get_one_hot_targets(cifar_batch) -> None:
    images, labels = cifar_batch
    mixer = batch_mixer(0.2, 0.0, 0.0, 0.5, num_classes=10, seed=0)  # mix_prob 0: never mixed
    same, targets = mixer(3, images, labels)
    assert torch.equal(same, images) and torch.equal(targets.argmax(1), labels) and targets.sum() == 32


def test_the_moving_average_matches_a_hand_computed_update_for_two_steps(cifar_batch) -> None:
    torch.manual_seed(0)
    model = create_model("densenet_bc100_k12", depth=10, num_classes=10)
    decay = 0.9
    average = WeightAverage(model, decay)
    snapshots = []
    settings = StepSettings(
        after_optimizer_step=lambda: (average.update(model), snapshots.append(copy.deepcopy(model)))
    )
    images, labels = cifar_batch
    _train(model, [(images[:16], labels[:16]), (images[16:], labels[16:])], settings)
    first, second = (snapshot.state_dict() for snapshot in snapshots)
    averaged = average.module.state_dict()
    bn_mean = next(key for key in averaged if key.endswith("running_mean"))
    for key in (next(iter(averaged)), bn_mean):  # a convolution's weight, and a BatchNorm buffer
        expected = decay * first[key] + (1 - decay) * second[key]  # the first update copies the weights
        assert torch.allclose(averaged[key], expected, atol=1e-6), key
        assert not torch.allclose(averaged[key], second[key]), key  # not the raw weights
    restored = WeightAverage(create_model("densenet_bc100_k12", depth=10, num_classes=10), decay)
    restored.load_state_dict(average.state_dict())
    restored_state, state = restored.state_dict(), average.state_dict()
    assert restored_state.keys() == state.keys() and all(torch.equal(restored_state[k], state[k]) for k in state)


def test_warmup_scales_the_first_steps_linearly() -> None:
    warm = resolve(TrainConfig(epochs=10, lr_schedule="cosine", warmup=1)).options
    cold = dataclasses.replace(warm, warmup=0.0)
    assert learning_rate(warm, 0, 0, 100) == pytest.approx(0.1 / 100)  # the first step
    assert learning_rate(warm, 0, 49, 100) == pytest.approx(0.5 * learning_rate(cold, 0, 49, 100))
    assert learning_rate(warm, 1, 0, 100) == learning_rate(cold, 1, 0, 100)
    step = resolve(TrainConfig(epochs=10, warmup=0.5)).options
    assert learning_rate(step, 0, 0, 100) == pytest.approx(0.1 / 50)


def _no_bn_model() -> nn.Module:
    """BatchNorm normalises by each batch's own statistics, so only a model without it accumulates exactly."""
    torch.manual_seed(1)
    return nn.Sequential(nn.Conv2d(3, 8, 3, stride=2), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 15 * 15, 10))


def test_accumulating_two_batches_of_32_steps_as_one_batch_of_64(cifar_batch) -> None:
    images, labels = cifar_batch
    images, labels = torch.cat([images, images.flip(-1)]), torch.cat([labels, labels])
    whole, halves = _no_bn_model(), _no_bn_model()
    _train(whole, [(images, labels)], StepSettings(), momentum=0.9)
    stats = _train(
        halves, [(images[:32], labels[:32]), (images[32:], labels[32:])], StepSettings(accumulate=2), 0.1, 0.9
    )
    assert stats.steps == 2 and stats.samples == 64
    for a, b in zip(whole.parameters(), halves.parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-6)
    # An epoch of 3 batches with --accumulate 2: the last optimizer step has one batch, weighted as a whole step.
    reference, accumulated = _no_bn_model(), _no_bn_model()
    thirds = [(images[i : i + 16], labels[i : i + 16]) for i in (0, 16, 32)]
    _train(reference, [(images[:32], labels[:32]), thirds[2]], StepSettings())
    _train(accumulated, thirds, StepSettings(accumulate=2))
    for a, b in zip(reference.parameters(), accumulated.parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-6)


def test_accumulation_under_ddp_synchronises_only_the_last_batch(cifar_batch, tmp_path, monkeypatch) -> None:
    images, labels = cifar_batch
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        model = nn.parallel.DistributedDataParallel(_no_bn_model())
        synced = []
        original = type(model).no_sync

        def spy(self):
            synced.append(False)
            return original(self)

        monkeypatch.setattr(type(model), "no_sync", spy)
        _train(model, [(images[i : i + 8], labels[i : i + 8]) for i in range(0, 32, 8)], StepSettings(accumulate=2))
        assert len(synced) == 2  # batches 0 and 2 kept their gradients local; 1 and 3 all-reduced
        reference = _no_bn_model()
        _train(reference, [(images[:16], labels[:16]), (images[16:], labels[16:])], StepSettings())
        for a, b in zip(reference.parameters(), model.module.parameters(), strict=True):
            assert torch.allclose(a, b, atol=1e-6)
    finally:
        dist.destroy_process_group()


def test_clipping_bounds_the_update_to_lr_times_the_norm(cifar_batch) -> None:
    images, labels = cifar_batch
    model = _no_bn_model()
    before = [p.detach().clone() for p in model.parameters()]
    _train(model, [(images, labels)], StepSettings(clip_grad_norm=0.01), lr=1.0)
    change = torch.cat([(p.detach() - b).flatten() for p, b in zip(model.parameters(), before, strict=True)])
    assert change.norm() == pytest.approx(0.01, rel=1e-3)


def test_no_decay_norm_bias_exempts_batchnorm_and_biases() -> None:
    model = create_model("densenet_bc100_k12", depth=16, num_classes=10)
    (everything,) = parameter_groups(model, 1e-4, False)
    decayed, exempt = parameter_groups(model, 1e-4, True)
    assert len(everything["params"]) == len(decayed["params"]) + len(exempt["params"])
    assert (decayed["weight_decay"], exempt["weight_decay"]) == (1e-4, 0.0)
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert {id(p) for p in exempt["params"]} == {id(p) for m in norms for p in m.parameters()} | {
        id(model.classifier.bias)
    }
    assert all(p.dim() == 4 for p in decayed["params"] if p is not model.classifier.weight)  # the convolutions


def test_a_checkpoint_without_a_moving_average_says_so_in_one_line() -> None:
    from densenet_ray.errors import UserError
    from densenet_ray.models.weights import state_dict_of

    weights = {"classifier.bias": torch.zeros(10)}
    with pytest.raises(
        UserError, match=r"^checkpoint ckpt has no moving average of its weights \(its run trained without --ema\)$"
    ):
        state_dict_of({"model": weights, "ema": None}, "ckpt", "checkpoint", average=True)
    ema = {"module.classifier.bias": torch.ones(10), "n_averaged": torch.tensor(3)}
    assert state_dict_of({"model": weights, "ema": ema}, "ckpt", average=True).keys() == {"classifier.bias"}
