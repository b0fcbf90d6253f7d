"""Transfer on CPU: pretrain on five CIFAR-10 classes, fine-tune on the other five with 100 images a class, against
the same model trained from scratch on those 500 images with the same budget.

The images come from ``../shared/data/cifar10-jpeg/train.tar``: for pretraining, ``--pretrain-per-class`` images of
each of airplane, automobile, bird, cat and deer (and ``--test-per-class`` more of each to test on); for the
transfer task, 100 images of each of dog, frog, horse, ship and truck, tested on ``--test-per-class`` others. Every
run goes through ``densenet_ray.fit`` (``train images``, a local Ray instance of 2 workers): the fine-tuned run
starts from the pretraining run's last checkpoint (``--init-from``; its classes are not the task's, so the head
starts anew), the scratch run from a random initialisation; both with the same model, epochs, batches and learning
rate schedule. The report gives each run's final and best test error.

Usage::

    python benchmarks/transfer.py --out benchmarks/results/transfer-cpu.json --markdown
"""

from __future__ import annotations

import argparse
import json
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from machine import cpu_name  # noqa: E402

import densenet_ray as dr  # noqa: E402
from densenet_ray.data.building.build import build_dataset  # noqa: E402
from densenet_ray.data.building.sources import imagefolder_source, split_holdout  # noqa: E402

SHARED_CIFAR = ROOT.parent / "shared" / "data" / "cifar10-jpeg" / "train.tar"
PRETRAIN = ("airplane", "automobile", "bird", "cat", "deer")
TASK = ("dog", "frog", "horse", "ship", "truck")


def write_folder(directory: Path, classes: tuple[str, ...], per_class: int) -> None:
    """The first ``per_class`` images of each of ``classes`` in class folders."""
    counts = dict.fromkeys(classes, 0)
    with tarfile.open(SHARED_CIFAR) as archive:
        for member in archive:
            cls = member.name.split("/")[-2] if member.isfile() else ""
            if counts.get(cls, per_class) < per_class:
                counts[cls] += 1
                (directory / cls).mkdir(parents=True, exist_ok=True)
                (directory / cls / Path(member.name).name).write_bytes(archive.extractfile(member).read())
            if all(count == per_class for count in counts.values()):
                return


def shards(folder: Path, out: Path, test_per_class: int) -> str:
    for part in split_holdout(imagefolder_source(str(folder)), test_per_class):
        build_dataset(part, str(out), shard_size=500)
    return str(out)


def run(name: str, data: str, storage: Path, args: argparse.Namespace, epochs: int, **options: object) -> dict:
    started = time.perf_counter()
    config = dr.TrainConfig(
        dataset="images",
        data=data,
        depth=args.depth,
        epochs=epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        lr_schedule="cosine",
        workers=2,
        loader_workers=1,
        compile=False,
        storage=str(storage),
        name=name,
        **options,
    )
    result = dr.fit(config, local=True, verbose=False, print_line=lambda line: None)
    errors = [record["test_error"] for record in result.metrics]
    return {
        "final_test_error": errors[-1],
        "best_test_error": min(errors),
        "test_error_by_epoch": errors,
        "wall_seconds": time.perf_counter() - started,
        "acceleration": result.metrics[0].get("acceleration"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pretrain-per-class", type=int, default=1000)
    parser.add_argument("--test-per-class", type=int, default=200)
    parser.add_argument("--pretrain-epochs", type=int, default=15)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--depth", type=int, default=22)
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--out", required=True)
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    if not SHARED_CIFAR.exists():
        sys.exit(f"error: {SHARED_CIFAR} not found; this benchmark needs the shared CIFAR-10 JPEG tar")
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        write_folder(root / "pretrain", PRETRAIN, args.pretrain_per_class + args.test_per_class)
        write_folder(root / "task", TASK, 100 + args.test_per_class)
        source = shards(root / "pretrain", root / "pretrain-shards", args.test_per_class)
        task = shards(root / "task", root / "task-shards", args.test_per_class)
        runs = root / "runs"
        pretrained = run("pretrain", source, runs, args, args.pretrain_epochs)
        checkpoint = str(dr.load(str(runs / "pretrain")).card["source"])
        results = {
            "pretrain (5 other classes)": pretrained,
            "fine-tuned": run("fine-tuned", task, runs, args, args.epochs, init_from=checkpoint),
            "from scratch": run("scratch", task, runs, args, args.epochs),
        }
    report = {
        "machine": cpu_name(),
        "model": f"densenet_bc100_k12 at depth {args.depth}",
        "pretrain": {"classes": PRETRAIN, "images_per_class": args.pretrain_per_class, "epochs": args.pretrain_epochs},
        "task": {"classes": TASK, "images_per_class": 100, "test_per_class": args.test_per_class},
        "budget": {"epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr, "schedule": "cosine"},
        "runs": results,
        "fine_tuned_lower": results["fine-tuned"]["final_test_error"] < results["from scratch"]["final_test_error"],
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    if args.markdown:
        print(markdown(report))


def markdown(report: dict) -> str:
    """The table of the runs' final and best test error and wall time."""
    lines = ["| run | final test error | best test error | wall time |", "|---|---|---|---|"]
    lines += [
        f"| {name} | {100 * figures['final_test_error']:.1f} % | {100 * figures['best_test_error']:.1f} % | "
        f"{figures['wall_seconds'] / 60:.1f} min |"
        for name, figures in report["runs"].items()
    ]
    lines += [
        "",
        f"{report['machine']}, {report['model']}, {report['budget']['epochs']} epochs of "
        f"{len(report['task']['classes']) * report['task']['images_per_class']} images for both task runs",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
