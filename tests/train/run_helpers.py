"""Tiny training runs as a user starts them: ``python -m densenet_ray.cifar`` in a subprocess, no RAY_ADDRESS."""

from __future__ import annotations

import os
import subprocess
import sys


def train_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(extra)
    return env


def train(*args: str, env: dict[str, str] | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "densenet_ray.cifar", *args],
        capture_output=True,
        text=True,
        env=env or train_env(),
        timeout=timeout,
    )


def small_run(shards: str, storage, **options: object) -> list[str]:
    """Arguments for a tiny 2-worker run (BC-16, batch 50, in-process decoding) plus ``options`` as flags."""
    args = ["--data", shards, "--workers", "2", "--batch-size", "50", "--depth", "16", "--loader-workers", "0"]
    args += ["--storage", str(storage)]
    for key, value in options.items():
        args += [f"--{key.replace('_', '-')}", str(value)]
    return args


def stderr_lines(completed: subprocess.CompletedProcess) -> list[str]:
    return [line for line in completed.stderr.splitlines() if line.strip()]
