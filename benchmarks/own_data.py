"""Own-images input pipeline against torchvision's ``ImageFolder`` and ``DataLoader``, side by side in one run.

The images: the first ``--per-class`` photographs of ``--classes`` CIFAR-10 classes from
``../shared/data/cifar10-jpeg/train.tar``, upscaled to ``--size`` pixels and stored as JPEG (quality 90) in class
folders, as a user's own folder would hold them. Ours reads them from shards built by ``data build imagefolder``
(local disk) and decodes them with ``torchvision.io`` as ``train images`` does; torchvision's reads the folder
with its default PIL loader. Both apply the same transform (``train images``'s for that size:
random-resized crop and flip for sizes over 64 pixels, normalised by the manifest's statistics), the same batch
size and the same number of loader processes, and shuffle. Each pass reads one whole epoch; the passes alternate,
and the report gives every pass's images/s, the medians and ours / theirs. A third row gives ``ImageFolder`` with a
``torchvision.io`` loader, the same decoder as ours, to show what the decoder is worth and what the shards are.

Usage::

    python benchmarks/own_data.py --out benchmarks/results/own-data-cpu.json --markdown
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from machine import cpu_name  # noqa: E402

from densenet_ray.data.building.build import build_dataset  # noqa: E402
from densenet_ray.data.building.sources import imagefolder_source  # noqa: E402
from densenet_ray.data.reading.input_spec import InputSpec  # noqa: E402
from densenet_ray.data.reading.pipeline import PipelineConfig, make_loader  # noqa: E402
from densenet_ray.data.reading.transforms import for_dataset  # noqa: E402

SHARED_CIFAR = ROOT.parent / "shared" / "data" / "cifar10-jpeg" / "train.tar"


def write_folder(directory: Path, classes: int, per_class: int, size: int) -> None:
    """The benchmark's own-images folder (see the module docstring)."""
    from PIL import Image

    if not SHARED_CIFAR.exists():
        sys.exit(f"error: {SHARED_CIFAR} not found; this benchmark needs the shared CIFAR-10 JPEG tar")
    counts: dict[str, int] = {}
    with tarfile.open(SHARED_CIFAR) as archive:
        for member in archive:
            if not member.isfile():
                continue
            cls = member.name.split("/")[-2]
            if (cls not in counts and len(counts) == classes) or counts.get(cls, 0) >= per_class:
                continue
            counts[cls] = counts.get(cls, 0) + 1
            image = Image.open(io.BytesIO(archive.extractfile(member).read())).convert("RGB")
            folder = directory / cls
            folder.mkdir(parents=True, exist_ok=True)
            image.resize((size, size), Image.Resampling.BICUBIC).save(folder / Path(member.name).name, quality=90)
            if sum(counts.values()) == classes * per_class:
                break


def ours(shards: str, transform: object, batch: int, workers: int, epoch: int) -> float:
    """Images per second of one training epoch of our pipeline."""
    config = PipelineConfig(shards, "train", batch, loader_workers=workers, epoch=epoch, seed=0, tensor_decode=True)
    loader = make_loader(config, transform)
    started, images = time.perf_counter(), 0
    for batch_images, _ in loader:
        images += len(batch_images)
    return images / (time.perf_counter() - started)


def read_tensor(path: str) -> torch.Tensor:
    """``ImageFolder``'s loader on ``torchvision.io``, for the comparison with the same decoder."""
    from torchvision.io import ImageReadMode, decode_image

    return decode_image(path, mode=ImageReadMode.RGB)


def theirs(folder: str, transform: object, batch: int, workers: int, epoch: int, tensors: bool = False) -> float:
    """Images per second of one shuffled epoch of ``ImageFolder`` through ``DataLoader`` (its default PIL loader,
    or with ``tensors`` one on ``torchvision.io``)."""
    from torchvision.datasets import ImageFolder

    dataset = ImageFolder(folder, transform=transform, **({"loader": read_tensor} if tensors else {}))
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=batch,
        shuffle=True,
        num_workers=workers,
        drop_last=True,
        generator=torch.Generator().manual_seed(epoch),
    )
    started, images = time.perf_counter(), 0
    for batch_images, _ in loader:
        images += len(batch_images)
    return images / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--classes", type=int, default=5)
    parser.add_argument("--per-class", type=int, default=400)
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--loader-workers", type=int, default=2)
    parser.add_argument("--passes", type=int, default=3)
    parser.add_argument("--out", required=True)
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        folder, shards = Path(scratch) / "photos", Path(scratch) / "shards"
        write_folder(folder, args.classes, args.per_class, args.size)
        manifest = build_dataset(imagefolder_source(str(folder)), str(shards), shard_size=500)
        spec = InputSpec(args.size, tuple(manifest.mean), tuple(manifest.std))
        transform = for_dataset("images", train=True, spec=spec)
        runs: dict[str, list[float]] = {"densenet-ray": [], "torchvision": [], "torchvision, torchvision.io loader": []}
        common = (transform, args.batch_size, args.loader_workers)
        for epoch in range(args.passes):
            runs["densenet-ray"].append(ours(str(shards), *common, epoch))
            runs["torchvision"].append(theirs(str(folder), *common, epoch))
            runs["torchvision, torchvision.io loader"].append(theirs(str(folder), *common, epoch, tensors=True))
    medians = {name: statistics.median(values) for name, values in runs.items()}
    report = {
        "machine": cpu_name(),
        "torch": torch.__version__,
        "images": args.classes * args.per_class,
        "image_size": args.size,
        "batch_size": args.batch_size,
        "loader_workers": args.loader_workers,
        "transform": "random-resized crop, flip, normalise (train images)" if args.size > 64 else "pad-and-crop",
        "images_per_s": runs,
        "median_images_per_s": medians,
        "ratio_ours_to_theirs": medians["densenet-ray"] / medians["torchvision"],
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    if args.markdown:
        print(markdown(report))


def markdown(report: dict) -> str:
    """The table of the median images/s per pipeline, each as a ratio to torchvision's default loader."""
    medians = report["median_images_per_s"]
    lines = ["| pipeline | images/s (median of passes) | ratio |", "|---|---|---|"]
    reference = medians["torchvision"]
    lines += [f"| {name} | {median:,.0f} | {median / reference:.2f}x |" for name, median in medians.items()]
    lines += [
        "",
        f"{report['machine']}, {report['images']} images of {report['image_size']} px, batch {report['batch_size']}, "
        f"{report['loader_workers']} loader workers",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
