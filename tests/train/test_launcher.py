"""End to end on a real local Ray instance (2 CPU workers, gloo DDP) over shards of real CIFAR-10 images."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml

from densenet_ray.data.build import build_dataset
from densenet_ray.data.sources import imagefolder_source

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def shards(tmp_path_factory, fixture_tar) -> str:
    out = tmp_path_factory.mktemp("shards")
    build_dataset(imagefolder_source(fixture_tar), str(out), shard_size=50)
    build_dataset(imagefolder_source(fixture_tar, split="test"), str(out), shard_size=50)
    return str(out)


def _train(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    return subprocess.run(
        [sys.executable, "-m", "densenet_ray.cifar", *args], capture_output=True, text=True, env=env, timeout=600
    )


def test_two_worker_run_then_the_same_name_continues(shards, tmp_path) -> None:
    common = [
        "--data",
        shards,
        "--workers",
        "2",
        "--batch-size",
        "50",
        "--depth",
        "16",
        "--loader-workers",
        "0",
        "--limit-train-batches",
        "4",
        "--storage",
        str(tmp_path),
        "--name",
        "run1",
    ]
    first = _train(*common, "--epochs", "2")
    assert first.returncode == 0, first.stderr[-3000:]
    assert "epoch 1/2: loss" in first.stdout and "densenet-ray run summary" in first.stdout
    run = tmp_path / "run1"
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2]
    assert all(r["test_samples"] == 500 and r["step"] == 4 * r["epoch"] for r in records)
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["model"] == "densenet_bc100_k12" and config["depth"] == 16 and config["batch_size"] == 50
    assert any(p.name.startswith("checkpoint_") and (p / "state.pt").exists() for p in run.iterdir())

    second = _train(*common, "--epochs", "3")
    assert second.returncode == 0, second.stderr[-3000:]
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2, 3]  # continued: epoch 3 only, step counter carried on
    assert records[-1]["step"] == 12


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--data", "DATA", "--model", "densenet_bc101"], "error: unknown model 'densenet_bc101'"),
        (["--data", "DATA", "--depth", "101"], "error: depth 101 does not fit a DenseNet-BC/B"),
        (["--data", "DATA", "--batch-size", "63", "--workers", "2"], "error: global --batch-size 63 is not divisible"),
        (["--data", "EMPTY"], "error: no shard manifest for split 'train' at"),
        (["--data", "DATA", "--storage", "/proc/forbidden"], "error: --storage /proc/forbidden is not writable"),
        (["--data", "DATA", "--dataset", "mnist"], "densenet-ray train cifar: error: argument --dataset"),
    ],
)
def test_bad_input_is_one_line(args, message, shards, tmp_path) -> None:
    args = [a.replace("DATA", shards).replace("EMPTY", str(tmp_path)) for a in args]
    completed = _train(*args, "--storage", str(tmp_path)) if "--storage" not in args else _train(*args)
    assert completed.returncode in (1, 2), completed.stderr
    lines = [line for line in completed.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(message), completed.stderr
