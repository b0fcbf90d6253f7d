"""Batch inference's tasks failing inside Ray Data: the shard reader's DataError reaches the user as itself (its one
line, without Ray Data's retry advice), a Python error in a task as a bug with its own type, file and line, never as
RunFailed's one line (before: both came back as "batch inference failed: UserCodeException: ..."). A private
local Ray instance (1 CPU) reading shards of the committed slice."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from densenet_ray.data.format.manifest import load_manifest
from densenet_ray.data.storage import open_storage
from densenet_ray.errors import DataError, RunFailed
from densenet_ray.inference.job import BatchSummary, _collect, _shard_rows_dataset
from densenet_ray.inference.outputs import Labels
from densenet_ray.ray_session import ClusterNeeds, RayOptions, ray_session

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _classify_with_a_bug(batch: dict) -> dict:
    """A classifier step with a Python bug in it."""
    return {"probabilities": batch["probabilities"]}


@pytest.fixture(scope="module")
def ray_instance() -> Iterator[None]:
    with ray_session(ClusterNeeds(cpus=1), RayOptions(local=True), print_line=lambda _: None):
        yield


def _collect_rows(dataset, shard, tmp_path: Path) -> None:
    out = open_storage(str(tmp_path / "out"))
    _collect(dataset, [shard], out, Labels(("a", "b"), False), BatchSummary(), print)


def test_a_python_error_in_a_task_is_a_bug_and_a_truncated_shard_is_one_line(ray_instance, cifar_shards, tmp_path):
    data = tmp_path / "shards"
    shutil.copytree(cifar_shards, data)
    storage, manifest = load_manifest(str(data), "test")
    shard = manifest.shards[0]

    with pytest.raises(KeyError) as bug:
        _collect_rows(_shard_rows_dataset(storage, [shard], None).map_batches(_classify_with_a_bug), shard, tmp_path)
    assert not isinstance(bug.value, RunFailed)
    line = _classify_with_a_bug.__code__.co_firstlineno + 2  # its return, where the KeyError is raised
    assert f'File "{__file__}", line {line}, in _classify_with_a_bug' in str(bug.value)

    tar = data / shard.name
    tar.write_bytes(tar.read_bytes()[:1024])  # inside its first sample: the reader fails before any row
    with pytest.raises(DataError, match=rf"^cannot read shard {tar} \(ReadError: ") as truncated:
        _collect_rows(_shard_rows_dataset(storage, [shard], None), shard, tmp_path)
    assert type(truncated.value) is DataError and "\n" not in str(truncated.value)
