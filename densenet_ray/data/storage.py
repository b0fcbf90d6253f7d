"""One small interface over a local directory, a ``file://`` URL or ``s3://bucket/prefix``.

S3 goes through boto3 with the standard configuration only: the endpoint from an explicit option or
``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL``, credentials from the standard chain, path-style addressing when a
custom endpoint is set. One client per process, created lazily (so never inherited across a fork). Errors become
:class:`StorageError` with a one-line message naming the URL and the cause, never the credentials.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any
from urllib.parse import parse_qs, urlparse


class StorageError(OSError):
    """A storage operation failed for a reason the user can act on; the message is one line."""


@dataclass(frozen=True)
class ObjectInfo:
    """An object (file) under a storage root: its name relative to the root and its size in bytes."""

    name: str
    size: int


def custom_endpoint(explicit: str | None = None) -> str | None:
    """The S3 endpoint in force: the explicit one, else ``AWS_ENDPOINT_URL_S3``, else ``AWS_ENDPOINT_URL``."""
    return explicit or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None


_CLIENTS: dict[tuple[int, str | None], Any] = {}
_CLIENTS_LOCK = threading.Lock()


def s3_client(endpoint_url: str | None = None) -> Any:
    """This process's boto3 S3 client for ``endpoint_url`` (created on first use, re-created after a fork)."""
    endpoint = custom_endpoint(endpoint_url)
    key = (os.getpid(), endpoint)
    with _CLIENTS_LOCK:
        client = _CLIENTS.get(key)
        if client is None:
            import boto3
            from botocore.config import Config

            config = Config(
                s3={"addressing_style": "path"} if endpoint else {},
                retries={"max_attempts": 5, "mode": "standard"},
                connect_timeout=10,
                read_timeout=30,
                # Non-AWS servers often reject or mangle the newer default streaming checksums.
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
            )
            client = boto3.session.Session().client("s3", endpoint_url=endpoint, config=config)
            _CLIENTS[key] = client
        return client


def describe_s3_error(error: Exception, url: str) -> str:
    """A one-line, credential-free explanation of a boto3/botocore error for ``url``."""
    from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

    if isinstance(error, NoCredentialsError):
        return f"no AWS credentials found for {url} (set them through the standard AWS chain)"
    if isinstance(error, EndpointConnectionError):
        return f"cannot reach the S3 endpoint for {url} ({custom_endpoint() or 'AWS default'})"
    if isinstance(error, ClientError):
        code = str(error.response.get("Error", {}).get("Code", ""))
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code == "NoSuchBucket":
            return f"bucket {urlparse(url).netloc!r} does not exist ({url})"
        if code in ("NoSuchKey", "404", "NotFound"):
            return f"no such object: {url}"
        if code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403") or status == 403:
            return f"access denied to {url} ({code or 'HTTP 403'}; check the AWS credentials and bucket policy)"
        if code in ("PreconditionFailed", "412"):
            return f"{url} changed while it was being read (ETag no longer matches)"
        return f"S3 error {code or status} for {url}"
    return f"{type(error).__name__} for {url}: {error}"


class Storage(ABC):
    """Objects under a root URL. Names are relative, ``/``-separated."""

    url: str

    def join(self, name: str) -> str:
        """The full URL of ``name``."""
        return f"{self.url.rstrip('/')}/{name}" if name else self.url

    @abstractmethod
    def list(self, prefix: str = "") -> list[ObjectInfo]:
        """Every object under the root whose name starts with ``prefix``, sorted by name."""
        ...

    @abstractmethod
    def exists(self, name: str) -> bool: ...

    @abstractmethod
    def size(self, name: str) -> int: ...

    @abstractmethod
    def open_read(self, name: str) -> IO[bytes]:
        """A binary stream of the object (S3: the resumable reader)."""
        ...

    def read_bytes(self, name: str) -> bytes:
        with self.open_read(name) as stream:
            return stream.read()

    @abstractmethod
    def open_write(self, name: str) -> contextlib.AbstractContextManager[IO[bytes]]:
        """Write ``name`` atomically: readers see the old object or the complete new one, never a partial one."""

    def write_bytes(self, name: str, data: bytes) -> None:
        with self.open_write(name) as stream:
            stream.write(data)

    @abstractmethod
    def delete(self, name: str) -> None: ...


class LocalStorage(Storage):
    """A directory on the local file system."""

    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(os.path.expanduser(root))
        self.url = self.root

    def _path(self, name: str) -> str:
        return os.path.join(self.root, *name.split("/")) if name else self.root

    def list(self, prefix: str = "") -> list[ObjectInfo]:
        if not os.path.isdir(self.root):
            return []
        found = []
        for directory, _, files in os.walk(self.root):
            for file in files:
                full = os.path.join(directory, file)
                name = os.path.relpath(full, self.root).replace(os.sep, "/")
                if name.startswith(prefix) and ".tmp-" not in file:
                    found.append(ObjectInfo(name, os.path.getsize(full)))
        return sorted(found, key=lambda info: info.name)

    def exists(self, name: str) -> bool:
        return os.path.isfile(self._path(name))

    def size(self, name: str) -> int:
        try:
            return os.path.getsize(self._path(name))
        except FileNotFoundError:
            raise StorageError(f"no such file: {self._path(name)}") from None

    def open_read(self, name: str) -> IO[bytes]:
        try:
            return open(self._path(name), "rb")
        except FileNotFoundError:
            raise StorageError(f"no such file: {self._path(name)}") from None
        except PermissionError:
            raise StorageError(f"permission denied reading {self._path(name)}") from None

    @contextlib.contextmanager
    def open_write(self, name: str) -> Iterator[IO[bytes]]:
        path = self._path(name)
        directory = os.path.dirname(path)
        try:
            os.makedirs(directory, exist_ok=True)
            handle = tempfile.NamedTemporaryFile(  # noqa: SIM115 - closed below, then renamed into place
                "wb", dir=directory, prefix=os.path.basename(path) + ".tmp-", delete=False
            )
        except OSError as error:
            raise StorageError(f"cannot write to {directory}: {error.strerror or error}") from None
        try:
            with handle:
                yield handle
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(handle.name, 0o666 & ~_umask())  # mkstemp creates 0600; give the file the usual mode
            os.replace(handle.name, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(handle.name)
            raise

    def delete(self, name: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._path(name))


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


class S3Storage(Storage):
    """Objects under ``s3://bucket/prefix``."""

    def __init__(self, url: str, endpoint_url: str | None = None) -> None:
        parsed = urlparse(url)
        if not parsed.netloc:
            raise StorageError(f"S3 URL {url!r} has no bucket; expected s3://bucket/prefix")
        self.bucket = parsed.netloc
        self.prefix = parsed.path.strip("/")
        self.endpoint_url = endpoint_url or endpoint_from_query(url)
        self.url = f"s3://{self.bucket}/{self.prefix}".rstrip("/")

    @property
    def client(self) -> Any:
        return s3_client(self.endpoint_url)

    def key(self, name: str) -> str:
        """The S3 key of ``name``."""
        return f"{self.prefix}/{name}".strip("/") if self.prefix else name

    def _fail(self, error: Exception, name: str) -> StorageError:
        return StorageError(describe_s3_error(error, self.join(name)))

    def list(self, prefix: str = "") -> list[ObjectInfo]:
        from botocore.exceptions import BotoCoreError, ClientError

        root = f"{self.prefix}/" if self.prefix else ""
        found = []
        try:
            paginator = self.client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=root + prefix):
                for item in page.get("Contents", []):
                    found.append(ObjectInfo(item["Key"][len(root) :], int(item["Size"])))
        except (ClientError, BotoCoreError) as error:
            raise self._fail(error, prefix) from None
        return sorted(found, key=lambda info: info.name)

    def _head(self, name: str) -> dict | None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return self.client.head_object(Bucket=self.bucket, Key=self.key(name))
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise self._fail(error, name) from None
        except BotoCoreError as error:
            raise self._fail(error, name) from None

    def exists(self, name: str) -> bool:
        return self._head(name) is not None

    def size(self, name: str) -> int:
        head = self._head(name)
        if head is None:
            raise StorageError(f"no such object: {self.join(name)}")
        return int(head["ContentLength"])

    def open_read(self, name: str) -> IO[bytes]:
        from densenet_ray.data.s3reader import open_s3

        return open_s3(self.join(name), endpoint_url=self.endpoint_url)

    @contextlib.contextmanager
    def open_write(self, name: str) -> Iterator[IO[bytes]]:
        # S3 makes an object visible only when its upload completes, so staging in a local temporary file and
        # uploading on success is atomic; an exception leaves the old object (or none) in place.
        from botocore.exceptions import BotoCoreError, ClientError

        with tempfile.TemporaryFile() as staging:
            yield staging
            staging.flush()
            staging.seek(0)
            try:
                self.client.upload_fileobj(staging, self.bucket, self.key(name))
            except (ClientError, BotoCoreError) as error:
                raise self._fail(error, name) from None

    def delete(self, name: str) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.delete_object(Bucket=self.bucket, Key=self.key(name))
        except (ClientError, BotoCoreError) as error:
            raise self._fail(error, name) from None


def open_storage(url: str, endpoint_url: str | None = None) -> Storage:
    """The storage for a local path, ``file://`` URL or ``s3://bucket/prefix``."""
    parsed = urlparse(url)
    if parsed.scheme == "s3":
        return S3Storage(url, endpoint_url)
    if parsed.scheme == "file":
        return LocalStorage(parsed.path)
    if parsed.scheme and len(parsed.scheme) > 1:  # one letter: a Windows drive, not a scheme
        raise StorageError(f"unsupported storage URL {url!r}; use a local path, file:// or s3://bucket/prefix")
    return LocalStorage(url)


def endpoint_from_query(url: str) -> str | None:
    """The endpoint in an S3 URL's query, in the form Ray and pyarrow take: ``s3://bucket/prefix?endpoint_override=
    host:port&scheme=http`` gives ``http://host:port``; None without ``endpoint_override``."""
    query = parse_qs(urlparse(url).query)
    unknown = sorted(set(query) - {"endpoint_override", "scheme", "region"})
    if unknown:
        raise StorageError(
            f"unsupported option {unknown[0]!r} in {url}; S3 URLs take endpoint_override, scheme, region"
        )
    if "endpoint_override" not in query:
        return None
    endpoint = query["endpoint_override"][0]
    return endpoint if "://" in endpoint else f"{query.get('scheme', ['https'])[0]}://{endpoint}"


def child_url(url: str, name: str) -> str:
    """``url`` joined with ``name``, keeping a query: ``s3://b/p?q`` and ``run`` give ``s3://b/p/run?q``."""
    base, question, query = url.partition("?")
    return f"{base.rstrip('/')}/{name}{question}{query}"


def split_url(url: str) -> tuple[str, str]:
    """``(parent URL, last name)`` of an object URL: ``s3://b/p/x.json`` -> ``("s3://b/p", "x.json")``; a query
    stays with the parent."""
    base, question, query = url.partition("?")
    head, _, tail = base.rstrip("/").rpartition("/")
    return head + question + query, tail
