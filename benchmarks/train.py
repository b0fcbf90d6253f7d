"""Training benchmark: the Ray Train job against a plain single-process PyTorch loop, and a learning check.

Throughput (``--part throughput``): the same model (DenseNet-BC L=40 k=12, the demo's), the same shards, the same
global batch (64) and the same input pipeline, on this machine's cores:

* ``plain``: one process, ``torch.set_num_threads(cores)``, a hand-written SGD loop (no Ray, no DDP);
* ``ray 1x{cores}``: ``python -m densenet_ray.cifar`` with one Ray Train worker holding every core: what Ray
  itself costs;
* ``ray {cores}x1``: one worker per core with DDP over gloo (the demo's layout): Ray plus DDP.

Every variant runs in a fresh process, round by round in rotating order. Reported per variant: steady-state
images/s (each epoch's first 5 steps left out), time to first step (process start to the first optimizer step
finished, Ray start-up included) and peak memory; then ratios to ``plain``. Standard and memory-efficient modes
are compared the same way.

Learning check (``--part learning``): BC-40-12 trained for ``--epochs`` epochs (cosine schedule) on the shared
CIFAR-10 JPEGs, 45,000 training images, evaluated on the held-out 5,000 (the last 500 of each class).

Usage::

    python benchmarks/train.py --source ../shared/data/cifar10-jpeg/train.tar --out benchmarks/results/train-cpu.json
    python benchmarks/train.py --part learning --epochs 4 --source ... --out benchmarks/results/learning-cpu.json
    python benchmarks/train.py --part learning --epochs 4 --recipe plain ema label-smoothing=0.1 --source ...
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

from machine import cpu_name

MODEL = ["--model", "densenet_bc100_k12", "--depth", "40"]
BATCH = 64
WARMUP_STEPS = 5  # as the worker loop's steady-state figure


def plain_loop(data: str, steps: int, memory_efficient: bool, threads: int, loader_workers: int) -> dict[str, Any]:
    """A single-process training loop a user would write: our model and input pipeline, no Ray, no DDP."""
    import torch
    import torch.nn.functional as F

    from densenet_ray.data.reading.pipeline import PipelineConfig, make_loader
    from densenet_ray.data.reading.transforms import for_dataset
    from densenet_ray.models import create_model

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = create_model("densenet_bc100_k12", depth=40, num_classes=10, memory_efficient=memory_efficient)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-4)
    loader = make_loader(
        PipelineConfig(data, "train", BATCH, loader_workers=loader_workers), for_dataset("cifar10", train=True)
    )
    model.train()
    first_step_time, warm_time, done = 0.0, 0.0, 0
    for images, labels in loader:
        loss = F.cross_entropy(model(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        done += 1
        first_step_time = first_step_time or time.time()
        if done == WARMUP_STEPS:
            warm_time = time.perf_counter()
        if done == steps:
            break
    steady = (done - WARMUP_STEPS) * BATCH / (time.perf_counter() - warm_time)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"steady_images_per_s": steady, "first_step_time": first_step_time, "peak_memory_mb": peak}


def run_plain(data: str, steps: int, memory_efficient: bool, cores: int) -> dict[str, Any]:
    started = time.time()
    command = [sys.executable, __file__, "--plain-loop", "--data", data, "--steps", str(steps), "--threads", str(cores)]
    completed = subprocess.run(command + (["--memory-efficient"] if memory_efficient else []), capture_output=True)
    if completed.returncode:
        raise RuntimeError(f"plain loop failed: {completed.stderr.decode()[-2000:]}")
    result = json.loads(completed.stdout.decode().strip().splitlines()[-1])
    result["first_step_seconds"] = result.pop("first_step_time") - started
    return result


def run_ray(
    data: str, steps: int, memory_efficient: bool, workers: int, cpus: int, storage: str, numerics: tuple[str, ...] = ()
) -> dict[str, Any]:
    name = f"bench-{workers}x{cpus}-{'eff' if memory_efficient else 'std'}-{time.time_ns()}"
    command = [sys.executable, "-m", "densenet_ray.cifar", "--data", data, *MODEL, "--batch-size", str(BATCH)]
    command += ["--epochs", "1", "--limit-train-batches", str(steps), "--limit-eval-batches", "1"]
    command += ["--workers", str(workers), "--cpus-per-worker", str(cpus), "--storage", storage, "--name", name]
    command += ["--memory-efficient"] if memory_efficient else []
    command += list(numerics)
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    started = time.time()
    completed = subprocess.run(command, capture_output=True, env=env)
    if completed.returncode:
        raise RuntimeError(f"ray job failed: {completed.stderr.decode()[-2000:]}")
    with open(os.path.join(storage, name, "metrics.jsonl")) as handle:
        record = json.loads(handle.read().splitlines()[-1])
    return {
        "steady_images_per_s": record["steady_images_per_s"],
        "first_step_seconds": record["first_step_time"] - started,
        "peak_memory_mb": record["peak_memory_mb"],  # per worker
        "wall_seconds": time.time() - started,
        "acceleration": record.get("acceleration"),
    }


def throughput(data: str, steps: int, rounds: int) -> dict[str, Any]:
    cores = os.cpu_count() or 1
    variants: dict[str, Any] = {}
    for memory_efficient in (False, True):
        mode = "memory_efficient" if memory_efficient else "standard"
        variants[f"plain {mode}"] = lambda m=memory_efficient: run_plain(data, steps, m, cores)
        variants[f"ray {cores}x1 {mode}"] = lambda m=memory_efficient: run_ray(data, steps, m, cores, 1, storage)
    variants[f"ray 1x{cores} standard"] = lambda: run_ray(data, steps, False, 1, cores, storage)
    measured: dict[str, list[dict[str, Any]]] = {label: [] for label in variants}
    with tempfile.TemporaryDirectory() as storage:
        labels = list(variants)
        for round_index in range(rounds):
            order = labels[round_index % len(labels) :] + labels[: round_index % len(labels)]
            for label in order:
                result = variants[label]()
                measured[label].append(result)
                print(f"round {round_index + 1}: {label}: {json.dumps(result)}", file=sys.stderr)
    summary = {
        label: {key: statistics.median(r[key] for r in results) for key in results[0]} | {"rounds": results}
        for label, results in measured.items()
    }
    ratios = {}
    for mode in ("standard", "memory_efficient"):
        plain = summary[f"plain {mode}"]
        for label, values in summary.items():
            if label.startswith("ray") and label.endswith(mode):
                ratios[f"{label} / plain"] = values["steady_images_per_s"] / plain["steady_images_per_s"]
    for kind in ("plain", f"ray {cores}x1"):
        std, eff = summary[f"{kind} standard"], summary[f"{kind} memory_efficient"]
        ratios[f"{kind} memory_efficient / standard speed"] = eff["steady_images_per_s"] / std["steady_images_per_s"]
        ratios[f"{kind} memory_efficient / standard memory"] = eff["peak_memory_mb"] / std["peak_memory_mb"]
    return {"steps": steps, "batch": BATCH, "cores": cores, "variants": summary, "ratios": ratios}


def demo_flags(precision: str) -> tuple[str, ...]:
    """The numerics flags of the demo's run (one epoch of 45,000 images at batch 64 on 2 workers) under ``precision``:
    ``fp32`` is the configuration before ``--precision`` existed; ``auto`` is spelled out as what it resolves to for
    the demo's length here, because the benchmark's shorter runs would otherwise not compile."""
    import torch

    from densenet_ray.train.acceleration import choose

    if precision == "fp32":
        return ("--precision", "fp32", "--no-channels-last", "--no-compile")
    chosen = choose("auto", None, None, torch.device("cpu"), 45000 // BATCH)
    return (
        "--precision",
        chosen.precision,
        "--channels-last" if chosen.channels_last else "--no-channels-last",
        "--compile" if chosen.compile else "--no-compile",
    )


def speed(data: str, steps: int, rounds: int) -> dict[str, Any]:
    """The demo's job (BC-40-12, 2 workers) with today's defaults against ``--precision fp32`` as before, side by
    side; the inductor cache starts empty, so round 1 of the default pays the compile and round 2 reuses it."""
    cores = os.cpu_count() or 1
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="bench-inductor-")
    variants = {label: demo_flags(precision) for label, precision in (("fp32 (before)", "fp32"), ("default", "auto"))}
    measured: dict[str, list[dict[str, Any]]] = {label: [] for label in variants}
    with tempfile.TemporaryDirectory() as storage:
        for round_index in range(rounds):
            for label, flags in variants.items():
                result = run_ray(data, steps, False, cores, 1, storage, flags)
                measured[label].append(result)
                print(f"round {round_index + 1}: {label}: {json.dumps(result)}", file=sys.stderr)
    summary = {
        label: {
            "flags": " ".join(variants[label]),
            "steady_images_per_s": statistics.median(r["steady_images_per_s"] for r in results),
            "first_step_seconds_by_round": [r["first_step_seconds"] for r in results],
            "peak_memory_mb": statistics.median(r["peak_memory_mb"] for r in results),
            "rounds": results,
        }
        for label, results in measured.items()
    }
    ratio = summary["default"]["steady_images_per_s"] / summary["fp32 (before)"]["steady_images_per_s"]
    return {"steps": steps, "batch": BATCH, "workers": cores, "variants": summary, "default / fp32": ratio}


def learning(data: str, epochs: int, precision: str = "auto", recipe: str = "") -> dict[str, Any]:
    """One learning run; ``recipe`` is extra training flags (``--ema``, ``--label-smoothing 0.1``)."""
    with tempfile.TemporaryDirectory() as storage:
        command = [sys.executable, "-m", "densenet_ray.cifar", "--data", data, *MODEL, "--epochs", str(epochs)]
        command += ["--precision", precision, *recipe.split()]
        command += ["--lr-schedule", "cosine", "--workers", "2", "--storage", storage, "--name", "learning"]
        started = time.time()
        env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
        completed = subprocess.run(command, capture_output=True, env=env)
        if completed.returncode:
            raise RuntimeError(f"learning run failed: {completed.stderr.decode()[-2000:]}")
        from densenet_ray.train.run.directory import RunDirectory

        epoch_records, _ = RunDirectory(os.path.join(storage, "learning")).metrics()  # not the attempt records
        records = [dataclasses.asdict(record) for record in epoch_records]
    keys = ("epoch", "loss", "train_error", "test_error", "test_top5_error", "images_per_s", "test_samples")
    keys += ("ema_test_error",) if "--ema" in recipe else ()
    return {
        "model": "densenet_bc100_k12 depth 40 (BC-40-12)",
        "schedule": f"cosine, lr 0.1, batch 64, {epochs} epochs, 2 Ray workers",
        "precision": precision,
        "recipe": recipe or "the paper's",
        "acceleration": records[0].get("acceleration"),
        "train_samples": 45000,
        "curve": [{key: record[key] for key in keys} for record in records],
        "final_test_error": records[-1]["test_error"],
        "wall_seconds": time.time() - started,
    }


def recipe_flags(recipe: str) -> str:
    """``plain`` as no flags; ``ema,label-smoothing=0.1`` as ``--ema --label-smoothing 0.1``."""
    if recipe == "plain":
        return ""
    return " ".join(f"--{option.replace('=', ' ')}" for option in recipe.split(",") if option)


def markdown(result: dict[str, Any]) -> str:
    lines = []
    if "throughput" in result:
        t = result["throughput"]
        lines += [
            f"Steady-state training throughput, BC-40-12, global batch {t['batch']}, {t['cores']} cores:",
            "",
            "| variant | images/s | time to first step (s) | peak memory (MB, per process) |",
            "|---|---|---|---|",
        ]
        for label, values in t["variants"].items():
            lines.append(
                f"| {label} | {values['steady_images_per_s']:.1f} | {values['first_step_seconds']:.1f} "
                f"| {values['peak_memory_mb']:.0f} |"
            )
        lines += ["", "| ratio | value |", "|---|---|"]
        lines += [f"| {label} | {value:.3f} |" for label, value in t["ratios"].items()]
    if "speed" in result:
        sp = result["speed"]
        lines += [
            "",
            f"The demo's job ({sp['workers']} workers, {sp['steps']} steps), default against fp32 as before:",
            "",
        ]
        lines += ["| variant | flags | images/s | time to first step, by round (s) |", "|---|---|---|---|"]
        for label, values in sp["variants"].items():
            firsts = ", ".join(f"{seconds:.1f}" for seconds in values["first_step_seconds_by_round"])
            lines.append(f"| {label} | `{values['flags']}` | {values['steady_images_per_s']:.1f} | {firsts} |")
        lines += ["", f"default / fp32: {sp['default / fp32']:.2f}x"]
    for recipe, learn in result.get("learning_by_recipe", {}).items():
        curve = ", ".join(f"{100 * r['test_error']:.2f} %" for r in learn["curve"])
        average = learn["curve"][-1].get("ema_test_error")
        lines += ["", f"Learning check, recipe `{recipe or 'plain'}`: test error by epoch {curve}"]
        lines += [f"(EMA weights after the last epoch: {100 * average:.2f} %)"] if average is not None else []
    for precision, learn in result.get("learning_by_precision", {}).items():
        curve = ", ".join(f"{100 * r['test_error']:.2f} %" for r in learn["curve"])
        lines += [
            "",
            f"Learning check `--precision {precision}` ({learn['acceleration']}): test error by epoch {curve}",
        ]
    if "learning" in result:
        learn = result["learning"]
        lines += ["", f"Learning check: {learn['model']}, {learn['schedule']}:", ""]
        lines += ["| epoch | train loss | train error | test error (5,000 held out) |", "|---|---|---|---|"]
        for r in learn["curve"]:
            lines.append(
                f"| {r['epoch']} | {r['loss']:.3f} | {100 * r['train_error']:.2f} % | {100 * r['test_error']:.2f} % |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=("throughput", "speed", "learning", "all"), default="throughput")
    parser.add_argument("--precision", nargs="+", default=["auto"], help="learning check: one run per precision")
    parser.add_argument("--source", help="CIFAR-10 source for the shards (e.g. ../shared/data/cifar10-jpeg/train.tar)")
    parser.add_argument("--data", help="prebuilt shards (default: ~/.cache/densenet-ray/cifar10, built from --source)")
    parser.add_argument("--steps", type=int, default=80, help="training steps per throughput measurement")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=4, help="learning check epochs")
    parser.add_argument(
        "--recipe",
        nargs="+",
        default=["plain"],
        help="learning check: one run per recipe, each plain (the paper's) or comma-separated options, e.g. plain ema "
        "label-smoothing=0.1",
    )
    parser.add_argument("--out", help="write the JSON here too")
    parser.add_argument("--markdown", action="store_true", help="print README tables to stderr")
    parser.add_argument("--plain-loop", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help=argparse.SUPPRESS)
    parser.add_argument("--memory-efficient", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.plain_loop:
        print(json.dumps(plain_loop(args.data, args.steps, args.memory_efficient, args.threads, 1)))
        return

    from densenet_ray.train.config.options import TrainConfig
    from densenet_ray.train.config.resolved import resolve
    from densenet_ray.train.run.data_cache import ensure_data

    data = args.data
    if not data:
        spec = resolve(TrainConfig(source=args.source)).data
        ensure_data(spec, print_line=lambda line: print(line, file=sys.stderr))
        data = spec.data
    result: dict[str, Any] = {
        "machine": {"cpu": cpu_name(), "cores": os.cpu_count()},
        "python": platform.python_version(),
    }
    if args.part in ("throughput", "all"):
        result["throughput"] = throughput(data, args.steps, args.rounds)
    if args.part in ("speed", "all"):
        result["speed"] = speed(data, args.steps, args.rounds)
    if args.part in ("learning", "all"):
        recipes = [recipe_flags(recipe) for recipe in args.recipe]
        if len(recipes) > 1:  # recipes are compared at the first precision
            runs = [learning(data, args.epochs, args.precision[0], recipe) for recipe in recipes]
            result["learning_by_recipe"] = dict(zip(recipes, runs, strict=True))
        else:
            runs = [learning(data, args.epochs, precision, recipes[0]) for precision in args.precision]
            if len(runs) > 1:
                result["learning_by_precision"] = {run["precision"]: run for run in runs}
        result["learning"] = runs[0]
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out + ".tmp", "w") as handle:
            handle.write(text + "\n")
        os.replace(args.out + ".tmp", args.out)
    if args.markdown:
        print(markdown(result), file=sys.stderr)


if __name__ == "__main__":
    main()
