"""Class names of a checkpoint from someone else: its stored data URL names an S3 endpoint of its own
(``?endpoint_override=``); the names are read through this machine's endpoint settings, and the endpoint the file
names gets no request (the signed request would have gone to whoever wrote the file)."""

from __future__ import annotations

import http.server
from collections.abc import Iterator
from pathlib import Path

import pytest

from densenet_ray.data.storage import open_storage
from densenet_ray.train.checkpoint.trained import class_names
from densenet_ray.train.config.options import TrainConfig
from tests.local_http import serving


@pytest.fixture
def trap() -> Iterator[tuple[str, list[str]]]:
    """An HTTP server that records every request it gets: ``(host:port, requests)``."""
    seen: list[str] = []

    class Recorder(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the handler's protocol names it
            seen.append(f"{self.command} {self.path} {self.headers.get('Authorization', '')[:16]}")
            self.send_error(404)

        do_HEAD = do_PUT = do_GET  # noqa: N815

        def log_message(self, *args: object) -> None:
            pass

    with serving(Recorder) as server:
        yield f"127.0.0.1:{server.server_address[1]}", seen


def test_the_endpoint_named_in_a_checkpoint_gets_no_request(
    bucket: str, cifar_shards: str, trap: tuple[str, list[str]]
) -> None:
    endpoint, seen = trap
    manifest = Path(cifar_shards, "test.json").read_bytes()
    open_storage(f"s3://{bucket}/cifar").write_bytes("test.json", manifest)  # the user's own storage (moto)
    stored = TrainConfig(data=f"s3://{bucket}/cifar?endpoint_override={endpoint}&scheme=http", eval_split="test")
    names = class_names(stored, "cifar10")
    assert seen == []
    assert names[:3] == ["airplane", "automobile", "bird"] and len(names) == 10
