"""Downloading an official dataset file: cached, checksum-verified, clear errors (served from 127.0.0.1)."""

from __future__ import annotations

import functools
import http.server

import pytest

from densenet_ray.data.building import sources
from tests.data.sources_fixtures import write_cifar10_tarball
from tests.local_http import serving


@pytest.fixture
def served(tmp_path, fixture_tar):
    root = tmp_path / "www"
    root.mkdir()
    write_cifar10_tarball(fixture_tar, root / "cifar-10-python.tar.gz")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    with serving(handler) as server:
        yield f"http://127.0.0.1:{server.server_address[1]}", root


def test_download_verifies_and_caches(served, tmp_path, monkeypatch) -> None:
    url, root = served
    md5 = sources._md5(str(root / "cifar-10-python.tar.gz"))
    monkeypatch.setitem(sources.DOWNLOADS, "cifar10", [(f"{url}/cifar-10-python.tar.gz", md5)])
    cache = tmp_path / "cache"
    source = sources.open_source("cifar10", None, "test", str(cache))
    assert len(source) == 100 and source.classes[0] == "airplane"
    (root / "cifar-10-python.tar.gz").unlink()  # a second call uses the cache
    assert len(sources.open_source("cifar10", None, "train", str(cache))) == 400


def test_checksum_mismatch_is_a_clear_error(served, tmp_path, monkeypatch) -> None:
    url, _ = served
    monkeypatch.setitem(sources.DOWNLOADS, "cifar10", [(f"{url}/cifar-10-python.tar.gz", "0" * 32)])
    with pytest.raises(ValueError, match=r"cifar-10-python.tar.gz has MD5 [0-9a-f]{32}, not the published 0{32}"):
        sources.open_source("cifar10", None, "train", str(tmp_path / "cache"))
    assert not list((tmp_path / "cache").iterdir())  # nothing half-downloaded is left


def test_unreachable_download_suggests_source(tmp_path, monkeypatch) -> None:
    monkeypatch.setitem(sources.DOWNLOADS, "cifar10", [("http://127.0.0.1:9/cifar-10-python.tar.gz", "0" * 32)])
    with pytest.raises(ValueError, match="cannot download .*; pass --source with a local copy"):
        sources.open_source("cifar10", None, "train", str(tmp_path / "cache"))
