"""Every benchmark figure the README and the documentation quote in their prose is read here from the JSON the
benchmark wrote (``benchmarks/results/``): a row names the page, the text it quotes (``{}`` where a figure stands),
the JSON file, the key path of each figure and how the page writes it. A re-measured benchmark whose figures move,
or a page that rounds a figure its own way, fails until the page says what the JSON holds. The tables of
``benchmarks.md`` are checked in ``test_tables.py``; the prose around them, and every figure another page quotes,
here.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPOSITORY = Path(__file__).resolve().parents[2]
RESULTS = REPOSITORY / "benchmarks" / "results"

# A key path: dict keys, list indexes, and ``{key: value}`` for the one list element holding those items; a path
# that starts with another ``*.json`` reads that file. A function of the row's JSON gives a derived figure.
KeyPath = tuple[Any, ...] | Callable[[dict[str, Any]], float | str]


def f0(value: float) -> str:
    return f"{value:,.0f}"


def f1(value: float) -> str:
    return f"{value:,.1f}"


def f2(value: float) -> str:
    return f"{value:.2f}"


def pct0(value: float) -> str:
    return f"{100 * value:.0f}"


def pct1(value: float) -> str:
    return f"{100 * value:.1f}"


def pct2(value: float) -> str:
    return f"{100 * value:.2f}"


@dataclass(frozen=True)
class Figure:
    page: str
    quoted: str
    json: str
    keys: tuple[KeyPath, ...]
    write: Callable[[float], str] = f2


def lookup(data: Any, path: tuple[Any, ...]) -> Any:
    for key in path:
        if isinstance(key, dict):
            (data,) = [item for item in data if all(item.get(name) == want for name, want in key.items())]
        else:
            data = data[key]
    return data


def _results(name: str) -> dict[str, Any]:
    return json.loads((RESULTS / name).read_text())


def figure_value(figure: Figure, key: KeyPath) -> float | str:
    """A figure from the row's JSON (a function may return it already written, where a row mixes formats)."""
    if callable(key):
        return key(_results(figure.json))
    if key and isinstance(key[0], str) and key[0].endswith(".json"):
        return lookup(_results(key[0]), key[1:])
    return lookup(_results(figure.json), key)


def _speed(model: str, label: str) -> tuple[Any, ...]:
    return ("results", {"model": model, "label": label}, "images_per_s")


def _ratio(top: tuple[Any, ...], bottom: tuple[Any, ...]) -> Callable[[dict[str, Any]], float]:
    return lambda data: lookup(data, top) / lookup(data, bottom)


def _difference(high: tuple[Any, ...], low: tuple[Any, ...]) -> Callable[[dict[str, Any]], float]:
    return lambda data: lookup(data, high) - lookup(data, low)


BC40, BC100 = {"model": "densenet_bc40_k12"}, {"model": "densenet_bc100_k12"}
EFFICIENT_121 = {"model": "densenet121", "mode": "memory_efficient"}
EFFICIENT_BC100 = {"model": "densenet_bc100_k12", "mode": "memory_efficient"}
RATIOS = ("throughput", "ratios")
VARIANTS = ("throughput", "variants")
DEMO = ("speed", "variants")
TRANSFER = ("runs",)
PAPER_RECIPE, EMA_0999 = ("learning_by_recipe", "", "curve", -1), ("learning", "curve", -1)
DECODED = ("summary", "s3_vs_local")
PREEMPTION = ("median_step_seconds",)
ROUND_1X2 = [(*VARIANTS, "ray 1x2 standard", "rounds", n, "steady_images_per_s") for n in range(3)]


def _peak_ratio(depth: int) -> Callable[[dict[str, Any]], float]:
    efficient = ("depth_scaling", {"depth": depth, "mode": "memory_efficient"}, "peak_mb")
    standard = ("depth_scaling", {"depth": depth, "mode": "standard"}, "peak_mb")
    return _ratio(efficient, standard)


HOME_PAGES = ("README.md", "docs/content/index.md")
FIGURES = [
    *[
        row
        for page in HOME_PAGES
        for row in (
            Figure(page, "L=250 its peak is {}x the standard mode's", "model-cpu.json", (_peak_ratio(250),)),
            Figure(
                page,
                "at {}-{}x the speed of torchvision's memory-efficient mode",
                "model-cpu.json",
                (("summary", EFFICIENT_121, "speed_ratio"), ("summary", EFFICIENT_BC100, "speed_ratio")),
            ),
            Figure(
                page,
                "runs at {}-{}x torchvision's eager fp32 step for DenseNet-BC L=40 k=12 and {}-{}x for L=100 k=12, "
                "and at {}-{}x torchvision given the same settings",
                "speed-cpu.json",
                (
                    ("summary", BC40, "vs_torchvision_fp32"),
                    ("speed-cpu-amx.json", "summary", BC40, "vs_torchvision_fp32"),
                    ("summary", BC100, "vs_torchvision_fp32"),
                    ("speed-cpu-amx.json", "summary", BC100, "vs_torchvision_fp32"),
                    ("summary", BC100, "vs_torchvision_best"),
                    ("summary", BC40, "vs_torchvision_best"),
                ),
            ),
            Figure(
                page,
                "ended at {} % test error against {} % from scratch",
                "transfer-cpu.json",
                (("runs", "fine-tuned", "final_test_error"), ("runs", "from scratch", "final_test_error")),
                pct1,
            ),
            Figure(
                page,
                "runs at {}x a hand-written PyTorch loop",
                "train-cpu.json",
                ((*RATIOS, "ray 1x2 standard / plain"),),
            ),
            Figure(
                page,
                "its first step comes {}-{} s after the command starts",
                "train-cpu.json",
                (
                    (*VARIANTS, "ray 1x2 standard", "first_step_seconds"),
                    (*VARIANTS, "ray 2x1 standard", "first_step_seconds"),
                ),
                f0,
            ),
        )
    ],
    # What auto chooses
    Figure(
        "docs/content/concepts/auto.md",
        "runs at **{}x** torchvision's eager fp32 step for BC-40-12 and **{}x** for BC-100-12. Against torchvision "
        "given the same precision, memory format and compile it runs at {}x and {}x",
        "speed-cpu.json",
        (
            ("summary", BC40, "vs_torchvision_fp32"),
            ("summary", BC100, "vs_torchvision_fp32"),
            ("summary", BC40, "vs_torchvision_best"),
            ("summary", BC100, "vs_torchvision_best"),
        ),
    ),
    Figure(
        "docs/content/concepts/auto.md",
        "our eager step ran at {} img/s in NCHW against {} in channels_last for BC-40-12, and at {} against {} for "
        "BC-100-12; compiled, NCHW and channels_last ran at {} and {} (BC-40-12) and {} and {} (BC-100-12)",
        "speed-cpu-avx2.json",
        tuple(
            _speed(model, label)
            for labels in (("ours fp32", "ours fp32 channels_last eager"), ("ours fp32 NCHW compiled", "ours default"))
            for model in ("densenet_bc40_k12", "densenet_bc100_k12")
            for label in labels
        ),
        f1,
    ),
    Figure(
        "docs/content/concepts/auto.md",
        "A cold compile of BC-100-12 takes about {} minutes on 2 cores and of BC-40-12 about {} minutes",
        "speed-cpu.json",
        (
            lambda data: (
                lookup(data, ("results", {**BC100, "label": "torchvision best"}, "first_two_steps_seconds")) / 60
            ),
            lambda data: (
                lookup(data, ("results", {**BC40, "label": "torchvision best"}, "first_two_steps_seconds")) / 60
            ),
        ),
        f1,
    ),
    Figure(
        "docs/content/concepts/auto.md",
        "takes {}x the standard step time (goal 1.10x) at **{}x** its peak memory",
        "speed-cpu.json",
        (("summary", BC100, "efficient_step_time_ratio"), ("summary", BC100, "efficient_peak_ratio")),
    ),
    Figure(
        "docs/content/concepts/auto.md",
        "({} MB against {} MB of growth over the step",
        "speed-cpu.json",
        (("peak_memory_mb", "densenet_bc100_k12", "efficient"), ("peak_memory_mb", "densenet_bc100_k12", "standard")),
        f0,
    ),
    # Exact epochs
    Figure(
        "docs/content/concepts/exact-epochs.md",
        "the spans read at {}x (local) and {}x (S3) the samples per second, and on 3 ranks x 2 loader processes {}x "
        "the S3 bytes per epoch",
        "epochs-cpu-amx.json",
        (
            ("summary", "local samples/s", "ratio"),
            ("summary", "s3 samples/s", "ratio"),
            _ratio(("mixing", "after", "s3_bytes"), ("mixing", "before", "s3_bytes")),
        ),
    ),
    # Guides
    Figure(
        "docs/content/guides/batch-inference.md",
        "({} images/s against the job's {} on 2 cores",
        "batch-inference-cpu.json",
        (("images_per_s", "one process"), ("images_per_s", "batch, 2 actor(s)")),
        f1,
    ),
    Figure(
        "docs/content/guides/preemption-elastic.md",
        "The checks cost {} % of `make demo`'s step",
        "preemption-check-cpu.json",
        (("watched_check_share",),),
        pct2,
    ),
    Figure(
        "docs/content/guides/troubleshooting.md",
        "it cut BC-100-12's peak to {}x",
        "gpu-h200.json",
        (_ratio(("memory", "fp32 memory_efficient"), ("memory", "fp32 standard")),),
    ),
    *[
        Figure("docs/content/guides/gpu.md", quoted, "gpu-h200.json", keys, write)
        for quoted, keys, write in (
            ("| fp32, eager | {} | {} |", (("memory", "fp32 standard"), ("memory", "fp32 memory_efficient")), f0),
            (
                "| bf16 autocast, compiled | {} | {} |",
                (("memory", "bf16 compiled standard"), ("memory", "bf16 compiled memory_efficient")),
                f0,
            ),
            (
                "| the original Torch code on a TITAN X (its README) | {} | {} |",
                (("memory", "original_torch_mb", "standard"), ("memory", "original_torch_mb", "memory_efficient")),
                f0,
            ),
            (
                "bf16 autocast, compiled | 1,065 | 607 | {}x |",
                (_ratio(("memory", "bf16 compiled memory_efficient"), ("memory", "bf16 compiled standard")),),
                f2,
            ),
            (
                "TITAN X (its README) | 5,452 | 1,655 | {}x |",
                (
                    _ratio(
                        ("memory", "original_torch_mb", "memory_efficient"), ("memory", "original_torch_mb", "standard")
                    ),
                ),
                f2,
            ),
            ("trained at {} images/s through the training engine", (("engine", "engine"),), f1),
            (
                "decoded at {} images/s on {} CPU loader processes against {} with `--decode gpu`",
                (
                    ("pipeline", "decode_cpu_images_per_s"),
                    ("pipeline", "loader_workers"),
                    ("pipeline", "decode_gpu_images_per_s"),
                ),
                f0,
            ),
            ("with `--decode gpu` ({}x)", (("pipeline", "gpu_over_cpu"),), f2),
        )
    ],
    Figure(
        "docs/content/guides/gpu.md", "on CPU, {}x the standard mode's at L=250", "model-cpu.json", (_peak_ratio(250),)
    ),
]

BENCHMARKS = "docs/content/benchmarks.md"
FIGURES += [
    Figure(BENCHMARKS, quoted, json_file, keys, write)
    for quoted, json_file, keys, write in (
        # Performance
        (
            "That is **{}x** (BC-40-12) and **{}x** (BC-100-12) torchvision's eager fp32 step, {}x and {}x torchvision "
            "on equal footing, and a memory-efficient step at {}x (BC-40-12) and {}x (BC-100-12) the standard one's "
            "time, at {}x its peak memory",
            "speed-cpu-amx.json",
            (
                ("summary", BC40, "vs_torchvision_fp32"),
                ("summary", BC100, "vs_torchvision_fp32"),
                ("summary", BC40, "vs_torchvision_best"),
                ("summary", BC100, "vs_torchvision_best"),
                ("summary", BC40, "efficient_step_time_ratio"),
                ("summary", BC100, "efficient_step_time_ratio"),
                ("summary", BC100, "efficient_peak_ratio"),
            ),
            f2,
        ),
        (
            "(BC-100-12: {} against {} MB of growth over the step)",
            "speed-cpu-amx.json",
            (
                ("peak_memory_mb", "densenet_bc100_k12", "efficient"),
                ("peak_memory_mb", "densenet_bc100_k12", "standard"),
            ),
            f0,
        ),
        (
            "fp32 channels_last eager is the fastest fp32 step here, at **{}x** (BC-40-12) and **{}x** (BC-100-12) "
            "torchvision's eager fp32 step",
            "speed-cpu-avx2.json",
            (
                _ratio(
                    _speed("densenet_bc40_k12", "ours fp32 channels_last eager"),
                    _speed("densenet_bc40_k12", "torchvision fp32"),
                ),
                _ratio(
                    _speed("densenet_bc100_k12", "ours fp32 channels_last eager"),
                    _speed("densenet_bc100_k12", "torchvision fp32"),
                ),
            ),
            f2,
        ),
        (
            "The memory-efficient compiled step took {}x the standard one's peak",
            "speed-cpu-avx2.json",
            (("summary", BC100, "efficient_peak_ratio"),),
            f2,
        ),
        (
            "the standard one's peak ({} against {} MB)",
            "speed-cpu-avx2.json",
            (
                ("peak_memory_mb", "densenet_bc100_k12", "efficient"),
                ("peak_memory_mb", "densenet_bc100_k12", "standard"),
            ),
            f0,
        ),
        ("The default job runs at **{}x** the fp32 one", "demo-speed-cpu.json", (("speed", "default / fp32"),), f2),
        (
            "With a warm compile cache the first step comes {} s after the job starts",
            "demo-speed-cpu.json",
            ((*DEMO, "default", "first_step_seconds_by_round", 1),),
            f1,
        ),
        (
            "Here the default job runs at **{}x** the fp32 one (rounds: {}x and {}x)",
            "demo-speed-cpu-amx.json",
            (
                ("speed", "default / fp32"),
                _ratio(
                    (*DEMO, "default", "rounds", 0, "steady_images_per_s"),
                    (*DEMO, "fp32 (before)", "rounds", 0, "steady_images_per_s"),
                ),
                _ratio(
                    (*DEMO, "default", "rounds", 1, "steady_images_per_s"),
                    (*DEMO, "fp32 (before)", "rounds", 1, "steady_images_per_s"),
                ),
            ),
            f2,
        ),
        (
            "With a warm compile cache the first step comes {} s after the start",
            "demo-speed-cpu-amx.json",
            ((*DEMO, "default", "first_step_seconds_by_round", 1),),
            f1,
        ),
        (
            "after the uncompiled job's {} s",
            "demo-speed-cpu-amx.json",
            ((*DEMO, "fp32 (before)", "first_step_seconds_by_round", 1),),
            f0,
        ),
        # Model benchmark
        (
            "Memory-efficient time overhead vs our standard mode: densenet121 +{} %, densenet_bc100_k12 +{} %.",
            "model-cpu.json",
            (
                ("summary", EFFICIENT_121, "ours_efficient_time_overhead"),
                ("summary", EFFICIENT_BC100, "ours_efficient_time_overhead"),
            ),
            pct1,
        ),
        (
            "The memory-efficient mode is {}-{}x torchvision's memory-efficient speed",
            "model-cpu.json",
            (("summary", EFFICIENT_121, "speed_ratio"), ("summary", EFFICIENT_BC100, "speed_ratio")),
            f2,
        ),
        (
            "and costs {}-{} % over our standard mode",
            "model-cpu.json",
            (
                ("summary", EFFICIENT_121, "ours_efficient_time_overhead"),
                ("summary", EFFICIENT_BC100, "ours_efficient_time_overhead"),
            ),
            pct0,
        ),
        (
            "Its peak is {}x the standard mode's at L=40 and {}x at L=250",
            "model-cpu.json",
            (_peak_ratio(40), _peak_ratio(250)),
            f2,
        ),
        ("at L=250 ({}x less)", "model-cpu.json", (lambda data: 1 / _peak_ratio(250)(data),), f0),
        # Training benchmark
        (
            "With the same threads, the Ray job runs at {}x the plain loop's steady-state speed",
            "train-cpu.json",
            ((*RATIOS, "ray 1x2 standard / plain"),),
            f2,
        ),
        ("The 2-worker DDP layout runs at {}x", "train-cpu.json", ((*RATIOS, "ray 2x1 standard / plain"),), f2),
        (
            "the rounds of one variant differ by up to {} % (`ray 1x2`: {} to {} images/s)",
            "train-cpu.json",
            (
                lambda data: pct0(_ratio(ROUND_1X2[1], ROUND_1X2[2])(data) - 1),
                ROUND_1X2[2],
                ROUND_1X2[1],
            ),
            f0,
        ),
        (
            "One `plain memory_efficient` round ({} images/s)",
            "train-cpu.json",
            ((*VARIANTS, "plain memory_efficient", "rounds", 1, "steady_images_per_s"),),
            f0,
        ),
        (
            "**Time to first step** is {}-{} s for the Ray job (goal: under 20 s), against {} s for the plain loop",
            "train-cpu.json",
            (
                (*VARIANTS, "ray 1x2 standard", "first_step_seconds"),
                (*VARIANTS, "ray 2x1 standard", "first_step_seconds"),
                (*VARIANTS, "plain standard", "first_step_seconds"),
            ),
            f1,
        ),
        (
            "{}x the speed at {}x the peak RSS in the Ray job, and {}x / {}x in the plain loop",
            "train-cpu.json",
            (
                (*RATIOS, "ray 2x1 memory_efficient / standard speed"),
                (*RATIOS, "ray 2x1 memory_efficient / standard memory"),
                (*RATIOS, "plain memory_efficient / standard speed"),
                (*RATIOS, "plain memory_efficient / standard memory"),
            ),
            f2,
        ),
        (
            "After 4 epochs bf16 ends {} points *below* fp32",
            "learning-cpu.json",
            (
                _difference(
                    ("learning_by_precision", "fp32", "final_test_error"),
                    ("learning_by_precision", "auto", "final_test_error"),
                ),
            ),
            pct2,
        ),
        (
            "Epochs 3-4 are the clean comparison: {}x for bf16 over fp32",
            "learning-cpu.json",
            (
                lambda data: (
                    sum(data["learning_by_precision"]["auto"]["curve"][i]["images_per_s"] for i in (2, 3))
                    / sum(data["learning_by_precision"]["fp32"]["curve"][i]["images_per_s"] for i in (2, 3))
                ),
            ),
            f2,
        ),
        (
            "ended at **{} %** (epochs 1-4: {}, {}, {}, {} %",
            "learning-cpu-amx-exact.json",
            (
                ("learning", "final_test_error"),
                *[("learning", "curve", epoch, "test_error") for epoch in range(4)],
            ),
            pct2,
        ),
        (
            "23.68 %; {} images/s steady",
            "learning-cpu-amx-exact.json",
            (("learning", "curve", -1, "images_per_s"),),
            f0,
        ),
        # Data throughput
        (
            "S3 runs at {}-{} of local disk. Through resets every 4 MB, CIFAR stays at {}-{}.",
            "data-cpu.json",
            (
                (*DECODED, "imagenet-like decoded 2w s3/local"),
                (*DECODED, "cifar10 decoded 1w s3/local"),
                (*DECODED, "cifar10 decoded 2w s3+resets/local"),
                (*DECODED, "cifar10 decoded 1w s3+resets/local"),
            ),
            f2,
        ),
        (
            "one loader core decodes and augments {}x the CIFAR images per second that a 2-core CPU trainer consumes "
            "for BC-100-12 ({} img/s, model benchmark)",
            "data-cpu.json",
            (
                ("summary", "cifar_decoded_per_loader_core_vs_trainer"),
                ("summary", "trainer_images_per_s_bc100_k12_2cores"),
            ),
            lambda value: f"{value:g}",
        ),
        (
            "reaches only {}-{} of local reads",
            "data-cpu.json",
            ((*DECODED, "imagenet-like raw 2w s3/local"), (*DECODED, "cifar10 raw 1w s3/local")),
            f2,
        ),
        (
            "ImageNet-like shards through resets drop to {}-{}.",
            "data-cpu.json",
            (
                (*DECODED, "imagenet-like decoded 2w s3+resets/local"),
                (*DECODED, "imagenet-like decoded 1w s3+resets/local"),
            ),
            f2,
        ),
        ("({} resets in this run)", "data-cpu.json", (("resets",),), f0),
        # Exact epochs
        (
            "the spans read {} % more bytes",
            "epochs-cpu-amx.json",
            (lambda data: data["summary"]["s3 bytes per epoch"]["ratio"] - 1,),
            pct1,
        ),
        (
            "the whole-shard streams wrapped and read {} times the data",
            "epochs-cpu-amx.json",
            (_ratio(("mixing", "before", "s3_bytes"), ("mixing", "after", "s3_bytes")),),
            f1,
        ),
        # Your own images
        (
            "on the same decoder the shards are {} % ahead",
            "own-data-cpu.json",
            (
                lambda data: (
                    data["median_images_per_s"]["densenet-ray"]
                    / data["median_images_per_s"]["torchvision, torchvision.io loader"]
                    - 1
                ),
            ),
            pct0,
        ),
        (
            "(5,000 images, 15 epochs: {} % there)",
            "transfer-cpu.json",
            ((*TRANSFER, "pretrain (5 other classes)", "final_test_error"),),
            pct1,
        ),
        (
            "{} and\n{} min a run",
            "transfer-cpu.json",
            (
                lambda data: data["runs"]["fine-tuned"]["wall_seconds"] / 60,
                lambda data: data["runs"]["from scratch"]["wall_seconds"] / 60,
            ),
            f1,
        ),
        # Recipes
        (
            "the average comes within {} points of the raw weights by epoch 4",
            "learning-ema0999-cpu-amx.json",
            (_difference((*EMA_0999, "ema_test_error"), (*EMA_0999, "test_error")),),
            pct2,
        ),
        (
            "`--label-smoothing 0.1` ends {} points above plain",
            "learning-recipes-cpu-amx.json",
            (
                _difference(
                    ("learning_by_recipe", "--label-smoothing 0.1", "curve", -1, "test_error"),
                    (*PAPER_RECIPE, "test_error"),
                ),
            ),
            pct2,
        ),
        (
            "ran densenet121 (batch 64, bf16 channels_last, eager) at {}x the paper's step ({} against {} images/s",
            "gpu-h200.json",
            (("recipe", "modern / paper"), ("recipe", "modern"), ("recipe", "paper")),
            lambda value: f"{value:.2f}" if value < 10 else f"{value:.1f}",
        ),
        # Preemption checks
        (
            "The check costs {} ms against a {} s step",
            "preemption-check-cpu.json",
            (lambda data: 1000 * data["check_seconds"], (*PREEMPTION, "plain")),
            lambda value: f"{value:.1f}" if value > 1 else f"{value:.2f}",
        ),
        (
            "{} % if asked after every step, {} % at the schedule used (every {}th step here)",
            "preemption-check-cpu.json",
            (
                lambda data: pct1(data["check_share_of_a_step"]),
                lambda data: pct2(data["watched_check_share"]),
                ("watched_checks_every_steps",),
            ),
            f0,
        ),
        # Batch inference and GPU
        (
            "| `predict --out`, Ray Data, 2 actors | {} | {}x |",
            "batch-inference-cpu.json",
            (("images_per_s", "batch, 2 actor(s)"), ("ratio_vs_one_process", "batch, 2 actor(s)")),
            lambda value: f"{value:.1f}" if value > 10 else f"{value:.2f}",
        ),
        (
            "fp32: {} standard, {} memory-efficient ({}x); bf16 compiled: {} and {} ({}x). "
            "The original Torch code on a TITAN X: {} and {}",
            "gpu-h200.json",
            (
                ("memory", "fp32 standard"),
                ("memory", "fp32 memory_efficient"),
                _ratio(("memory", "fp32 memory_efficient"), ("memory", "fp32 standard")),
                ("memory", "bf16 compiled standard"),
                ("memory", "bf16 compiled memory_efficient"),
                _ratio(("memory", "bf16 compiled memory_efficient"), ("memory", "bf16 compiled standard")),
                ("memory", "original_torch_mb", "standard"),
                ("memory", "original_torch_mb", "memory_efficient"),
            ),
            lambda value: f2(value) if value < 10 else f0(value),
        ),
        (
            "{} images/s decoding on the CPU, {} with `--decode gpu` ({}x)",
            "gpu-h200.json",
            (
                ("pipeline", "decode_cpu_images_per_s"),
                ("pipeline", "decode_gpu_images_per_s"),
                ("pipeline", "gpu_over_cpu"),
            ),
            lambda value: f2(value) if value < 10 else f0(value),
        ),
        (
            "`train_epoch` {} images/s, a plain loop {} ({}x)",
            "gpu-h200.json",
            (("engine", "engine"), ("engine", "plain"), ("engine", "engine / plain")),
            lambda value: f2(value) if value < 10 else f1(value),
        ),
    )
]


def _flat(text: str) -> str:
    return " ".join(text.split())


def quoted_text(figure: Figure) -> str:
    """The figure's quoted text with each figure as the JSON gives it, written as the page writes it."""
    values = [figure_value(figure, key) for key in figure.keys]
    return figure.quoted.format(*(value if isinstance(value, str) else figure.write(value) for value in values))


@pytest.mark.parametrize("figure", FIGURES, ids=lambda figure: f"{figure.page}: {figure.quoted[:50]}")
def test_each_quoted_benchmark_figure_is_what_its_json_holds(figure: Figure) -> None:
    page = _flat((REPOSITORY / figure.page).read_text())
    expected = _flat(quoted_text(figure))
    assert expected in page, f"{figure.page} should say {expected!r} ({figure.json})"


def test_the_documentation_site_serves_the_benchmarks_own_json() -> None:
    """``docs/content/results/`` (the JSON the benchmarks page links) holds exactly the files the benchmarks wrote."""
    served = REPOSITORY / "docs" / "content" / "results"
    assert sorted(path.name for path in served.glob("*.json")) == sorted(path.name for path in RESULTS.glob("*.json"))
    for path in RESULTS.glob("*.json"):
        assert (served / path.name).read_bytes() == path.read_bytes(), path.name


def test_a_figure_the_json_does_not_hold_fails() -> None:
    figure = Figure(
        "README.md", "runs at {}x a hand-written", "train-cpu.json", ((*RATIOS, "ray 2x1 standard / plain"),)
    )
    assert _flat(quoted_text(figure)) not in _flat((REPOSITORY / figure.page).read_text())
    assert re.fullmatch(r"runs at 1\.16x a hand-written", quoted_text(figure))
