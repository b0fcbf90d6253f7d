"""GPU benchmark on the pure-PyTorch layers (models, data, engine): no Ray, so it runs with a machine's own PyTorch.

Parts, each side by side in one process:

* ``steps``: training-step images/s (forward, backward, SGD-Nesterov), ours against torchvision, for densenet121
  at 224x224 (batch 64 and 256) and BC-100-12 at 32x32 (batch 64): fp32 NCHW eager, bf16 autocast channels_last
  eager, the same compiled, and for BC-100-12 compiled with CUDA graphs (``mode="reduce-overhead"``);
* ``memory``: peak memory of a BC-100-12 batch-64 step, standard against memory-efficient (the original Torch
  code's figures on a TITAN X: 5,452 MB standard, 1,655 MB in its most memory-efficient mode);
* ``pipeline``: the ImageNet training pipeline's images/s from local shards, CPU decoding in the loader workers
  against ``--decode gpu`` (batched nvJPEG decoding and augmentation on the GPU). The shards are built here from
  the committed CIFAR-10 slice, upscaled to 256x256 JPEGs (real images at ImageNet's size);
* ``engine``: ``train_epoch`` over that pipeline (GPU decoding) against a plain loop, densenet121, bf16
  channels_last;
* ``recipe``: the same ``train_epoch``, the paper's step against the modern recipe's (MixUp/CutMix on the device,
  label smoothing 0.1, the weights' moving average updated every optimizer step).

Each part's result is written to ``--out`` as soon as it is measured, so a run cut short keeps what it finished.

``--device cpu --quick`` runs every part at toy sizes, to check the script before spending GPU time.

Usage::

    bash benchmarks/gpu.sh --out gpu.json            # on a GPU machine
    bash benchmarks/gpu.sh --device cpu --quick      # the same code paths on a CPU, in about two minutes
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tarfile
import tempfile
import time
from typing import Any

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from machine import cpu_name  # noqa: E402
from speed import Configuration, Step  # noqa: E402

FIXTURE = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "cifar10-train-slice.tar")
ORIGINAL_TORCH_MB = {"standard": 5452, "memory_efficient": 1655}  # BC-100-12, batch 64, TITAN X (LuaTorch)


def _configurations(model: str, device: str) -> list[Configuration]:
    rows = [("fp32", False, False, "default"), ("bf16", True, False, "default"), ("bf16", True, True, "default")]
    if model == "densenet_bc100_k12" and device == "cuda":
        rows.append(("bf16", True, True, "reduce-overhead"))
    configurations = []
    for implementation in ("ours", "torchvision"):
        for precision, channels_last, compiled, mode in rows:
            label = f"{implementation} {precision}{' channels_last' if channels_last else ''}"
            label += f" compiled{' cudagraphs' if mode != 'default' else ''}" if compiled else ""
            configurations.append(
                Configuration(
                    label=label,
                    implementation=implementation,
                    precision=precision,
                    channels_last=channels_last,
                    compile=compiled,
                    compile_mode=mode,
                )
            )
    return configurations


def time_steps(steps: dict[str, Step], rounds: int, per_round: int, batch: int) -> dict[str, float]:
    """Median images/s per step function over interleaved rounds in alternating order."""
    times: dict[str, list[float]] = {label: [] for label in steps}
    labels = list(steps)
    for round_index in range(rounds):
        for label in labels if round_index % 2 == 0 else labels[::-1]:
            started = time.perf_counter()
            for _ in range(per_round):
                steps[label]()
            times[label].append((time.perf_counter() - started) / per_round)
    return {label: round(batch / statistics.median(seconds), 1) for label, seconds in times.items()}


def model_steps(device: str, quick: bool) -> list[dict[str, Any]]:
    cases = (
        [("densenet_bc100_k12", 32, 8, 16)]
        if quick
        else [
            ("densenet121", 224, 64, None),
            ("densenet121", 224, 256, None),
            ("densenet_bc100_k12", 32, 64, 100),
        ]
    )
    results = []
    for model, resolution, batch, depth in cases:
        steps, first = {}, {}
        for config in _configurations(model, device):
            started = time.perf_counter()
            step = Step(depth, config, device, model=model, resolution=resolution, batch=batch)
            for _ in range(3):  # compile, then CUDA-graph warm-up and capture
                step()
            steps[config.label], first[config.label] = step, round(time.perf_counter() - started, 1)
        rates = time_steps(steps, 2 if quick else 5, 1 if quick else 5, batch)
        for label, rate in rates.items():
            results.append(
                {
                    "model": model,
                    "batch": batch,
                    "configuration": label,
                    "images_per_s": rate,
                    "first_three_steps_seconds": first[label],
                }
            )
        del steps
        if device == "cuda":
            torch.cuda.empty_cache()
        print(f"steps: {model} batch {batch} done", file=sys.stderr)
    return results


def peak_memory(device: str, quick: bool) -> dict[str, Any]:
    from speed import memory_in_subprocess, peak_memory_mb

    depth, batch = (16 if quick else 100), 64
    result: dict[str, Any] = {
        "model": f"densenet_bc{depth}_k12",
        "batch": batch,
        "original_torch_mb": ORIGINAL_TORCH_MB,
    }
    for precision, channels_last, compiled in (("fp32", False, False), ("bf16", True, True)):
        for efficient in (False, True):
            config = Configuration(
                label="",
                implementation="ours",
                precision=precision,
                channels_last=channels_last,
                compile=compiled,
                memory_efficient=efficient,
            )
            key = f"{precision}{' compiled' if compiled else ''} {'memory_efficient' if efficient else 'standard'}"
            if device == "cuda":  # the CUDA allocator's own peak: measured in this process
                result[key] = round(peak_memory_mb(depth, config, device), 1)
                torch.cuda.empty_cache()
            else:
                result[key] = round(memory_in_subprocess(depth, config, device), 1)
    return result


def imagenet_shards(directory: str, copies: int) -> str:
    """ImageNet-sized JPEG shards: the committed CIFAR-10 slice upscaled to 256x256, ``copies`` times over."""
    from PIL import Image

    from densenet_ray.data.building.build import build_dataset
    from densenet_ray.data.building.sources import imagefolder_source

    folders = os.path.join(directory, "images")
    with tarfile.open(FIXTURE) as archive:
        members = [m for m in archive.getmembers() if m.isfile()]
        for member in members:
            handle = archive.extractfile(member)
            assert handle is not None
            image = Image.open(handle).convert("RGB").resize((256, 256), Image.BICUBIC)
            label, name = member.name.split("/")[-2:]
            os.makedirs(os.path.join(folders, label), exist_ok=True)
            for copy in range(copies):
                image.save(os.path.join(folders, label, f"{copy}-{name}"), quality=90)
    out = os.path.join(directory, "shards")
    build_dataset(imagefolder_source(folders), out, shard_size=250)
    return out


def _loader(shards: str, batch: int, loader_workers: int, epoch: int = 0, decode_device: str | None = None) -> Any:
    from densenet_ray.data.reading.pipeline import PipelineConfig, make_loader
    from densenet_ray.data.reading.transforms import for_dataset

    pin = torch.cuda.is_available()
    config = PipelineConfig(
        shards, "train", batch, loader_workers=loader_workers, epoch=epoch, pin_memory=pin, decode_device=decode_device
    )
    return make_loader(config, for_dataset("imagenet", train=True))


def pipeline_rate(shards: str, batch: int, loader_workers: int, batches: int, decode_device: str | None) -> float:
    """Images/s of the ImageNet training pipeline alone (``decode_device`` None: CPU decoding in the loader
    workers; else decoding and augmentation there), after its first batch (the workers' start-up)."""
    loader = _loader(shards, batch, loader_workers, decode_device=decode_device)
    started, seen = None, 0
    for index, (images, _) in enumerate(loader):
        if index == 1:  # after the workers' start-up
            _synchronize(images.device)
            started = time.perf_counter()
        elif index > 1:
            seen += len(images)
        if index == batches:
            _synchronize(images.device)
            break
    return round(seen / (time.perf_counter() - (started or time.perf_counter())), 1)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def pipelines(shards: str, device: str, batch: int, loader_workers: int, batches: int) -> dict[str, Any]:
    """CPU decoding against decoding on ``device`` (``--decode gpu``), the same shards and loader workers."""
    cpu = pipeline_rate(shards, batch, loader_workers, batches, None)
    on_device = pipeline_rate(shards, batch, loader_workers, batches, device)
    return {
        "loader_workers": loader_workers,
        "batch": batch,
        "decode_device": device,
        "decode_cpu_images_per_s": cpu,
        "decode_gpu_images_per_s": on_device,
        "gpu_over_cpu": round(on_device / cpu, 2),
    }


def engine_against_plain(shards: str, device: str, batch: int, loader_workers: int, steps: int) -> dict[str, float]:
    """densenet121 in bf16 channels_last over the pipeline: ``train_epoch`` against a hand-written loop."""
    from densenet_ray.models import create_model
    from densenet_ray.train.acceleration import native_bf16
    from densenet_ray.train.engine import StepContext, train_epoch

    target = torch.device(device)
    model = create_model("densenet121").to(target, memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-4)
    # bf16 where it is native (every recent GPU); a CPU without it (--quick checks) would emulate it for minutes.
    precision = "bf16" if native_bf16(target) else "fp32"
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    context = StepContext(model, target, precision, True, optimizer)

    decode_device = device if device == "cuda" else None  # the pipeline should not be what is measured

    def engine(epoch: int) -> int:
        loader = _loader(shards, batch, loader_workers, epoch, decode_device)
        return train_epoch(context, loader, schedule=lambda index: 0.1, max_steps=steps).samples

    def plain(epoch: int) -> int:
        model.train()
        seen = 0
        for index, (images, labels) in enumerate(_loader(shards, batch, loader_workers, epoch, decode_device)):
            if index == steps:
                break
            images = images.to(target, non_blocking=True).contiguous(memory_format=torch.channels_last)
            labels = labels.to(target, non_blocking=True)
            with torch.autocast(target.type, dtype=dtype, enabled=precision == "bf16"):
                loss = F.cross_entropy(model(images).float(), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            seen += len(labels)
        return seen

    rates: dict[str, list[float]] = {"engine": [], "plain": []}
    for epoch in range(4):  # epoch 0 warms both up and is not counted
        for label, run in (
            (("engine", engine), ("plain", plain)) if epoch % 2 else (("plain", plain), ("engine", engine))
        ):
            started = time.perf_counter()
            seen = run(epoch)
            if device == "cuda":
                torch.cuda.synchronize()
            if epoch:
                rates[label].append(seen / (time.perf_counter() - started))
    result = {label: round(statistics.median(values), 1) for label, values in rates.items()}
    return {**result, "engine / plain": round(result["engine"] / result["plain"], 3), "precision": precision}


def recipe_overhead(shards: str, device: str, batch: int, loader_workers: int, steps: int) -> dict[str, Any]:
    """densenet121 in bf16 channels_last over the pipeline: ``train_epoch`` with the paper's step against the modern
    recipe's, interleaved epoch by epoch on one model."""
    from densenet_ray.models import create_model
    from densenet_ray.train.acceleration import native_bf16
    from densenet_ray.train.engine import StepContext, StepSettings, train_epoch
    from densenet_ray.train.recipe import WeightAverage, batch_mixer

    target = torch.device(device)
    model = create_model("densenet121").to(target, memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-4)
    precision = "bf16" if native_bf16(target) else "fp32"
    average = WeightAverage(model, 0.9998)
    mixer = batch_mixer(0.2, 1.0, 1.0, 0.5, 1000, seed=0)
    modern = StepSettings(0.1, after_optimizer_step=lambda: average.update(model))
    contexts = {
        "paper": StepContext(model, target, precision, True, optimizer),
        "modern": StepContext(model, target, precision, True, optimizer, settings=modern),
    }
    mixers = {"paper": None, "modern": mixer}
    decode_device = device if device == "cuda" else None
    rates: dict[str, list[float]] = {label: [] for label in contexts}
    for epoch in range(4):  # epoch 0 warms both up and is not counted
        for label in list(contexts) if epoch % 2 else list(contexts)[::-1]:
            started = time.perf_counter()
            loader = _loader(shards, batch, loader_workers, epoch, decode_device)
            seen = train_epoch(
                contexts[label], loader, schedule=lambda index: 0.1, mixer=mixers[label], max_steps=steps
            ).samples
            _synchronize(target)
            if epoch:
                rates[label].append(seen / (time.perf_counter() - started))
    result = {label: round(statistics.median(values), 1) for label, values in rates.items()}
    return {**result, "modern / paper": round(result["modern"] / result["paper"], 3), "precision": precision}


def _write(report: dict[str, Any], out: str | None) -> None:
    """The report so far, to ``out`` atomically (the shard directory is this run's, not a result)."""
    if out:
        with open(out + ".tmp", "w") as handle:
            handle.write(json.dumps({k: v for k, v in report.items() if k != "shards"}, indent=2) + "\n")
        os.replace(out + ".tmp", out)


def machine(device: str) -> dict[str, Any]:
    name = torch.cuda.get_device_name() if device == "cuda" else cpu_name()
    return {"device": name, "torch": torch.__version__, "python": platform.python_version(), "cpus": os.cpu_count()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--quick", action="store_true", help="toy sizes: checks the script, measures nothing useful")
    parser.add_argument("--parts", nargs="+", default=["steps", "memory", "pipeline", "engine", "recipe"])
    parser.add_argument("--out", help="also write the JSON report here (atomically)")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print(
            "error: --device cuda but PyTorch sees no CUDA device; use --device cpu --quick to check the script",
            file=sys.stderr,
        )
        return 2
    started = time.perf_counter()
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", tempfile.mkdtemp(prefix="gpu-bench-inductor-"))
    report: dict[str, Any] = {"benchmark": "gpu", "machine": machine(args.device), "quick": args.quick}
    loader_workers = 2 if args.quick else min(12, max(1, (os.cpu_count() or 2) - 2))
    batch = 8 if args.quick else 64
    shard_parts = {"pipeline", "engine", "recipe"}
    with tempfile.TemporaryDirectory() as directory:
        for part in args.parts:  # in the order given: the most wanted first when device time is short
            if part == "steps":
                report["steps"] = model_steps(args.device, args.quick)
            elif part == "memory":
                report["memory"] = peak_memory(args.device, args.quick)
            elif part in shard_parts and "shards" not in report:
                report["shards"] = imagenet_shards(directory, 1 if args.quick else 12)
            if part == "pipeline":
                report["pipeline"] = pipelines(
                    report["shards"], args.device, batch if args.quick else 256, loader_workers, 4 if args.quick else 20
                )
            elif part == "engine":
                report["engine"] = engine_against_plain(
                    report["shards"], args.device, batch, loader_workers, 3 if args.quick else 20
                )
            elif part == "recipe":
                report["recipe"] = recipe_overhead(
                    report["shards"], args.device, batch, loader_workers, 3 if args.quick else 20
                )
            report["seconds"] = round(time.perf_counter() - started, 1)
            _write(report, args.out)
            print(f"{part}: done after {report['seconds']} s", file=sys.stderr)
    report.pop("shards", None)
    text = json.dumps(report, indent=2)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
