"""Batch inference on a local Ray instance: the committed slice's test shards on S3 (a real HTTP S3 server), two
actors, Parquet a shard; the same predictions as the one-process ``predict``; a rerun recomputes only what is
missing; a corrupt sample is one named skip."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from densenet_ray.cli import main
from densenet_ray.data.storage import open_storage

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _predict(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "densenet_ray", "predict", *args], capture_output=True, text=True, timeout=600
    )


def _corrupt_one_image(shard: Path) -> str:
    """Zero the bytes of the shard's third image in place (sizes and offsets unchanged); returns its key."""
    with tarfile.open(shard) as archive:
        member = [m for m in archive.getmembers() if m.name.endswith(".jpg")][2]
    with open(shard, "r+b") as handle:
        handle.seek(member.offset_data)
        handle.write(b"\0" * member.size)
    return member.name.rsplit(".", 1)[0]


@pytest.fixture
def test_shards(cifar_shards, tmp_path, bucket) -> tuple[Path, str, str]:
    """The slice's test split (10 shards of 50) with one corrupt image, locally and on S3; and the corrupt key."""
    local = tmp_path / "shards"
    local.mkdir()
    for path in Path(cifar_shards).iterdir():
        if path.name.startswith("test"):
            shutil.copy(path, local / path.name)
    key = _corrupt_one_image(local / "test-000003.tar")
    remote = open_storage(f"s3://{bucket}/slice")
    for path in sorted(local.iterdir()):
        remote.write_bytes(path.name, path.read_bytes())
    return local, f"s3://{bucket}/slice", key


def test_two_actors_write_what_one_process_predicts(modern_run, test_shards, bucket) -> None:
    import pyarrow.parquet as pq

    local, remote, corrupt = test_shards
    model, out = str(modern_run["run"]), f"s3://{bucket}/predictions"
    # --local: a private instance, whose workers inherit this test's S3 endpoint and credentials.
    first = _predict(model, remote, "--out", out, "--concurrency", "2", "--batch-size", "32", "--local")
    assert first.returncode == 0, first.stderr[-3000:]
    assert f"skipped test-000003.tar/{corrupt}: does not decode" in first.stdout
    assert "classified 499 image(s) of 10 shard(s), 1 skipped in " in first.stdout and "with 2 actor(s)" in first.stdout

    one_process = _predict(model, *sorted(str(p) for p in local.glob("*.tar")), "--json")
    assert one_process.returncode == 0, one_process.stderr[-3000:]
    assert f"test-000003.tar/{corrupt}.jpg: not an image" in one_process.stderr
    expected = {}
    for line in one_process.stdout.splitlines():
        record = json.loads(line)
        expected[record["image"].rsplit("/", 2)[-2:][0], Path(record["image"]).stem] = record["top"]
    storage = open_storage(out)
    names = sorted(info.name for info in storage.list())
    assert names == [f"test-{index:06d}.parquet" for index in range(10)]
    found = {}
    for name in names:
        table = pq.read_table(io.BytesIO(storage.read_bytes(name)))
        assert table.schema.metadata[b"densenet_ray.shard"] == name.replace(".parquet", ".tar").encode()
        for row in table.to_pylist():
            found[name.replace(".parquet", ".tar"), row["key"]] = row
    assert len(found) == len(expected) == 499
    for where, top in expected.items():
        row = found[where]
        assert row["top_classes"] == [entry["class"] for entry in top]
        assert row["top_probabilities"] == pytest.approx([entry["probability"] for entry in top], abs=1e-5)

    storage.delete("test-000007.parquet")
    again = _predict(model, remote, "--out", out, "--concurrency", "1", "--local")  # 1 shard left
    assert again.returncode == 0, again.stderr[-3000:]
    assert "classified 50 image(s) of 1 shard(s) in " in again.stdout
    assert "(9 shard(s) were already there)" in again.stdout and "skipped" not in again.stdout
    assert storage.exists("test-000007.parquet")


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--concurrency", "0"], "error: --concurrency 0 must be at least 1 (the actors holding the model)"),
        (["--out", "/proc/forbidden"], "error: --out /proc/forbidden is not writable ("),
        (["--json"], "error: --json shape what predict prints on files; with --out every image goes to Parquet"),
    ],
)
def test_bad_input_is_one_line(modern_run, cifar_shards, capsys, extra, message) -> None:
    args = ["predict", str(modern_run["run"]), cifar_shards, "--split", "test"]
    args += extra if "--out" in extra else ["--out", "/tmp/unused-predictions", *extra]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1, err
