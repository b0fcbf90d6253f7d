"""What ``auto`` resolves to, per device and run length, and the shared compile cache."""

from __future__ import annotations

import os

import pytest
import torch

from densenet_ray.errors import UserError
from densenet_ray.train import acceleration
from densenet_ray.train.acceleration import COMPILE_CACHE_ENV, COMPILE_MIN_STEPS, Acceleration, choose
from densenet_ray.train.config.declaration import check_value
from densenet_ray.train.config.options import training_option

CPU = torch.device("cpu")


@pytest.fixture
def hardware(monkeypatch):
    """Set what the CPU is said to support: ``hardware(bf16=..., compiler=...)``."""

    def configure(bf16: bool, compiler: bool = True) -> None:
        monkeypatch.setattr(acceleration, "native_bf16", lambda device: bf16)
        monkeypatch.setattr(acceleration, "compile_toolchain", lambda device: compiler)

    return configure


def test_auto_on_a_native_bf16_cpu_compiles_long_runs_only(hardware) -> None:
    hardware(bf16=True)
    assert choose("auto", None, None, CPU, COMPILE_MIN_STEPS) == Acceleration("bf16", True, True)
    # Short runs stay eager; eager bf16 on a CPU measured faster in NCHW.
    assert choose("auto", None, None, CPU, COMPILE_MIN_STEPS - 1) == Acceleration("bf16", False, False)


def test_auto_without_native_bf16_or_a_compiler(hardware) -> None:
    hardware(bf16=False, compiler=False)
    assert choose("auto", None, None, CPU, 10**6) == Acceleration("fp32", True, False)


def test_fp32_on_a_cpu_stays_eager_even_for_long_runs(hardware) -> None:
    """Compiled fp32 measured slower than eager channels_last on an AVX2 CPU (README, Performance)."""
    hardware(bf16=False)
    assert choose("auto", None, None, CPU, 10**6) == Acceleration("fp32", True, False)
    hardware(bf16=True)
    assert choose("fp32", None, None, CPU, 10**6) == Acceleration("fp32", True, False)
    assert choose("fp32", None, True, CPU, 1) == Acceleration("fp32", True, True)  # still there when asked


def test_explicit_choices_win_over_auto(hardware) -> None:
    hardware(bf16=True)
    assert choose("fp32", False, True, CPU, 1) == Acceleration("fp32", False, True)
    assert choose("fp16", True, False, CPU, 10**6) == Acceleration("fp16", True, False)
    with pytest.raises(UserError, match=r"^--precision 'int8' is not one of: auto, fp32, bf16, fp16$"):
        check_value(training_option("precision"), "int8")  # where a precision is given: choose() takes it checked


def test_native_bf16_follows_the_cpu_flags(monkeypatch) -> None:
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    assert not acceleration.native_bf16(CPU)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True)
    assert acceleration.native_bf16(CPU)


def test_describe_names_every_choice() -> None:
    assert Acceleration("bf16", True, True).describe() == "bf16 autocast, channels_last, compiled"
    assert Acceleration("fp32", False, False).describe() == "fp32, NCHW, eager"


def test_the_compile_cache_is_shared_unless_the_user_chose_one(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv(COMPILE_CACHE_ENV, raising=False)
    assert acceleration.use_compile_cache(str(tmp_path / "cache")) == str(tmp_path / "cache")
    assert os.path.isdir(tmp_path / "cache")
    monkeypatch.setenv(COMPILE_CACHE_ENV, str(tmp_path / "mine"))
    assert acceleration.use_compile_cache(str(tmp_path / "cache")) == str(tmp_path / "mine")
