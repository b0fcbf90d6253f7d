"""ImageNet augmentation in its split form (sample, then apply), on real CIFAR-10 images upscaled to ImageNet size."""

from __future__ import annotations

import io
import statistics
import tarfile

import pytest
import torch
from PIL import Image
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from densenet_ray.data.reading import augment
from densenet_ray.data.reading.augment import ImageNetEval, ImageNetTrain


@pytest.fixture(scope="module")
def images(fixture_tar: str) -> list[torch.Tensor]:
    """Eight real images, upscaled to differing ImageNet-like sizes, as uint8 CHW tensors."""
    out = []
    with tarfile.open(fixture_tar) as archive:
        members = [m for m in archive.getmembers() if m.isfile()][:8]
        for index, member in enumerate(members):
            image = Image.open(io.BytesIO(archive.extractfile(member).read())).convert("RGB")
            out.append(TF.pil_to_tensor(image.resize((256 + 16 * index, 320 - 8 * index), Image.BICUBIC)))
    return out


def _seeded(seed: int, function, *args):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return function(*args)


def test_crops_are_torchvisions_random_resized_crop() -> None:
    """For every seed, the crop box is the one v2.RandomResizedCrop draws (same algorithm, same RNG use)."""
    train, reference = ImageNetTrain(), v2.RandomResizedCrop(224, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3))
    stand_in = torch.zeros(3, 300, 400, dtype=torch.uint8)
    for seed in range(200):
        row = _seeded(seed, train.sample, 300, 400)
        box = _seeded(seed, reference.make_params, [stand_in])
        assert row[augment.CROP].tolist() == [box["top"], box["left"], box["height"], box["width"]]


def test_parameter_distribution_over_a_seed_set() -> None:
    train = ImageNetTrain()
    rows = torch.stack([_seeded(seed, train.sample, 300, 400) for seed in range(2000)])
    area = rows[:, 2] * rows[:, 3] / (300 * 400)
    aspect = rows[:, 3] / rows[:, 2]
    assert area.min() >= 0.08 - 1e-2 and area.max() <= 1.0
    assert aspect.min() >= 3 / 4 - 0.02 and aspect.max() <= 4 / 3 + 0.02
    assert abs(rows[:, augment.FLIP].mean().item() - 0.5) < 0.05  # 4.5 standard deviations of a fair coin
    factors = rows[:, augment.FACTORS]
    assert factors.min() >= 0.6 and factors.max() <= 1.4 and abs(factors.mean().item() - 1.0) < 0.02
    orders = rows[:, augment.ORDER]
    assert torch.equal(orders.sort(dim=1).values, torch.tensor([[0.0, 1.0, 2.0]]).expand(2000, 3))
    first = [int(v) for v in orders[:, 0]]
    assert all(abs(first.count(j) / 2000 - 1 / 3) < 0.05 for j in range(3))
    assert abs(statistics.pstdev(rows[:, augment.LIGHTING].flatten().tolist()) - 0.1) < 0.01


def test_batched_apply_is_torchvisions_arithmetic(images: list[torch.Tensor]) -> None:
    """The batch form, one factor per sample, equals torchvision's per-image functions applied in the drawn order."""
    train = ImageNetTrain()
    rows = torch.stack([_seeded(seed, train.sample, *image.shape[-2:]) for seed, image in enumerate(images)])
    batch = train.apply(images, rows)
    jitters = (TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation)
    for image, row, out in zip(images, rows, batch, strict=True):
        top, left, height, width = (int(v) for v in row[augment.CROP])
        expected = TF.to_dtype(TF.resized_crop(image, top, left, height, width, [224, 224]), torch.float32, scale=True)
        for jitter in row[augment.ORDER].long().tolist():
            expected = jitters[jitter](expected, float(row[augment.FACTORS][jitter]))
        eigval, eigvec = torch.tensor(augment.IMAGENET_EIGVAL), torch.tensor(augment.IMAGENET_EIGVEC)
        expected = expected + (eigvec @ (row[augment.LIGHTING].float() * eigval)).view(3, 1, 1)
        expected = TF.normalize(expected, augment.IMAGENET_MEAN, augment.IMAGENET_STD)
        if row[augment.FLIP] > 0.5:
            expected = TF.horizontal_flip(expected)
        torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


def test_one_image_call_draws_from_the_global_rng(images: list[torch.Tensor]) -> None:
    train = ImageNetTrain()
    image = TF.to_pil_image(images[0])
    first, second = _seeded(3, train, image), _seeded(3, train, image)
    assert first.shape == (3, 224, 224) and torch.equal(first, second)
    assert not torch.equal(first, _seeded(4, train, image))


def test_eval_resizes_the_short_side_then_center_crops(images: list[torch.Tensor]) -> None:
    evaluation = ImageNetEval()
    batch = evaluation.apply(images[:2])
    single = evaluation(TF.to_pil_image(images[1]))
    assert batch.shape == (2, 3, 224, 224)
    torch.testing.assert_close(batch[1], single)
    expected = TF.center_crop(TF.resize(images[0], [256]), [224])
    expected = TF.normalize(
        TF.to_dtype(expected, torch.float32, scale=True), augment.IMAGENET_MEAN, augment.IMAGENET_STD
    )
    torch.testing.assert_close(batch[0], expected)
