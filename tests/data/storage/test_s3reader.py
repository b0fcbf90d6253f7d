"""The resumable S3 reader through a proxy that resets connections mid-object."""

from __future__ import annotations

import hashlib

import pytest

from densenet_ray.data.storage import StorageError, open_storage, s3_client
from densenet_ray.data.storage.s3reader import open_s3
from tests.data.faultproxy import CutProxy

pytestmark = pytest.mark.integration


@pytest.fixture
def shard_bytes(fixture_tar: str) -> bytes:
    with open(fixture_tar, "rb") as handle:
        return handle.read()  # 778 KB of real CIFAR-10 JPEGs in a tar


@pytest.fixture
def proxy(moto_server: str):
    proxies: list[CutProxy] = []

    def make(cut_after: int | None, max_cuts: int = 1_000_000) -> CutProxy:
        proxies.append(CutProxy(int(moto_server.rsplit(":", 1)[1]), cut_after, max_cuts))
        return proxies[-1]

    yield make
    for item in proxies:
        item.stop()


def test_resets_mid_object_are_resumed_exactly(bucket: str, shard_bytes: bytes, proxy) -> None:
    s3_client().put_object(Bucket=bucket, Key="a.tar", Body=shard_bytes)
    cutter = proxy(cut_after=200_000)
    with open_s3(f"s3://{bucket}/a.tar", endpoint_url=cutter.url, buffer_size=64 * 1024) as stream:
        data = stream.read()
        resumes = stream.raw.resumes
    assert hashlib.sha256(data).digest() == hashlib.sha256(shard_bytes).digest()
    assert cutter.cuts >= 3 and resumes == cutter.cuts


def test_object_replaced_mid_read_is_an_error(bucket: str, shard_bytes: bytes, proxy) -> None:
    s3_client().put_object(Bucket=bucket, Key="a.tar", Body=shard_bytes)
    cutter = proxy(cut_after=300_000)
    url = f"s3://{bucket}/a.tar"
    # A small read-ahead keeps the reader on its first connection when the object is replaced.
    with open_s3(url, endpoint_url=cutter.url, buffer_size=64 * 1024, readahead=64 * 1024) as stream:
        stream.read(100_000)
        s3_client().put_object(Bucket=bucket, Key="a.tar", Body=shard_bytes[::-1])
        with pytest.raises(StorageError, match=rf"{url} changed while it was being read"):
            stream.read()


def test_retries_exhausted_is_an_error(bucket: str, shard_bytes: bytes, proxy) -> None:
    s3_client().put_object(Bucket=bucket, Key="a.tar", Body=shard_bytes)
    cutter = proxy(cut_after=50_000)
    url = f"s3://{bucket}/a.tar"
    with (
        pytest.raises(StorageError, match=rf"gave up reading {url} after 2 resumes at byte \d+ of {len(shard_bytes)}"),
        open_s3(url, endpoint_url=cutter.url, max_resumes=2, buffer_size=16 * 1024) as stream,
    ):
        stream.read()


def test_missing_key_and_bucket(bucket: str) -> None:
    with pytest.raises(StorageError, match=rf"no such object: s3://{bucket}/nope.tar"):
        open_s3(f"s3://{bucket}/nope.tar")
    with pytest.raises(StorageError, match="bucket 'missing-bucket-q' does not exist"):
        open_s3("s3://missing-bucket-q/x.tar")


def test_storage_reads_s3_through_the_resumable_reader(bucket: str, shard_bytes: bytes) -> None:
    storage = open_storage(f"s3://{bucket}/p")
    storage.write_bytes("x.tar", shard_bytes)
    with storage.open_read("x.tar") as stream:
        assert stream.read() == shard_bytes


def test_a_large_object_may_resume_many_times_while_it_progresses(bucket: str, shard_bytes: bytes, proxy) -> None:
    big = shard_bytes * 8  # 6.2 MB
    s3_client().put_object(Bucket=bucket, Key="big.tar", Body=big)
    cutter = proxy(cut_after=1_000_000)
    with open_s3(f"s3://{bucket}/big.tar", endpoint_url=cutter.url, max_resumes=2, buffer_size=64 * 1024) as stream:
        assert stream.read() == big
        assert stream.raw.resumes >= 4  # more than max_resumes: each connection delivered over 64 KB
