"""The paper's transforms (DENSENET.md section 4) on real CIFAR-10 images."""

from __future__ import annotations

import io
import tarfile

import numpy as np
import pytest
import torch
from PIL import Image

from densenet_ray.data.reading.transforms import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    cifar_eval,
    cifar_train,
    for_dataset,
    imagenet_eval,
    imagenet_train,
    svhn,
)


@pytest.fixture(scope="module")
def image(fixture_tar: str) -> Image.Image:
    with tarfile.open(fixture_tar) as archive:
        return Image.open(io.BytesIO(archive.extractfile("train/cat/0000.jpg").read())).convert("RGB")


def test_cifar_eval_normalises_with_the_original_statistics(image) -> None:
    out = cifar_eval()(image)
    raw = torch.from_numpy(np.array(image)).permute(2, 0, 1).float() / 255
    expected = (raw - torch.tensor(CIFAR10_MEAN).view(3, 1, 1)) / torch.tensor(CIFAR10_STD).view(3, 1, 1)
    torch.testing.assert_close(out, expected)


def test_cifar_train_pads_after_normalising_so_the_border_is_the_mean(image) -> None:
    torch.manual_seed(0)
    borders = 0
    for _ in range(40):
        out = cifar_train()(image)
        assert out.shape == (3, 32, 32)
        zero_rows = (out.abs().sum(dim=(0, 2)) == 0).sum() + (out.abs().sum(dim=(0, 1)) == 0).sum()
        borders += int(zero_rows > 0)
    # Padding shows up as exact zeros (the mean after normalising), never as black (about -2).
    assert borders > 20
    assert cifar_train()(image).min() > -2.5


def test_cifar_train_flips_and_crops(image) -> None:
    torch.manual_seed(1)
    outputs = {cifar_train()(image).sum().item() for _ in range(20)}
    assert len(outputs) > 10


def test_svhn_divides_by_255(image) -> None:
    out = svhn()(image)
    assert out.min() >= 0 and out.max() <= 1 and out.shape == (3, 32, 32)


def test_imagenet_transforms_give_224(image) -> None:
    big = image.resize((300, 400))
    assert imagenet_eval()(big).shape == (3, 224, 224)
    torch.manual_seed(0)
    assert imagenet_train()(big).shape == (3, 224, 224)


def test_for_dataset_and_unknown(image) -> None:
    from densenet_ray.data.reading.transforms import CIFAR100_MEAN, CIFAR100_STD, cifar_eval

    torch.testing.assert_close(
        for_dataset("cifar100", train=False)(image), cifar_eval(CIFAR100_MEAN, CIFAR100_STD)(image)
    )
    torch.manual_seed(0)
    assert torch.equal(for_dataset("cifar10", train=True, augment=False)(image), cifar_eval()(image))  # no crops
    with pytest.raises(ValueError, match="no transforms for dataset 'mnist'"):
        for_dataset("mnist", train=True)


def _jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


@pytest.mark.parametrize("policy", ["randaugment", "trivialaugment", "autoaugment"])
def test_policies_are_seeded_per_sample_like_the_papers_augmentation(image, policy) -> None:
    from densenet_ray.data.reading.samples import decode
    from densenet_ray.data.reading.transforms import ExtraAugment

    paper = for_dataset("cifar10", train=True)
    modern = for_dataset("cifar10", train=True, extra=ExtraAugment(policy))
    data = _jpeg(image)
    draws = [decode(data, modern, seed) for seed in range(6)]
    assert all(torch.equal(decode(data, modern, seed), draws[seed]) for seed in range(6))  # the seed decides all
    assert len({tuple(d.flatten()[::97].tolist()) for d in draws}) > 1
    assert any(not torch.equal(d, decode(data, paper, seed)) for seed, d in enumerate(draws))  # the policy acts
    assert draws[0].shape == (3, 32, 32)


def test_random_erasing_zeroes_a_rectangle_after_normalising(image) -> None:
    from densenet_ray.data.reading.transforms import ExtraAugment

    plain = for_dataset("cifar10", train=True, augment=False)
    erased = for_dataset("cifar10", train=True, augment=False, extra=ExtraAugment(erasing=1.0))
    torch.manual_seed(0)
    out = erased(image)
    zero = (out == 0).all(0)
    assert not (plain(image) == 0).all(0).any() and zero.any()
    rows, cols = zero.any(1).nonzero().flatten(), zero.any(0).nonzero().flatten()
    assert zero[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1].all()  # one solid rectangle


def test_imagenet_with_a_policy_follows_torchvisions_reference_recipe(image) -> None:
    from torchvision.transforms import v2

    from densenet_ray.data.reading.transforms import ExtraAugment

    transform = for_dataset("imagenet", train=True, extra=ExtraAugment("autoaugment", erasing=0.25))
    steps = [type(step) for step in transform.transforms]
    assert steps == [v2.Compose, v2.RandomErasing]
    inner = [type(step) for step in transform.transforms[0].transforms]
    assert inner[:3] == [v2.RandomResizedCrop, v2.RandomHorizontalFlip, v2.AutoAugment]
    assert transform.transforms[0].transforms[2].policy == v2.AutoAugmentPolicy.IMAGENET
    assert transform(image).shape == (3, 224, 224)
    assert for_dataset("svhn", train=True, extra=ExtraAugment("autoaugment")).transforms[0].policy == (
        v2.AutoAugmentPolicy.SVHN
    )
