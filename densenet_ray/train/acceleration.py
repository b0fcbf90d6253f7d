"""How a worker runs its steps fast: precision, memory format and ``torch.compile``, chosen on the worker's own device.

``auto`` resolves where the hardware is known, in the worker, so a CPU-only driver can launch onto GPU nodes. The
rules come from side-by-side measurements (README, Performance; ``benchmarks/model.py``):

* **precision**: bf16 autocast where the hardware multiplies bf16 natively (CUDA compute capability 8.0 and up;
  CPUs with AMX or AVX512-BF16), fp32 elsewhere. BatchNorm statistics and the loss stay in fp32 either way.
* **channels_last**: on, except for bf16 on a CPU without compile, where NCHW measured faster (BC-100-12).
* **compile**: on for runs of at least :data:`COMPILE_MIN_STEPS` optimizer steps where inductor has its
  toolchain (a C++ compiler on CPU, Triton on CUDA), except fp32 on a CPU: on an AVX2-only EPYC the compiled fp32
  step measured slower than eager channels_last (BC-100-12: 14.9 against 17.7 images/s). A first compile of
  BC-100-12 takes two to five minutes on two cores; the inductor cache (:func:`use_compile_cache`) and the run's
  compile artifacts (``checkpoint/compile_cache.py``) make later runs and restarts start in seconds.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from dataclasses import dataclass

import torch

from densenet_ray.paths import COMPILE_CACHE_DIR
from densenet_ray.train.config.choices import Precision

COMPILE_MIN_STEPS = 500  # below this a cold compile costs more than it saves (BC-40-12, 2 cores)
COMPILE_CACHE_ENV = "TORCHINDUCTOR_CACHE_DIR"
DDP_OPTIONS = {"gradient_as_bucket_view": True}  # gradients live in DDP's buckets: no copy in or out per step


@dataclass(frozen=True)
class Acceleration:
    """What a worker's steps actually run with (no ``auto`` left)."""

    precision: str
    channels_last: bool
    compile: bool

    def describe(self) -> str:
        """e.g. ``bf16 autocast, channels_last, compiled``."""
        parts = ["fp32" if self.precision == "fp32" else f"{self.precision} autocast"]
        parts.append("channels_last" if self.channels_last else "NCHW")
        parts.append("compiled" if self.compile else "eager")
        return ", ".join(parts)


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` multiplies bf16 in hardware (not emulated through fp32)."""
    if device.type == "cuda":
        return torch.cuda.get_device_capability(device) >= (8, 0)
    if device.type == "cpu":
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    return False


def compile_toolchain(device: torch.device) -> bool:
    """Whether inductor can generate code for ``device`` here: a C++ compiler for CPU, Triton for CUDA."""
    if device.type == "cuda":
        return importlib.util.find_spec("triton") is not None
    if device.type == "cpu":
        return any(shutil.which(name) for name in (os.environ.get("CXX", "c++"), "g++", "clang++"))
    return False


def choose(
    precision: Precision, channels_last: bool | None, compile: bool | None, device: torch.device, planned_steps: int
) -> Acceleration:
    """Resolve ``auto`` (``precision == "auto"``, ``None`` flags) for ``device`` and a run of ``planned_steps``.
    ``precision`` was checked where it was given (the ``--precision`` option's declaration)."""
    if precision == "auto":
        precision = "bf16" if native_bf16(device) else "fp32"
    if compile is None:
        pays = not (device.type == "cpu" and precision == "fp32")
        compile = pays and planned_steps >= COMPILE_MIN_STEPS and compile_toolchain(device)
    if channels_last is None:
        channels_last = not (device.type == "cpu" and precision == "bf16" and not compile)
    return Acceleration(precision, channels_last, compile)


def use_compile_cache(directory: str = COMPILE_CACHE_DIR) -> str:
    """Point inductor's on-disk cache at ``directory`` (unless the user chose one), so every worker of a run on this
    machine, and every later run and restart, reuses compiled graphs instead of compiling again."""
    os.environ.setdefault(COMPILE_CACHE_ENV, directory)
    os.makedirs(os.environ[COMPILE_CACHE_ENV], exist_ok=True)
    return os.environ[COMPILE_CACHE_ENV]
