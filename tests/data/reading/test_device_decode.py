"""``--decode gpu``'s pipeline, run with the CPU as the decode device: the same batches as CPU decoding.

The stage is device-agnostic: on a GPU machine ``decode_jpeg`` runs on nvJPEG (``benchmarks/gpu.sh`` measures it),
here on libjpeg; everything else (order, parameters, augmentation arithmetic, corrupt-image handling) is the code
a GPU run executes.
"""

from __future__ import annotations

import dataclasses
import io
import json
import tarfile
from pathlib import Path

import pytest
import torch
from PIL import Image

from densenet_ray.data.reading.device_decode import DeviceDecodedLoader, decode_batch
from densenet_ray.data.reading.pipeline import PipelineConfig, make_loader
from densenet_ray.data.reading.transforms import cifar_train, imagenet_eval, imagenet_train
from densenet_ray.errors import UserError


@pytest.fixture(scope="module")
def imagenet_like(tmp_path_factory: pytest.TempPathFactory, fixture_tar: str) -> str:
    """40 real CIFAR-10 images upscaled to ImageNet-like sizes as JPEGs, and one JPEG cut off mid-scan."""
    from densenet_ray.data.building.build import build_dataset
    from densenet_ray.data.building.sources import imagefolder_source

    root = tmp_path_factory.mktemp("imagenet-like")
    folders = root / "images"
    with tarfile.open(fixture_tar) as archive:
        members = [m for m in archive.getmembers() if m.isfile()][::12][:40]
        for index, member in enumerate(members):
            image = Image.open(io.BytesIO(archive.extractfile(member).read())).convert("RGB")
            image = image.resize((256 + 8 * (index % 4), 288 - 8 * (index % 3)), Image.BICUBIC)
            label = member.name.split("/")[-2]
            (folders / label).mkdir(parents=True, exist_ok=True)
            image.save(folders / label / f"{index}.jpg", quality=90)
    whole = next(folders.rglob("*.jpg")).read_bytes()
    (folders / label / "truncated.jpg").write_bytes(whole[: len(whole) * 3 // 5])  # header intact, scan cut off
    out = root / "shards"
    build_dataset(imagefolder_source(str(folders)), str(out), shard_size=16, check_images=False)
    return str(out)


def _config(shards: str, decode_device: str | None, train: bool = True, workers: int = 0) -> PipelineConfig:
    return PipelineConfig(
        shards, "train", 8, loader_workers=workers, train=train, seed=5, epoch=1, decode_device=decode_device
    )


def _batches(shards: str, decode_device: str | None, train: bool = True, workers: int = 0) -> list[tuple]:
    loader = make_loader(_config(shards, decode_device, train, workers), imagenet_train() if train else imagenet_eval())
    return list(loader), loader.skipped


def test_training_batches_equal_cpu_decoding(imagenet_like: str) -> None:
    (cpu, _), (device, _) = _batches(imagenet_like, None), _batches(imagenet_like, "cpu")
    assert len(cpu) == len(device) == 5  # 41 samples, one listed undecodable by the build: 40 // 8
    for (cpu_images, cpu_labels), (images, labels) in zip(cpu, device, strict=True):
        assert torch.equal(cpu_labels, labels)
        # The same crops, jitter, lighting and flips; only the JPEG decoders (PIL's and torchvision's) may differ.
        assert (cpu_images - images).abs().mean() < 0.01


def test_evaluation_masks_a_truncated_jpeg_like_cpu_decoding(imagenet_like: str) -> None:
    cpu, cpu_skipped = _batches(imagenet_like, None, train=False)
    device, skipped = _batches(imagenet_like, "cpu", train=False, workers=1)  # EncodedBatch through a worker
    assert cpu_skipped == skipped == 1
    assert len(cpu) == len(device)
    for (cpu_images, cpu_labels, cpu_mask), (images, labels, mask) in zip(cpu, device, strict=True):
        assert torch.equal(cpu_mask, mask) and torch.equal(cpu_labels[mask], labels[mask])
        torch.testing.assert_close(images[mask], cpu_images[mask], atol=0.05, rtol=0)
        assert not images[~mask].any()
    assert sum(int(mask.sum()) for _, _, mask in device) == 40


def test_training_drops_what_the_device_cannot_decode(imagenet_like: str, tmp_path: Path) -> None:
    """Shards whose manifest does not list the truncated JPEG: the CPU path backfills, the device path drops it."""
    import shutil

    copy = tmp_path / "shards"
    shutil.copytree(imagenet_like, copy)
    manifest = json.loads((copy / "train.json").read_text())
    manifest["undecodable"] = []
    (copy / "train.json").write_text(json.dumps(manifest))
    config = PipelineConfig(
        str(copy), "train", 41, loader_workers=0, seed=5, max_corrupt_fraction=0.5, decode_device="cpu"
    )
    loader = make_loader(config, imagenet_train())
    ((images, labels),) = list(loader)
    assert images.shape == (40, 3, 224, 224) and len(labels) == 40 and loader.skipped == 1


def test_decode_batch_decodes_jpeg_and_png_and_reports_failures(imagenet_like: str) -> None:
    image = Image.new("RGB", (40, 30), (200, 10, 10))
    png, jpeg = io.BytesIO(), io.BytesIO()
    image.save(png, format="PNG")
    image.save(jpeg, format="JPEG", quality=95)
    data = [
        torch.frombuffer(bytearray(b), dtype=torch.uint8)
        for b in (jpeg.getvalue(), png.getvalue(), jpeg.getvalue()[:200])
    ]
    data.append(torch.empty(0, dtype=torch.uint8))
    out = decode_batch(data, torch.device("cpu"))
    assert out[0].shape == out[1].shape == (3, 30, 40) and out[2] is None and out[3] is None
    assert torch.equal(out[1][:, 0, 0], torch.tensor([200, 10, 10], dtype=torch.uint8))


def test_it_stands_in_for_an_epoch_loader(imagenet_like: str) -> None:
    """What the training worker reads off its loader, resumed mid-epoch."""
    cpu = make_loader(dataclasses.replace(_config(imagenet_like, None), start_batch=2), imagenet_train())
    device = make_loader(dataclasses.replace(_config(imagenet_like, "cpu"), start_batch=2), imagenet_train())
    assert isinstance(device, DeviceDecodedLoader)
    assert (
        (device.total_batches, len(device), device.skipped) == (cpu.total_batches, len(cpu), cpu.skipped) == (5, 3, 0)
    )
    assert [labels.tolist() for _, labels in device] == [labels.tolist() for _, labels in cpu]


def test_per_image_transforms_are_refused(imagenet_like: str) -> None:
    with pytest.raises(UserError, match="--decode cpu"):
        DeviceDecodedLoader(make_loader(_config(imagenet_like, None)), cifar_train(), "cpu")
