"""Failures of a run end as one line with their cause, and the run directory stays consistent: a resume that would
change the computation, a second live driver, a corrupt latest checkpoint, a worker's own exception. Real runs on a
local Ray instance over shards of real CIFAR-10 images."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from densenet_ray.train.run.directory import LEASE_FILE
from tests.train.run_helpers import epoch_records, small_run, stderr_lines, train, train_env

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.usefixtures("module_cluster")]


@pytest.fixture(scope="module")
def finished_run(module_cluster, cifar_shards, tmp_path_factory) -> Path:
    """A 2-epoch run with a checkpoint per epoch (kept: both), copied by each test that changes it."""
    storage = tmp_path_factory.mktemp("runs")
    completed = train(*small_run(cifar_shards, storage, name="base", epochs=2, limit_train_batches=3))
    assert completed.returncode == 0, completed.stderr[-3000:]
    return storage / "base"


def _copy(run: Path, tmp_path: Path, name: str) -> Path:
    copy = tmp_path / name
    shutil.copytree(run, copy)
    return copy


def _digest(directory: Path) -> dict[str, str]:
    return {
        str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in directory.rglob("*")
        if p.is_file()
    }


def _flip_a_weight_byte(state: Path) -> None:
    """Flip one byte in the middle of the largest tensor's data: the file still loads, as other weights."""
    import struct
    import zipfile

    with zipfile.ZipFile(state) as archive:
        storages = [info for info in archive.infolist() if "/data/" in info.filename]  # not data.pkl
        largest = max(storages, key=lambda info: info.file_size)
    data = bytearray(state.read_bytes())
    name_length, extra_length = struct.unpack("<HH", data[largest.header_offset + 26 : largest.header_offset + 30])
    start = largest.header_offset + 30 + name_length + extra_length
    data[start + largest.file_size // 2] ^= 0x40
    state.write_bytes(bytes(data))


def test_a_checkpoint_stored_other_than_as_written_is_named_and_skipped(finished_run, tmp_path) -> None:
    from densenet_ray.train.config.options import TrainConfig
    from densenet_ray.train.config.resolved import resolve
    from densenet_ray.train.run.directory import RunDirectory
    from densenet_ray.train.run.preflight import choose_checkpoint

    run = _copy(finished_run, tmp_path, "flipped")
    checkpoints = sorted(p for p in run.iterdir() if p.name.startswith("checkpoint_2"))
    state = checkpoints[-1] / "state.pt"
    _flip_a_weight_byte(state)
    import torch

    assert torch.load(state, weights_only=True)["model"]  # it loads: only the recorded size and hash tell
    config = resolve(TrainConfig(dataset="cifar10", depth=16, storage=str(tmp_path), name="flipped"))
    lines: list[str] = []
    chosen = choose_checkpoint(config, RunDirectory(config.run_url), lines.append)
    size = state.stat().st_size
    assert lines == [
        f"skipped checkpoint {checkpoints[-1].name} (state.pt is not stored as written ({size} bytes, {size} "
        f"written, SHA-256 differs)); resuming from {checkpoints[0].name}"
    ]
    assert chosen.skip_checkpoint == checkpoints[-1].name


def test_a_resume_with_another_depth_is_refused_and_changes_nothing(finished_run, cifar_shards, tmp_path) -> None:
    run = _copy(finished_run, tmp_path, "base")
    before = _digest(run)
    completed = train(*small_run(cifar_shards, tmp_path, name="base", epochs=3, limit_train_batches=3, depth=40))
    assert completed.returncode == 1
    assert stderr_lines(completed) == [
        "error: run 'base' exists with other options that change what it computes: --depth 16 (now 40); resume it "
        "with its own options, or start a new run with another --name"
    ]
    assert _digest(run) == before


def test_a_corrupt_latest_checkpoint_falls_back_to_the_previous_one(finished_run, cifar_shards, tmp_path) -> None:
    run = _copy(finished_run, tmp_path, "base")
    checkpoints = sorted(p for p in run.iterdir() if p.name.startswith("checkpoint_2"))
    assert len(checkpoints) == 2
    (checkpoints[-1] / "state.pt").write_bytes(b"not a checkpoint")
    # The driver that wrote this lease died 2 minutes ago: it lapsed, and does not block the resume.
    lease = {"owner": "gone", "host": "elsewhere", "pid": 1, "expires": time.time() - 120}
    (run / LEASE_FILE).write_text(json.dumps(lease))
    completed = train(*small_run(cifar_shards, tmp_path, name="base", epochs=3, limit_train_batches=3))
    assert completed.returncode == 0, completed.stderr[-3000:]
    # the rank's file list says first what loading would find too (a torch.load error: the saved run tests show it)
    assert (
        f"skipped checkpoint {checkpoints[-1].name} (state.pt is not stored as written (16 bytes, " in completed.stdout
    )
    assert f"resuming from {checkpoints[0].name}" in " ".join(completed.stdout.split())
    records = epoch_records((run / "metrics.jsonl").read_text())
    assert [(r["epoch"], r["step"]) for r in records] == [(1, 3), (2, 6), (2, 6), (3, 9)]  # epoch 2 again, then 3

    for checkpoint in sorted(p for p in run.iterdir() if p.name.startswith("checkpoint_2")):
        (checkpoint / "state.pt").write_bytes(b"")
    completed = train(*small_run(cifar_shards, tmp_path, name="base", epochs=4, limit_train_batches=3))
    lines = stderr_lines(completed)
    assert completed.returncode == 1 and len(lines) == 1, completed.stderr
    assert lines[0].startswith(f"error: no checkpoint of run {run} loads: checkpoint_2") and "state.pt (" in lines[0]


def test_a_second_driver_of_a_live_run_is_refused(cifar_shards, tmp_path) -> None:
    args = small_run(cifar_shards, tmp_path, name="twice", epochs=1, limit_train_batches=3)
    first = subprocess.Popen(
        [sys.executable, "-m", "densenet_ray.cifar", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=train_env(),
    )
    try:
        deadline = time.monotonic() + 120
        while not (tmp_path / "twice" / LEASE_FILE).exists():
            assert first.poll() is None and time.monotonic() < deadline, first.communicate()
            time.sleep(0.1)
        second = train(*args)
        lines = stderr_lines(second)
        assert second.returncode == 1 and len(lines) == 1, second.stderr
        assert lines[0].startswith(f"error: run {tmp_path / 'twice'} is in use by pid {first.pid} on ")
        assert lines[0].endswith("wait for it to end, or use another --name")
    finally:
        out, err = first.communicate(timeout=300)
    assert first.returncode == 0, err[-3000:]
    assert not (tmp_path / "twice" / LEASE_FILE).exists()


def test_a_worker_exception_reaches_the_user_with_its_cause(cifar_shards, tmp_path) -> None:
    data = tmp_path / "shards"
    shutil.copytree(cifar_shards, data)
    shard = data / "train-000003.tar"
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])  # truncated after the manifest was written
    completed = train(*small_run(str(data), tmp_path / "runs", name="bad", epochs=1))
    lines = stderr_lines(completed)
    assert completed.returncode == 1 and len(lines) == 1, completed.stderr
    error_file = tmp_path / "runs" / "bad" / "error.txt"
    assert lines[0].startswith("error: training failed on rank ")
    assert f": DataError: shard {shard} is truncated or corrupt: " in lines[0]
    assert lines[0].endswith(f"(full traceback: {error_file})")
    assert "Traceback (most recent call last)" in error_file.read_text()
    assert "is truncated or corrupt" in error_file.read_text()
