"""Batch inference throughput: ``densenet-ray predict MODEL DATA --out DIR`` (Ray Data, an actor pool) against the
one-process ``predict`` on the same shards, side by side on one machine.

The shards hold ``--images`` photographs of ``../shared/data/cifar10-jpeg/train.tar``, a tenth of each class (500 a
shard). The
model is the paper's CIFAR DenseNet-BC (L=100, k=12) with its initial weights saved as a state_dict (throughput does
not depend on what the weights learned). Each mode classifies every image once: ``one process``
(``Classifier.iter_predict`` over the shard files, the path ``predict MODEL SHARD.tar...`` takes) and the batch job
with 1 and with 2 actors on a private local Ray instance, timed from the call to the last Parquet file written
(Ray's start-up excluded: it is timed apart).

Usage::

    python benchmarks/batch_inference.py --out benchmarks/results/batch-inference-cpu.json
"""

from __future__ import annotations

import argparse
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from machine import cpu_name  # noqa: E402
from report import publish  # noqa: E402

SHARED_CIFAR = ROOT.parent / "shared" / "data" / "cifar10-jpeg" / "train.tar"


def write_folder(directory: Path, images: int) -> None:
    """``images`` photographs of the shared CIFAR-10 training tar, a tenth of each class, in class folders."""
    per_class, counts = images // 10, {}
    with tarfile.open(SHARED_CIFAR) as archive:
        for member in archive:
            cls = member.name.split("/")[-2] if member.isfile() else ""
            if cls and counts.get(cls, 0) < per_class:
                counts[cls] = counts.get(cls, 0) + 1
                target = directory / cls / Path(member.name).name
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(archive.extractfile(member).read())
            if len(counts) == 10 and all(count == per_class for count in counts.values()):
                return


def one_process(model: str, shards: list[str], batch_size: int) -> float:
    import densenet_ray as dr

    classifier = dr.load(model, model="densenet_bc100_k12", dataset="cifar10")
    started = time.perf_counter()
    count = sum(1 for _ in classifier.iter_predict(shards, batch_size=batch_size))
    return count / (time.perf_counter() - started)


def batch(model: str, data: str, out: str, concurrency: int, batch_size: int) -> tuple[float, float]:
    """Images per second of the job, and the seconds Ray took to start (outside the job's own time)."""
    import ray

    from densenet_ray.inference.job import BatchJob, run_batch
    from densenet_ray.inference.predictor import ModelChoice

    started = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    start_up = time.perf_counter() - started
    choice = ModelChoice(model, model="densenet_bc100_k12", dataset="cifar10")
    summary = run_batch(BatchJob(choice, data, out, batch_size=batch_size, concurrency=concurrency), lambda _: None)
    ray.shutdown()
    return summary.images_per_s, start_up


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    import torch

    from densenet_ray.data.building.build import build_dataset
    from densenet_ray.data.building.sources import imagefolder_source
    from densenet_ray.models import create_model

    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory)
        write_folder(root / "photos", args.images)
        build_dataset(imagefolder_source(str(root / "photos")), str(root / "shards"), shard_size=500)
        torch.manual_seed(0)
        model = str(root / "bc100.pth")
        torch.save(create_model("densenet_bc100_k12", num_classes=10).state_dict(), model)
        shards = sorted(str(path) for path in (root / "shards").glob("*.tar"))
        rates = {"one process": one_process(model, shards, args.batch_size)}
        start_ups = {}
        for actors in (1, 2):
            out = str(root / f"predictions-{actors}")
            rates[f"batch, {actors} actor(s)"], start_ups[actors] = batch(
                model, str(root / "shards"), out, actors, args.batch_size
            )
    report = {
        "benchmark": "batch-inference",
        "machine": cpu_name(),
        "model": "densenet_bc100_k12 (L=100, k=12), 32x32 CIFAR-10 JPEGs",
        "images": args.images,
        "batch_size": args.batch_size,
        "images_per_s": rates,
        "ratio_vs_one_process": {mode: rate / rates["one process"] for mode, rate in rates.items()},
        "ray_start_seconds": start_ups,
        "torch_threads": torch.get_num_threads(),
    }
    publish(report, args.out)


if __name__ == "__main__":
    main()
