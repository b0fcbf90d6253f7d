"""A streaming S3 object reader that survives broken connections.

Neither webdataset (it streams a tar with no retry) nor botocore (client retries do not cover body reads) recovers
from a connection that breaks in the middle of an object. :class:`ResumableS3Reader` streams one GetObject; when
a read fails mid-body it asks again with ``Range: bytes=<received>-`` from the bytes actually delivered, pinned to
the first response's ETag with ``If-Match`` so two versions of an object are never spliced together. Resumes are
spaced by jittered exponential backoff and bounded: after ``max_resumes`` consecutive connections that each broke
before delivering one 64 KB read the reader gives up (a large object on a flaky link may resume many times while it
progresses). A reader of a byte range (a span of samples, located by the shard index) asks for that range and
resumes within it. Exhausted resumes, 403, 404 or a changed ETag raise
:class:`~densenet_ray.data.storage.StorageError` naming the URL and the cause.
"""

from __future__ import annotations

import collections
import contextlib
import http.client
import io
import logging
import random
import threading
import time
from typing import IO, Any
from urllib.parse import urlparse

from densenet_ray.data.storage.base import StorageError
from densenet_ray.data.storage.s3client import describe_s3_error, s3_client

log = logging.getLogger(__name__)

DEFAULT_MAX_RESUMES = 10
DEFAULT_BUFFER = 1 << 20
READ_CHUNK = 64 * 1024
DEFAULT_READAHEAD = 8 << 20
HEALTHY_CONNECTION = READ_CHUNK  # a reset discards unread socket buffers, so even good links deliver little


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
        resumes: how many times the stream was resumed in all (for metrics and tests).
        readahead: bytes a background thread may pull off the connection ahead of the consumer.
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
        readahead: int = DEFAULT_READAHEAD,
        start: int = 0,
        stop: int | None = None,
    ) -> None:
        super().__init__()
        self.start, self._last = start, "" if stop is None else str(stop - 1)  # HTTP ranges are inclusive
        parsed = urlparse(url)
        self.url, self.bucket, self.key = url, parsed.netloc, parsed.path.lstrip("/")
        self.endpoint_url = endpoint_url
        self.max_resumes, self.backoff, self.max_backoff = max_resumes, backoff, max_backoff
        self.resumes = 0
        self.position = 0
        self._failing = 0  # consecutive resumes after connections that delivered less than HEALTHY_CONNECTION
        self._resumed_at = 0
        self._transient = _transient_errors()
        response = self._get(Range=f"bytes={start}-{self._last}") if start or stop is not None else self._get()
        self.etag: str = response["ETag"]
        self.length: int = int(response["ContentLength"])
        self._body = response["Body"]
        self.readahead = readahead
        self._received = 0  # bytes taken off the connection (position counts bytes handed to the consumer)
        self._chunks: collections.deque[bytes] = collections.deque()
        self._buffered = 0
        self._error: BaseException | None = None
        self._finished = self._closed = False
        self._ready = threading.Condition()
        self._thread = threading.Thread(target=self._drain, name=f"s3-read {self.key}", daemon=True)
        self._thread.start()

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
        view = memoryview(buffer).cast("B")
        with self._ready:
            while not self._chunks and self._error is None and not self._finished:
                self._ready.wait()
            if not self._chunks:
                if self._error is not None:
                    raise self._error
                return 0  # end of object
            chunk = self._chunks[0]
            count = min(len(view), len(chunk))
            view[:count] = chunk[:count]
            if count == len(chunk):
                self._chunks.popleft()
            else:
                self._chunks[0] = chunk[count:]
            self._buffered -= count
            self.position += count
            self._ready.notify_all()
            return count

    def _drain(self) -> None:
        """Background thread: move bytes from the connection into memory, resuming the connection as needed.

        Draining continuously matters: a connection reset discards whatever is still unread in the socket, so a
        reader that only pulls as fast as its (decoding) consumer loses most of what the server already sent.
        """
        try:
            while self._received < self.length and not self._closed:
                with self._ready:
                    while self._buffered >= self.readahead and not self._closed:
                        self._ready.wait()
                if self._closed:
                    return
                try:
                    data = self._body.read(READ_CHUNK)
                    if not data:
                        raise http.client.IncompleteRead(b"", self.length - self._received)
                except self._transient as error:
                    self._resume(error)
                    continue
                self._received += len(data)
                with self._ready:
                    self._chunks.append(data)
                    self._buffered += len(data)
                    self._ready.notify_all()
        except BaseException as error:  # handed to the consumer, which raises it where it reads
            with self._ready:
                self._error = error
                self._ready.notify_all()
            return
        with self._ready:
            self._finished = True
            self._ready.notify_all()

    def _resume(self, cause: BaseException) -> None:
        self.resumes += 1
        # Large objects on a flaky link may need many resumes; only connections that die before delivering
        # HEALTHY_CONNECTION bytes count towards the limit, so a stalled read gives up and a slow one goes on.
        if self._received - self._resumed_at >= HEALTHY_CONNECTION:
            self._failing = 0
        self._failing += 1
        self._resumed_at = self._received
        if self._failing > self.max_resumes:
            raise StorageError(
                f"gave up reading {self.url} after {self.max_resumes} resumes at byte {self._received} of "
                f"{self.length} (last error: {type(cause).__name__})"
            ) from None
        log.debug("resuming %s at byte %d after %s", self.url, self._received, type(cause).__name__)
        with contextlib.suppress(Exception):  # the connection is already broken; closing it may fail too
            self._body.close()
        self._sleep(self._failing)  # a resume after a healthy connection waits at most `backoff` seconds
        resume_at = self.start + self._received
        response = self._get(Range=f"bytes={resume_at}-{self._last}", IfMatch=self.etag)
        content_range = response.get("ContentRange", "")
        if not content_range.startswith(f"bytes {resume_at}-"):
            raise StorageError(f"{self.url}: the server ignored the Range request (got {content_range!r})")
        self._body = response["Body"]

    def close(self) -> None:
        with self._ready:
            self._closed = True
            self._ready.notify_all()
        thread = getattr(self, "_thread", None)
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=30)
        body = getattr(self, "_body", None)
        if body is not None:
            with contextlib.suppress(Exception):
                body.close()
        super().close()


def open_s3(
    url: str,
    endpoint_url: str | None = None,
    max_resumes: int = DEFAULT_MAX_RESUMES,
    buffer_size: int = DEFAULT_BUFFER,
    readahead: int = DEFAULT_READAHEAD,
    start: int = 0,
    stop: int | None = None,
) -> IO[bytes]:
    """A buffered, resumable binary stream of the S3 object at ``url`` (of its bytes ``[start, stop)`` when given:
    one Range request, resumed within the range); close it (or use ``with``) when done."""
    if stop is not None and stop <= start:
        return io.BytesIO(b"")  # S3 answers an empty range with 416
    reader = ResumableS3Reader(url, endpoint_url, max_resumes, readahead=readahead, start=start, stop=stop)
    return io.BufferedReader(reader, buffer_size)
