"""Model benchmark: densenet-ray's DenseNet vs torchvision's, standard and memory-efficient, side by side.

Measures, on identical configurations and inputs:

* forward+backward images/s: all variants of one configuration are timed in the same process, interleaved round
  by round in alternating order, and the median round is reported, so machine noise hits every variant alike;
* peak memory of a training step: each variant runs alone in a fresh subprocess. On CUDA this is
  ``torch.cuda.max_memory_allocated`` above the memory held before the first step; on CPU it is the growth of the
  peak resident set size (``VmHWM``, reset just before the first step) over the resident size then, with glibc's mmap
  threshold fixed (``MALLOC_MMAP_THRESHOLD_``) so freed activations go back to the OS and the peak is the peak;
* peak memory against depth for DenseNet-BC k=12 (L = 40, 100, 160, 250), standard vs memory-efficient.

Usage::

    python benchmarks/model.py                       # CPU, JSON to stdout
    python benchmarks/model.py --out benchmarks/results/model-cpu.json --markdown
    python benchmarks/model.py --device cuda --amp bf16 --channels-last
    python benchmarks/model.py --part speed --out benchmarks/results/speed-cpu.json --markdown   # our default
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from machine import cpu_name
from torch import nn

THROUGHPUT_CASES = [("densenet121", 224, 16), ("densenet_bc100_k12", 32, 64)]
DEPTHS = (40, 100, 160, 250)
IMPLEMENTATIONS = ("ours", "torchvision")
MODES = ("standard", "memory_efficient")


@dataclass(frozen=True)
class Variant:
    """One thing to measure: a model at a resolution and batch size, built by one implementation in one mode."""

    model: str
    resolution: int
    batch: int
    implementation: str
    mode: str
    depth: int | None = None

    @property
    def label(self) -> str:
        name = self.model if self.depth is None else f"densenet_bc{self.depth}_k12"
        return f"{name} {self.implementation} {self.mode}"


def build(variant: Variant) -> nn.Module:
    """The model for ``variant``: ours from the registry, or torchvision's class configured to the same network."""
    from densenet_ray.models import create_model

    efficient = variant.mode == "memory_efficient"
    if variant.implementation == "ours":
        depth = {"depth": variant.depth} if variant.depth is not None else {}
        return create_model(variant.model, memory_efficient=efficient, **depth)
    import torchvision

    if variant.model == "densenet121":
        return torchvision.models.densenet121(memory_efficient=efficient)
    # torchvision's class with the CIFAR form: 3x3 stride-1 stem and no stem BN/ReLU/max-pool, BC k=12, 3 blocks.
    depth = variant.depth or 100
    per_block = (depth - 4) // 6
    model = torchvision.models.DenseNet(
        growth_rate=12, block_config=(per_block,) * 3, num_init_features=24, num_classes=10, memory_efficient=efficient
    )
    model.features.conv0 = nn.Conv2d(3, 24, 3, padding=1, bias=False)
    for name in ("norm0", "relu0", "pool0"):
        setattr(model.features, name, nn.Identity())
    return model


class Runner:
    """Holds a model, a fixed batch and the step function for one variant."""

    def __init__(self, variant: Variant, device: str, amp: str | None, channels_last: bool) -> None:
        generator = torch.Generator().manual_seed(0)
        self.model = build(variant).to(device).train()
        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.model = self.model.to(memory_format=memory_format)
        shape = (variant.batch, 3, variant.resolution, variant.resolution)
        self.inputs = torch.randn(shape, generator=generator).to(device, memory_format=memory_format)
        classes = 1000 if variant.resolution == 224 else 10
        self.targets = torch.randint(0, classes, (variant.batch,), generator=generator).to(device)
        self.device = device
        self.amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(amp or "")
        self.scaler = torch.amp.GradScaler(device) if amp == "fp16" else None

    def step(self) -> None:
        self.model.zero_grad(set_to_none=True)
        with torch.autocast(self.device, dtype=self.amp_dtype or torch.float32, enabled=self.amp_dtype is not None):
            loss = F.cross_entropy(self.model(self.inputs), self.targets)
        (self.scaler.scale(loss) if self.scaler else loss).backward()
        if self.device == "cuda":
            torch.cuda.synchronize()


def time_variants(variants: list[Variant], args: argparse.Namespace) -> list[dict]:
    """Seconds per step for each variant, interleaved over rounds in alternating order; median round reported."""
    runners = [Runner(v, args.device, args.amp, args.channels_last) for v in variants]
    for runner in runners:
        for _ in range(args.warmup):
            runner.step()
    rounds: list[list[float]] = [[] for _ in runners]
    order = list(enumerate(runners))
    for round_index in range(args.rounds):
        # Alternate the direction each round: whichever variant follows another pays for its freed memory.
        for index, runner in order if round_index % 2 == 0 else order[::-1]:
            start = time.perf_counter()
            for _ in range(args.steps):
                runner.step()
            rounds[index].append((time.perf_counter() - start) / args.steps)
    results = []
    for variant, times in zip(variants, rounds, strict=True):
        seconds = statistics.median(times)
        results.append(
            {**asdict(variant), "seconds_per_step": seconds, "images_per_s": variant.batch / seconds, "rounds": times}
        )
    return results


def _status_bytes(field: str) -> int:
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith(field + ":"))
    return int(line.split()[1]) * 1024


def _reset_peak_rss() -> None:
    # Writing 5 to clear_refs resets VmHWM to the current RSS (Linux >= 4.0). ru_maxrss cannot be used: it is
    # carried across exec, so a child would report its parent's peak.
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")


def peak_memory(variant: Variant, args: argparse.Namespace) -> dict:
    """Measured in this process: call only from a fresh subprocess (``--measure-memory``)."""
    runner = Runner(variant, args.device, args.amp, args.channels_last)
    if args.device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        baseline = torch.cuda.memory_allocated()
        for _ in range(2):
            runner.step()
        peak = torch.cuda.max_memory_allocated() - baseline
    else:
        _reset_peak_rss()
        baseline = _status_bytes("VmRSS")
        for _ in range(2):
            runner.step()
        peak = _status_bytes("VmHWM") - baseline
    params = sum(p.numel() for p in runner.model.parameters())
    return {**asdict(variant), "peak_mb": round(peak / 2**20, 1), "params": params}


def memory_in_subprocess(variant: Variant, args: argparse.Namespace) -> dict:
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "0"}
    command = [sys.executable, __file__, "--measure-memory", json.dumps(asdict(variant)), "--device", args.device]
    if args.amp:
        command += ["--amp", args.amp]
    if args.channels_last:
        command.append("--channels-last")
    completed = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        raise RuntimeError(f"memory measurement of {variant.label} failed:\n{completed.stderr[-2000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def machine(args: argparse.Namespace) -> dict:
    return {
        "device": torch.cuda.get_device_name() if args.device == "cuda" else f"CPU: {cpu_name()}",
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "amp": args.amp,
        "channels_last": args.channels_last,
    }


def summarize(throughput: list[dict], memory: list[dict], only: str | None = None) -> list[dict]:
    """Per configuration and mode: ours vs torchvision speed and memory ratios, and the efficient-mode overhead."""
    rows = []
    by_key = {(r["model"], r["implementation"], r["mode"]): r for r in throughput}
    mem_by_key = {(r["model"], r["implementation"], r["mode"]): r for r in memory}
    for model, _, _ in THROUGHPUT_CASES:
        if only and model != only:
            continue
        for mode in MODES:
            ours, theirs = by_key[(model, "ours", mode)], by_key[(model, "torchvision", mode)]
            ours_mem, theirs_mem = mem_by_key[(model, "ours", mode)], mem_by_key[(model, "torchvision", mode)]
            rows.append(
                {
                    "model": model,
                    "mode": mode,
                    "ours_images_per_s": round(ours["images_per_s"], 2),
                    "torchvision_images_per_s": round(theirs["images_per_s"], 2),
                    "speed_ratio": round(ours["images_per_s"] / theirs["images_per_s"], 3),
                    "ours_peak_mb": ours_mem["peak_mb"],
                    "torchvision_peak_mb": theirs_mem["peak_mb"],
                    "memory_ratio": round(ours_mem["peak_mb"] / theirs_mem["peak_mb"], 3),
                }
            )
        standard, efficient = by_key[(model, "ours", "standard")], by_key[(model, "ours", "memory_efficient")]
        rows[-1]["ours_efficient_time_overhead"] = round(
            efficient["seconds_per_step"] / standard["seconds_per_step"] - 1, 3
        )
    return rows


def markdown(report: dict) -> str:
    lines = [
        f"Measured on {report['machine']['device']} ({report['machine']['cores']} cores), torch "
        f"{report['machine']['torch']}; `{report['command']}`.",
        "",
        "| model | mode | ours img/s | torchvision img/s | speed ratio | ours peak MB | torchvision peak MB "
        "| memory ratio |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in report["summary"]:
        lines.append(
            f"| {row['model']} | {row['mode']} | {row['ours_images_per_s']:.1f} "
            f"| {row['torchvision_images_per_s']:.1f} "
            f"| {row['speed_ratio']:.2f} | {row['ours_peak_mb']:.0f} | {row['torchvision_peak_mb']:.0f} "
            f"| {row['memory_ratio']:.2f} |"
        )
    overheads = ", ".join(
        f"{row['model']} {100 * row['ours_efficient_time_overhead']:+.1f} %"
        for row in report["summary"]
        if "ours_efficient_time_overhead" in row
    )
    lines += ["", f"Memory-efficient time overhead vs our standard mode: {overheads}.", ""]
    lines += ["| DenseNet-BC k=12, batch 64, 32x32 | params | standard peak MB | memory-efficient peak MB | ratio |"]
    lines += ["|---|---|---|---|---|"]
    depth_rows = {(r["depth"], r["mode"]): r for r in report["depth_scaling"]}
    for depth in DEPTHS:
        std, eff = depth_rows[(depth, "standard")], depth_rows[(depth, "memory_efficient")]
        ratio = eff["peak_mb"] / std["peak_mb"]
        lines.append(f"| L={depth} | {std['params']:,} | {std['peak_mb']:.0f} | {eff['peak_mb']:.0f} | {ratio:.2f} |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--amp", choices=("bf16", "fp16"), default=None, help="autocast dtype (GPU runs)")
    parser.add_argument("--channels-last", action="store_true", help="channels_last model and inputs")
    parser.add_argument("--rounds", type=int, default=8, help="interleaved timing rounds (median reported)")
    parser.add_argument("--steps", type=int, default=1, help="training steps per timing round")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per variant before timing")
    parser.add_argument("--only", choices=[case[0] for case in THROUGHPUT_CASES], help="time just this model")
    parser.add_argument("--skip-depth", action="store_true", help="skip the memory-vs-depth sweep")
    parser.add_argument("--out", help="also write the JSON report to this file (atomically)")
    parser.add_argument("--markdown", action="store_true", help="print the README tables to stderr")
    parser.add_argument(
        "--part",
        choices=("modes", "speed"),
        default="modes",
        help="modes: ours vs torchvision, "
        "standard and memory-efficient (this page); speed: our default step vs torchvision's "
        "(benchmarks/speed.py)",
    )
    parser.add_argument("--quick", action="store_true", help="speed part: BC-40-12 only, two rounds, no memory")
    parser.add_argument(
        "--layouts",
        action="store_true",
        help="speed part: also the eager precision x memory-format "
        "grid and compiled NCHW, which the auto rules come from",
    )
    parser.add_argument("--measure-memory", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda given but no CUDA device is available", file=sys.stderr)
        return 2
    if args.measure_memory:
        print(json.dumps(peak_memory(Variant(**json.loads(args.measure_memory)), args)))
        return 0
    if args.part == "speed":
        return _speed(args, argv)
    throughput, memory = [], []
    for model, resolution, batch in THROUGHPUT_CASES:
        if args.only and model != args.only:
            continue
        variants = [Variant(model, resolution, batch, impl, mode) for impl in IMPLEMENTATIONS for mode in MODES]
        throughput += time_variants(variants, args)
        memory += [memory_in_subprocess(v, args) for v in variants]
        print(f"done {model}", file=sys.stderr)
    depth_scaling = []
    if not args.skip_depth:
        for depth in DEPTHS:
            for mode in MODES:
                variant = Variant("densenet_bc100_k12", 32, 64, "ours", mode, depth=depth)
                depth_scaling.append(memory_in_subprocess(variant, args))
    report = {
        "benchmark": "model",
        "command": "python benchmarks/model.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": machine(args),
        "summary": summarize(throughput, memory, args.only),
        "throughput": throughput,
        "memory": memory,
        "depth_scaling": depth_scaling,
    }
    _write(report, args.out)
    if args.markdown and depth_scaling:
        print(markdown(report), file=sys.stderr)
    return 0


def _write(report: dict, out: str | None) -> None:
    text = json.dumps(report, indent=2)
    if out:
        tmp = f"{out}.tmp"
        os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
        with open(tmp, "w") as handle:
            handle.write(text + "\n")
        os.replace(tmp, out)
    print(text)


def _speed(args: argparse.Namespace, argv: list[str] | None) -> int:
    import speed

    report = {
        "benchmark": "speed",
        "command": "python benchmarks/model.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": machine(args),
        **speed.run(args.device, args.rounds, args.steps, args.quick, args.layouts),
    }
    _write(report, args.out)
    if args.markdown:
        print(speed.markdown(report), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
