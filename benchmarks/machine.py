"""The CPU a benchmark ran on, named the same way in every JSON report: the model name and its native-bf16 flags.

The flags matter because the model name alone does not say which bf16 instructions a (virtual) CPU exposes: they
are the features ``densenet_ray.train.acceleration.native_bf16`` detects (through torch) when ``--precision auto``
chooses bf16.
"""

from __future__ import annotations

import platform

BF16_FLAGS = ("amx_bf16", "avx512_bf16")


def cpu_name() -> str:
    """e.g. ``Intel(R) Xeon(R) Processor (amx_bf16, avx512_bf16)`` or ``AMD EPYC 7B13 (no native bf16)``."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                key, _, value = line.partition(":")
                if key.strip() == "model name":
                    model = value.strip()
                elif key.strip() == "flags":
                    flags = set(value.split())
                    break
    except OSError:  # not Linux: the platform's name, flags unknown
        return model
    native = [flag for flag in BF16_FLAGS if flag in flags]
    return f"{model} ({', '.join(native) if native else 'no native bf16'})"
