"""``s3://bucket/prefix`` as :class:`Storage`: listing, heads, the resumable reader, atomic uploads."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from typing import IO, Any
from urllib.parse import urlparse

from densenet_ray.data.storage.base import ObjectInfo, Storage, StorageError
from densenet_ray.data.storage.s3client import describe_s3_error, endpoint_from_query, s3_client
from densenet_ray.data.storage.s3reader import open_s3


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

    def _unless_missing(self, name: str, call: Any) -> Any:
        """``call()``, or None when the object does not exist; other failures become :class:`StorageError`."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return call()
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise self._fail(error, name) from None
        except BotoCoreError as error:
            raise self._fail(error, name) from None

    def _head(self, name: str) -> dict | None:
        return self._unless_missing(name, lambda: self.client.head_object(Bucket=self.bucket, Key=self.key(name)))

    def exists(self, name: str) -> bool:
        return self._head(name) is not None

    def size(self, name: str) -> int:
        head = self._head(name)
        if head is None:
            raise StorageError(f"no such object: {self.join(name)}")
        return int(head["ContentLength"])

    def open_read(self, name: str) -> IO[bytes]:
        return open_s3(self.join(name), endpoint_url=self.endpoint_url)

    def open_range(self, name: str, start: int, stop: int) -> IO[bytes]:
        return open_s3(self.join(name), endpoint_url=self.endpoint_url, start=start, stop=stop)

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

    def read_versioned(self, name: str) -> tuple[bytes, str] | None:
        def read() -> tuple[bytes, str]:
            response = self.client.get_object(Bucket=self.bucket, Key=self.key(name))
            return response["Body"].read(), str(response["ETag"])

        return self._unless_missing(name, read)

    def write_if(self, name: str, data: bytes, version: str | None) -> bool:
        # S3 conditional writes: If-None-Match: * creates only, If-Match: ETag replaces only that version
        # (https://docs.aws.amazon.com/AmazonS3/latest/userguide/conditional-writes.html).
        from botocore.exceptions import BotoCoreError, ClientError

        condition = {"IfNoneMatch": "*"} if version is None else {"IfMatch": version}
        try:
            self.client.put_object(Bucket=self.bucket, Key=self.key(name), Body=data, **condition)
            return True
        except ClientError as error:
            code = str(error.response.get("Error", {}).get("Code", ""))
            if code in ("PreconditionFailed", "ConditionalRequestConflict", "412", "409", "NoSuchKey"):
                return False
            raise self._fail(error, name) from None
        except BotoCoreError as error:
            raise self._fail(error, name) from None

    def delete(self, name: str) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.delete_object(Bucket=self.bucket, Key=self.key(name))
        except (ClientError, BotoCoreError) as error:
            raise self._fail(error, name) from None
