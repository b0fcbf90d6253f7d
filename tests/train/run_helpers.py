"""Tiny training runs as a user starts them: ``python -m densenet_ray.cifar`` in a subprocess, no RAY_ADDRESS."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable


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


def epoch_records(text: str) -> list[dict]:
    """The epoch records of a ``metrics.jsonl``'s text (not its mid-epoch, worker-group-start, profile or
    preemption records)."""
    records = [json.loads(line) for line in text.splitlines()]
    others = ("attempt", "mid_epoch", "profile", "preempted")
    return [record for record in records if not any(record.get(marker) for marker in others)]


def attempt_records(text: str) -> list[dict]:
    """The worker-group-start records of a ``metrics.jsonl``'s text."""
    return [record for record in map(json.loads, text.splitlines()) if record.get("attempt")]


def train_in_terminal(*args: str, timeout: int = 600) -> tuple[int, str]:
    """``python -m densenet_ray.cifar`` with a pseudo-terminal as stdout and stderr; its exit code and output."""
    import pty
    import select

    controller, terminal = pty.openpty()
    command = [sys.executable, "-m", "densenet_ray.cifar", *args]
    process = subprocess.Popen(command, stdin=terminal, stdout=terminal, stderr=terminal, env=train_env())
    os.close(terminal)
    output = b""
    while True:
        ready, _, _ = select.select([controller], [], [], 1.0)
        chunk = b""
        if ready:
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # the terminal closed: the process is gone
                chunk = b""
        output += chunk
        if not chunk and process.poll() is not None:
            break
    os.close(controller)
    return process.wait(timeout=timeout), output.decode(errors="replace")


def wait_for(condition: Callable[[], bool], process: subprocess.Popen, what: str, timeout: float = 300) -> None:
    """Poll ``condition`` every half second while ``process`` (a run) lives; fail with its stderr if it ends first."""
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None:
            raise AssertionError(f"the run ended before {what}: {process.communicate()[1][-3000:]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} within {timeout} s")
        time.sleep(0.5)
