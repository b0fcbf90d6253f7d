"""This process's boto3 S3 client and the standard endpoint rules, with credential-free error lines.

The endpoint comes from an explicit option, ``AWS_ENDPOINT_URL_S3`` or ``AWS_ENDPOINT_URL``; credentials from the
standard chain; path-style addressing when a custom endpoint is set. One client per process, created lazily (so
never inherited across a fork).
"""

from __future__ import annotations

import os
import threading
from typing import Any, Final
from urllib.parse import parse_qs, urlparse

from densenet_ray.data.storage.base import StorageError


def custom_endpoint(explicit: str | None = None) -> str | None:
    """The S3 endpoint in force: the explicit one, else ``AWS_ENDPOINT_URL_S3``, else ``AWS_ENDPOINT_URL``."""
    return explicit or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None


# Newer AWS SDKs (boto3 since 1.36, the C++ SDK inside pyarrow that Ray's storage uses) send a streaming checksum
# with every upload by default, framed as aws-chunked. Many S3-compatible servers (s3rver, older Ceph and others)
# store that framing as the object, so every file Ray wrote there read back corrupt. "when_required" sends and
# checks checksums only where an operation requires them, as the SDKs did before; on AWS as elsewhere.
CHECKSUMS: Final = "when_required"


def checksum_environment() -> dict[str, str]:
    """:data:`CHECKSUMS` as the AWS SDKs' environment variables, for the S3 clients this process does not build
    itself: pyarrow's, in the driver, Ray Train's controller and every worker."""
    return {"AWS_REQUEST_CHECKSUM_CALCULATION": CHECKSUMS, "AWS_RESPONSE_CHECKSUM_VALIDATION": CHECKSUMS}


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
                request_checksum_calculation=CHECKSUMS,
                response_checksum_validation=CHECKSUMS,
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


def without_endpoint(url: str) -> str:
    """``url`` to reach through this machine's own endpoint settings only: an ``s3://`` URL without its query
    (``endpoint_override``, ``scheme``, ``region``), any other URL as it is. For URLs read from a file someone else
    may have written (a checkpoint's data), which must not choose where this machine's signed requests go."""
    return url.split("?", 1)[0] if url.startswith("s3://") else url
