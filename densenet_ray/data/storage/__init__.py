"""One small interface over a local directory, a ``file://`` URL or ``s3://bucket/prefix``.

``base`` holds the types every backend shares, ``local`` and ``s3`` the backends, ``s3client`` the boto3 client and
endpoint rules, ``s3reader`` the resumable streaming reader. Errors are :class:`StorageError` with a one-line
message naming the URL and the cause, never the credentials.
"""

from __future__ import annotations

from urllib.parse import urlparse

from densenet_ray.data.storage.base import ObjectInfo, Storage, StorageError, child_url, split_url
from densenet_ray.data.storage.local import LocalStorage
from densenet_ray.data.storage.s3 import S3Storage
from densenet_ray.data.storage.s3client import (
    custom_endpoint,
    describe_s3_error,
    endpoint_from_query,
    s3_client,
    without_endpoint,
)

__all__ = [
    "LocalStorage",
    "ObjectInfo",
    "S3Storage",
    "Storage",
    "StorageError",
    "child_url",
    "custom_endpoint",
    "describe_s3_error",
    "endpoint_from_query",
    "open_storage",
    "s3_client",
    "split_url",
    "without_endpoint",
]


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
