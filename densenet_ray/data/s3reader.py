"""A streaming S3 object reader that survives broken connections, registered with webdataset for ``s3://``.

Neither webdataset (it streams a tar with no retry) nor botocore (client retries do not cover body reads) recovers
from a connection that breaks in the middle of an object. :class:`ResumableS3Reader` streams one GetObject; when
a read fails mid-body it asks again with ``Range: bytes=<received>-`` from the bytes actually delivered, pinned to
the first response's ETag with ``If-Match`` so two versions of an object are never spliced together. Resumes are
bounded and spaced by jittered exponential backoff. Exhausted resumes, 403, 404 or a changed ETag raise
:class:`~densenet_ray.data.storage.StorageError` naming the URL and the cause.
"""

from __future__ import annotations

import contextlib
import http.client
import io
import logging
import random
import time
from typing import Any
from urllib.parse import urlparse

from densenet_ray.data.storage import StorageError, describe_s3_error, s3_client

log = logging.getLogger(__name__)

DEFAULT_MAX_RESUMES = 10
DEFAULT_BUFFER = 1 << 20
READ_CHUNK = 64 * 1024


def _transient_errors() -> tuple[type[BaseException], ...]:
    from botocore.exceptions import (
        ConnectionClosedError,
        EndpointConnectionError,
        IncompleteReadError,
        ReadTimeoutError,
        ResponseStreamingError,
    )
    from urllib3.exceptions import HTTPError as Urllib3HTTPError

    return (
        ResponseStreamingError,
        IncompleteReadError,
        ReadTimeoutError,
        ConnectionClosedError,
        EndpointConnectionError,
        Urllib3HTTPError,
        http.client.IncompleteRead,
        OSError,
    )


class ResumableS3Reader(io.RawIOBase):
    """Raw binary stream of one S3 object that resumes with Range + If-Match after mid-body failures.

    Attributes:
        resumes: how many times the stream was resumed (for metrics and tests).
        etag: the ETag of the object version being read.
        length: the object's size in bytes.
    """

    def __init__(
        self,
        url: str,
        endpoint_url: str | None = None,
        max_resumes: int = DEFAULT_MAX_RESUMES,
        backoff: float = 0.1,
        max_backoff: float = 5.0,
    ) -> None:
        super().__init__()
        parsed = urlparse(url)
        self.url, self.bucket, self.key = url, parsed.netloc, parsed.path.lstrip("/")
        self.endpoint_url = endpoint_url
        self.max_resumes, self.backoff, self.max_backoff = max_resumes, backoff, max_backoff
        self.resumes = 0
        self.position = 0
        self._transient = _transient_errors()
        response = self._get()
        self.etag: str = response["ETag"]
        self.length: int = int(response["ContentLength"])
        self._body = response["Body"]

    def _get(self, **extra: Any) -> dict:
        from botocore.exceptions import BotoCoreError, ClientError

        attempts = 0
        while True:
            try:
                return s3_client(self.endpoint_url).get_object(Bucket=self.bucket, Key=self.key, **extra)
            except ClientError as error:
                raise StorageError(describe_s3_error(error, self.url)) from None
            except (BotoCoreError, OSError) as error:
                # botocore already retried the request itself; a few more spaced tries cover a short outage.
                attempts += 1
                if attempts > self.max_resumes:
                    raise StorageError(describe_s3_error(error, self.url)) from None
                self._sleep(attempts)

    def _sleep(self, attempt: int) -> None:
        time.sleep(random.uniform(0, min(self.max_backoff, self.backoff * 2 ** (attempt - 1))))

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self.position >= self.length:
            return 0
        view = memoryview(buffer).cast("B")
        while True:
            try:
                # Small reads: a reset loses what the failing read had received, so keep each one short.
                data = self._body.read(min(len(view), READ_CHUNK))
                if not data:
                    raise http.client.IncompleteRead(b"", self.length - self.position)
            except self._transient as error:
                self._resume(error)
                continue
            view[: len(data)] = data
            self.position += len(data)
            return len(data)

    def _resume(self, cause: BaseException) -> None:
        self.resumes += 1
        if self.resumes > self.max_resumes:
            raise StorageError(
                f"gave up reading {self.url} after {self.max_resumes} resumes at byte {self.position} of "
                f"{self.length} (last error: {type(cause).__name__})"
            ) from None
        log.debug("resuming %s at byte %d after %s", self.url, self.position, type(cause).__name__)
        with contextlib.suppress(Exception):  # the connection is already broken; closing it may fail too
            self._body.close()
        self._sleep(self.resumes)
        response = self._get(Range=f"bytes={self.position}-", IfMatch=self.etag)
        content_range = response.get("ContentRange", "")
        if not content_range.startswith(f"bytes {self.position}-"):
            raise StorageError(f"{self.url}: the server ignored the Range request (got {content_range!r})")
        self._body = response["Body"]

    def close(self) -> None:
        body = getattr(self, "_body", None)
        if body is not None:
            with contextlib.suppress(Exception):
                body.close()
        super().close()


def open_s3(
    url: str, endpoint_url: str | None = None, max_resumes: int = DEFAULT_MAX_RESUMES, buffer_size: int = DEFAULT_BUFFER
) -> io.BufferedReader:
    """A buffered, resumable binary stream of the S3 object at ``url``."""
    return io.BufferedReader(ResumableS3Reader(url, endpoint_url, max_resumes), buffer_size)


def _gopen_s3(url: str, mode: str = "rb", bufsize: int = 8192, **_: Any) -> io.BufferedReader:
    if "r" not in mode:
        raise ValueError(f"s3:// URLs are read-only in webdataset pipelines (mode {mode!r})")
    return open_s3(url)


def register_with_webdataset() -> None:
    """Make webdataset open ``s3://`` URLs with the resumable reader (inherited by forked loader workers)."""
    import importlib

    # ``webdataset.gopen`` the attribute is the function; the dispatch table lives in the module of that name.
    importlib.import_module("webdataset.gopen").gopen_schemes["s3"] = _gopen_s3
