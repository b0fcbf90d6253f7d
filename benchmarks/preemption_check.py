"""What asking Ray Train for the preemption notice costs a training step, at ``make demo``'s size.

Two Ray Train workers (gloo DDP, one CPU each) train the demo's model (DenseNet-BC L=40 k=12, global batch 64, the
demo's acceleration for this CPU) on real CIFAR-10 images from the committed slice. The same workers alternate
blocks of steps, side by side: ``plain`` (no check), ``watched`` (``densenet_ray.train.preemption.PreemptionWatch``
as training uses it: a check about every 2 s) and ``every step`` (``ray.train.get_preemption_info()`` after every
step, the worst case). The report gives each mode's median step time and the overhead against ``plain``, and the
check's own cost.

Usage::

    python benchmarks/preemption_check.py --out benchmarks/results/preemption-check-cpu.json
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from machine import cpu_name  # noqa: E402
from report import publish  # noqa: E402

MODES = ("plain", "watched", "every step")


def _worker(config: dict[str, Any]) -> dict[str, Any]:
    import ray.train
    import ray.train.torch
    import torch

    from densenet_ray.data.reading.pipeline import PipelineConfig, make_loader
    from densenet_ray.data.reading.transforms import cifar_eval
    from densenet_ray.models import create_model
    from densenet_ray.train.acceleration import choose
    from densenet_ray.train.engine import StepContext, train_epoch
    from densenet_ray.train.preemption import PreemptionWatch

    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    torch.manual_seed(0)
    device = torch.device("cpu")
    model = ray.train.torch.prepare_model(create_model("densenet_bc100_k12", depth=40, num_classes=10))
    acceleration = choose("auto", None, False, device, 1000)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    step = StepContext(
        model,
        device,
        precision=acceleration.precision,
        channels_last=acceleration.channels_last,
        optimizer=optimizer,
        rows_per_rank=64 / world,
    )
    watch = PreemptionWatch(world, device)
    times: dict[str, list[float]] = {mode: [] for mode in MODES}
    checks = {"seconds": 0.0, "count": 0}

    def after(mode: str, started: list[float]) -> None:
        if mode == "watched":
            watch.after_step()
        elif mode == "every step":
            before = time.perf_counter()
            ray.train.get_preemption_info()
            checks["seconds"] += time.perf_counter() - before
            checks["count"] += 1
        now = time.perf_counter()
        times[mode].append(now - started[0])
        started[0] = now

    for block in range(config["blocks"]):
        for mode in MODES:
            loader = make_loader(
                PipelineConfig(config["data"], "train", 64, rank=rank, world_size=world, loader_workers=0, epoch=block),
                cifar_eval(),
            )
            started = [time.perf_counter()]
            train_epoch(
                step,
                loader,
                schedule=lambda index: 0.1,
                max_steps=config["steps"],
                on_step=lambda i, s, m=mode, t=started: after(m, t),
            )
    return {
        "times": times,
        "check_seconds": checks["seconds"] / max(checks["count"], 1),
        "every": watch.every,
        "acceleration": acceleration.describe(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--blocks", type=int, default=3)
    parser.add_argument("--steps", type=int, default=7, help="steps per block (the slice has 7 of 64 per epoch)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    import ray
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from densenet_ray.data.building.build import build_dataset
    from densenet_ray.data.building.sources import imagefolder_source

    fixture = ROOT / "tests" / "fixtures" / "cifar10-train-slice.tar"
    with tempfile.TemporaryDirectory() as directory:
        build_dataset(imagefolder_source(str(fixture)), directory, shard_size=100)
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        trainer = TorchTrainer(
            _worker,
            train_loop_config={"data": directory, "blocks": args.blocks, "steps": args.steps},
            scaling_config=ScalingConfig(num_workers=2),
            run_config=RunConfig(storage_path=str(Path(directory) / "runs")),
        )
        result = trainer.fit().return_value
        ray.shutdown()
    # Each block's first step pays the loader's start: the median leaves it out of the picture.
    medians = {mode: statistics.median(result["times"][mode]) for mode in MODES}
    report = {
        "benchmark": "preemption-check",
        "machine": cpu_name(),
        "model": "densenet_bc100_k12 depth 40, global batch 64, 2 CPU workers (gloo)",
        "acceleration": result["acceleration"],
        "steps_per_mode": len(result["times"]["plain"]),
        "median_step_seconds": medians,
        "check_seconds": result["check_seconds"],
        "watched_checks_every_steps": result["every"],
        "overhead_vs_plain": {mode: medians[mode] / medians["plain"] - 1 for mode in MODES[1:]},
        "check_share_of_a_step": result["check_seconds"] / medians["plain"],
        "watched_check_share": result["check_seconds"] / (medians["plain"] * result["every"]),
    }
    publish(report, args.out)


if __name__ == "__main__":
    main()
