"""Local and S3 storage: atomic writes, listing, and clear errors."""

from __future__ import annotations

import os

import pytest

from densenet_ray.data.storage import LocalStorage, StorageError, open_storage


def test_local_write_is_atomic_and_listed(tmp_path) -> None:
    storage = open_storage(str(tmp_path / "out"))
    storage.write_bytes("a/b.bin", b"hello")
    assert storage.read_bytes("a/b.bin") == b"hello"
    assert [(i.name, i.size) for i in storage.list()] == [("a/b.bin", 5)]
    assert storage.exists("a/b.bin") and not storage.exists("a/c.bin")
    assert oct(os.stat(tmp_path / "out" / "a" / "b.bin").st_mode & 0o777) == oct(0o666 & ~_umask())
    with pytest.raises(RuntimeError), storage.open_write("a/b.bin") as handle:
        handle.write(b"half-written")
        raise RuntimeError("interrupted")
    assert storage.read_bytes("a/b.bin") == b"hello"  # the old object survives
    assert sorted(os.listdir(tmp_path / "out" / "a")) == ["b.bin"]  # and no temporary file is left


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def test_file_url_and_missing_file(tmp_path) -> None:
    storage = open_storage(f"file://{tmp_path}")
    assert isinstance(storage, LocalStorage)
    with pytest.raises(StorageError, match="no such file: .*missing.tar"):
        storage.open_read("missing.tar")


def test_unsupported_scheme() -> None:
    with pytest.raises(StorageError, match="unsupported storage URL 'gs://bucket/x'"):
        open_storage("gs://bucket/x")


@pytest.mark.integration
def test_s3_round_trip(bucket: str) -> None:
    storage = open_storage(f"s3://{bucket}/shards")
    storage.write_bytes("train.json", b"{}")
    storage.write_bytes("sub/x.tar", b"x" * 10)
    assert [(i.name, i.size) for i in storage.list()] == [("sub/x.tar", 10), ("train.json", 2)]
    assert storage.read_bytes("train.json") == b"{}"
    assert storage.exists("train.json") and not storage.exists("nope.json")
    assert storage.size("sub/x.tar") == 10
    with pytest.raises(RuntimeError), storage.open_write("train.json") as handle:
        handle.write(b"partial")
        raise RuntimeError("interrupted")
    assert storage.read_bytes("train.json") == b"{}"
    storage.delete("train.json")
    assert not storage.exists("train.json")


@pytest.mark.integration
def test_s3_errors_name_the_url(bucket: str) -> None:
    with pytest.raises(StorageError, match=rf"no such object: s3://{bucket}/missing.tar"):
        open_storage(f"s3://{bucket}").read_bytes("missing.tar")
    with pytest.raises(StorageError, match=r"bucket 'no-such-bucket-x' does not exist"):
        open_storage("s3://no-such-bucket-x/prefix").list()
    with pytest.raises(StorageError, match="has no bucket"):
        open_storage("s3:///prefix")


@pytest.fixture
def authenticating_s3(tmp_path, monkeypatch):
    """A moto server that checks credentials (moto reads INITIAL_NO_AUTH_ACTION_COUNT at import: own process)."""
    import subprocess
    import sys

    code = (
        "import time\nfrom moto.server import ThreadedMotoServer\n"
        "s = ThreadedMotoServer(ip_address='127.0.0.1', port=0, verbose=False); s.start()\n"
        "print(s.get_host_and_port()[1], flush=True)\nwhile True: time.sleep(3600)\n"
    )
    env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "0"}
    process = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env
    )
    try:
        port = int(process.stdout.readline())
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAWRONGWRONGWRONG1")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong-secret-do-not-print")
        monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
        monkeypatch.setenv("AWS_ENDPOINT_URL_S3", f"http://127.0.0.1:{port}")
        monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
        monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
        yield
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.mark.integration
def test_bad_credentials_are_one_line_and_never_printed(authenticating_s3) -> None:
    import subprocess
    import sys

    completed = subprocess.run(
        [sys.executable, "-m", "densenet_ray", "data", "verify", "s3://some-bucket/cifar10"],
        capture_output=True,
        text=True,
    )
    assert completed.returncode == 1
    assert completed.stderr.strip().startswith("error: access denied to s3://some-bucket/cifar10 (InvalidAccessKeyId")
    assert completed.stderr.count("\n") == 1
    output = completed.stdout + completed.stderr
    assert "wrong-secret-do-not-print" not in output and "AKIAWRONGWRONGWRONG1" not in output


def test_s3_urls_carry_an_endpoint_in_rays_query_form() -> None:
    from densenet_ray.data.storage import S3Storage, child_url, endpoint_from_query, split_url

    url = "s3://bucket/runs?endpoint_override=127.0.0.1:9000&scheme=http"
    assert endpoint_from_query(url) == "http://127.0.0.1:9000"
    assert endpoint_from_query("s3://bucket/runs?endpoint_override=minio:9000") == "https://minio:9000"
    assert endpoint_from_query("s3://bucket/runs") is None
    storage = S3Storage(url)
    assert (storage.bucket, storage.prefix, storage.endpoint_url) == ("bucket", "runs", "http://127.0.0.1:9000")
    assert storage.join("x.json") == "s3://bucket/runs/x.json"  # no query in object URLs
    assert child_url(url, "run1") == "s3://bucket/runs/run1?endpoint_override=127.0.0.1:9000&scheme=http"
    assert split_url(child_url(url, "run1")) == (url, "run1")
    with pytest.raises(StorageError, match="unsupported option 'endpoint' in s3://b/p\\?endpoint=x"):
        S3Storage("s3://b/p?endpoint=x")


def test_local_names_stay_below_the_root(tmp_path) -> None:
    (tmp_path / "secret.txt").write_bytes(b"not yours")
    root = tmp_path / "shards"
    (root / "inside").mkdir(parents=True)
    (root / "inside" / "a.tar").write_bytes(b"a")
    (root / "alias.tar").symlink_to(root / "inside" / "a.tar")  # a link within the root is followed
    (root / "linked").symlink_to(tmp_path)  # shards linked from another disk: the machine's user made the link
    storage = open_storage(str(root))
    assert storage.read_bytes("alias.tar") == storage.read_bytes("inside/./a.tar") == b"a"
    for name in ("../secret.txt", "inside/../../secret.txt", str(tmp_path / "secret.txt")):
        with pytest.raises(StorageError) as refused:
            storage.read_bytes(name)
        assert str(refused.value) == f"{name!r} leaves {root}: a storage name is a relative path below it, without '..'"
    assert storage.read_bytes("linked/secret.txt") == b"not yours"
    with pytest.raises(StorageError, match="leaves"):
        storage.write_bytes("../planted.txt", b"x")
    assert not (tmp_path / "planted.txt").exists()


def test_a_manifest_naming_a_shard_outside_its_directory_is_one_line(tmp_path, cifar_shards, capsys) -> None:
    import json
    import shutil

    from densenet_ray.cli import main

    shards = shutil.copytree(cifar_shards, tmp_path / "shards")
    manifest = json.loads((shards / "test.json").read_text())
    outside = manifest["shards"][0]["name"]
    shutil.move(shards / outside, tmp_path / outside)
    manifest["shards"][0]["name"] = f"../{outside}"
    (shards / "test.json").write_text(json.dumps(manifest))
    assert main(["data", "verify", str(shards), "--split", "test"]) == 1
    bad = [line for line in capsys.readouterr().out.splitlines() if line.startswith("bad: ")]
    assert bad == [
        f"bad: {shards}/../{outside}: '../{outside}' leaves {shards}: a storage name is a relative path "
        "below it, without '..'"
    ]
