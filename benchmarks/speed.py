"""Speed benchmark: the training step ``densenet-ray train`` runs by default against torchvision's, side by side.

One process, the configurations of one model interleaved round by round in alternating order (median round
reported), each a full training step: forward, backward and an SGD-Nesterov step at batch 64, 32x32 inputs:

* ``torchvision fp32``: torchvision's ``DenseNet`` (CIFAR form), fp32, NCHW, eager: the reference;
* ``ours fp32``: ``--precision fp32 --no-channels-last --no-compile``, the numerics of before ``--precision``;
* ``torchvision best``: torchvision's model given the precision, memory format and compile our default uses;
* ``ours default``: what ``--precision auto`` and auto channels_last/compile choose on this machine for a long run;
* ``ours default, memory-efficient``: the same with ``--memory-efficient``.

Time to first step (which includes the compile) is reported per configuration; the inductor cache starts empty in
each run of this script, but configurations that compile to the same graph (torchvision's and ours in standard
mode do) share it. Peak memory of the default standard and memory-efficient steps is measured in fresh
subprocesses, as in ``benchmarks/model.py``.

Usage::

    python benchmarks/model.py --part speed --out benchmarks/results/speed-cpu.json --markdown
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace

import torch
import torch.nn.functional as F

MODELS = (("densenet_bc40_k12", 40), ("densenet_bc100_k12", 100))
BATCH, RESOLUTION = 64, 32


@dataclass(frozen=True)
class Configuration:
    """One side of the comparison: whose model, with which numerics."""

    label: str
    implementation: str
    precision: str
    channels_last: bool
    compile: bool
    memory_efficient: bool = False
    compile_mode: str = "default"  # "reduce-overhead": CUDA graphs


def configurations(device: torch.device, layouts: bool = False) -> list[Configuration]:
    """The reference, the old default, torchvision at its best, and our default (both modes); with ``layouts`` also
    the eager precision x memory-format grid and compiled NCHW that the auto rules are chosen from."""
    from densenet_ray.train.acceleration import choose, native_bf16

    default = choose("auto", None, None, device, 10**6)
    # bf16 only where the hardware has it: emulated, it is many times slower than fp32 and auto never picks it.
    candidates = [("fp32", True, False), ("fp32", False, True), ("fp32", True, True)]
    if native_bf16(device):
        candidates = [("fp32", True, False), ("bf16", False, False), ("bf16", True, False), ("bf16", False, True)]
    grid = (
        [
            Configuration(
                f"ours {precision} {'channels_last' if last else 'NCHW'} {'compiled' if compiled else 'eager'}",
                "ours",
                precision,
                last,
                compiled,
            )
            for precision, last, compiled in candidates
            if (precision, last, compiled) != (default.precision, default.channels_last, default.compile)
        ]
        if layouts
        else []
    )
    return grid + [
        Configuration("torchvision fp32", "torchvision", "fp32", False, False),
        Configuration("ours fp32", "ours", "fp32", False, False),
        Configuration("torchvision best", "torchvision", default.precision, default.channels_last, default.compile),
        Configuration("ours default", "ours", default.precision, default.channels_last, default.compile),
        Configuration("ours default, memory-efficient", "ours", *asdict(default).values(), memory_efficient=True),
    ]


class Step:
    """A model, its optimizer and a fixed batch of one configuration (``depth`` for the BC-k12 CIFAR family)."""

    def __init__(
        self,
        depth: int | None,
        config: Configuration,
        device: str,
        model: str = "densenet_bc100_k12",
        resolution: int = RESOLUTION,
        batch: int = BATCH,
    ) -> None:
        from model import Variant, build

        mode = "memory_efficient" if config.memory_efficient else "standard"
        torch.manual_seed(0)
        variant = Variant(model, resolution, batch, config.implementation, mode, depth=depth)
        self.model = build(variant)
        memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
        self.model = self.model.to(device, memory_format=memory_format).train()
        self.optimizer = torch.optim.SGD(
            self.model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-4
        )
        generator = torch.Generator().manual_seed(0)
        self.images = torch.randn(batch, 3, resolution, resolution, generator=generator).to(
            device, memory_format=memory_format
        )
        classes = 1000 if resolution == 224 else 10
        self.labels = torch.randint(0, classes, (batch,), generator=generator).to(device)
        self.forward = torch.compile(self.model, mode=config.compile_mode) if config.compile else self.model
        self.dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(config.precision)
        self.device = device

    def __call__(self) -> None:
        with torch.autocast(self.device, dtype=self.dtype or torch.float32, enabled=self.dtype is not None):
            logits = self.forward(self.images)
        loss = F.cross_entropy(logits.float(), self.labels)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        if self.device == "cuda":
            torch.cuda.synchronize()


def time_model(name: str, depth: int, device: str, rounds: int, steps: int, layouts: bool = False) -> list[dict]:
    """Images/s per configuration (median of interleaved rounds) and the seconds to each one's first two steps."""
    entries = []
    for config in configurations(torch.device(device), layouts):
        started = time.perf_counter()
        step = Step(depth, config, device)
        step()
        step()
        entries.append({"config": config, "step": step, "first_steps_seconds": time.perf_counter() - started})
    times: list[list[float]] = [[] for _ in entries]
    order = list(enumerate(entries))
    for round_index in range(rounds):
        for index, entry in order if round_index % 2 == 0 else order[::-1]:
            started = time.perf_counter()
            for _ in range(steps):
                entry["step"]()
            times[index].append((time.perf_counter() - started) / steps)
    results = []
    for entry, seconds in zip(entries, times, strict=True):
        median = statistics.median(seconds)
        first = round(entry["first_steps_seconds"], 1)
        results.append(
            {
                "model": name,
                **asdict(entry["config"]),
                "images_per_s": round(BATCH / median, 2),
                "first_two_steps_seconds": first,
                "rounds": seconds,
            }
        )
    return results


def peak_memory_mb(depth: int, config: Configuration, device: str) -> float:
    """Growth of peak memory over two steps (call in a fresh process: ``--measure``)."""
    from model import _reset_peak_rss, _status_bytes

    step = Step(depth, config, device)
    step()  # the compile happens here, outside the measurement
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        baseline = torch.cuda.memory_allocated()
        step()
        return (torch.cuda.max_memory_allocated() - baseline) / 2**20
    step.optimizer.zero_grad(set_to_none=True)
    _reset_peak_rss()
    baseline = _status_bytes("VmRSS")
    step()
    return (_status_bytes("VmHWM") - baseline) / 2**20


def memory_in_subprocess(depth: int, config: Configuration, device: str) -> float:
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "0"}
    command = [sys.executable, __file__, "--measure", json.dumps({"depth": depth, **asdict(config)}), device]
    completed = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        raise RuntimeError(f"memory measurement of {config.label} failed:\n{completed.stderr[-2000:]}")
    return float(completed.stdout.strip().splitlines()[-1])


def summarize(results: list[dict], memory: dict[str, dict[str, float]]) -> list[dict]:
    """Per model: our default against torchvision's eager fp32 and against torchvision at its best."""
    rows = []
    for name, _ in MODELS:
        by_label = {r["label"]: r for r in results if r["model"] == name}
        ours, efficient = by_label["ours default"], by_label["ours default, memory-efficient"]
        row = {
            "model": name,
            "vs_torchvision_fp32": round(ours["images_per_s"] / by_label["torchvision fp32"]["images_per_s"], 3),
            "vs_torchvision_best": round(ours["images_per_s"] / by_label["torchvision best"]["images_per_s"], 3),
            "vs_ours_fp32": round(ours["images_per_s"] / by_label["ours fp32"]["images_per_s"], 3),
            "efficient_step_time_ratio": round(ours["images_per_s"] / efficient["images_per_s"], 3),
        }
        if name in memory:
            row["efficient_peak_ratio"] = round(memory[name]["efficient"] / memory[name]["standard"], 3)
        rows.append(row)
    return rows


def run(device: str, rounds: int, steps: int, quick: bool, layouts: bool = False) -> dict:
    """The whole comparison; ``quick`` times BC-40-12 only, for two rounds, without the memory part."""
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", tempfile.mkdtemp(prefix="speed-inductor-"))
    models = MODELS[:1] if quick else MODELS
    rounds = 2 if quick else rounds
    results = [r for name, depth in models for r in time_model(name, depth, device, rounds, steps, layouts)]
    memory: dict[str, dict[str, float]] = {}
    if not quick:
        name, depth = MODELS[-1]
        default = next(c for c in configurations(torch.device(device)) if c.label == "ours default")
        memory[name] = {
            "standard": round(memory_in_subprocess(depth, default, device), 1),
            "efficient": round(memory_in_subprocess(depth, replace(default, memory_efficient=True), device), 1),
        }
    return {"results": results, "peak_memory_mb": memory, "summary": summarize(results, memory) if not quick else []}


def markdown(report: dict) -> str:
    """The README table: images/s per configuration and model, then the ratios."""
    names = list(dict.fromkeys(r["model"] for r in report["results"]))
    lines = ["| configuration | " + " | ".join(f"{name} img/s | first 2 steps s" for name in names) + " |"]
    lines.append("|---|" + "---|---|" * len(names))
    labels = dict.fromkeys(r["label"] for r in report["results"])
    for label in labels:
        cells = []
        for name in names:
            row = next(r for r in report["results"] if r["label"] == label and r["model"] == name)
            cells.append(f"{row['images_per_s']:.1f} | {row['first_two_steps_seconds']:.0f}")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__" and len(sys.argv) == 4 and sys.argv[1] == "--measure":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    fields = json.loads(sys.argv[2])
    depth = fields.pop("depth")
    print(peak_memory_mb(depth, Configuration(**fields), sys.argv[3]))
