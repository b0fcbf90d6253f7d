"""Ray Train's view of a run's storage root: ``(storage_path, storage_filesystem)``."""

from __future__ import annotations

import os
from typing import Any

from densenet_ray.data.storage import S3Storage, custom_endpoint


def ray_storage(root: str) -> tuple[str, Any]:
    """Ray's ``(storage_path, storage_filesystem)`` for a storage root.

    An ``s3://`` root with a custom endpoint (in the URL's query, or ``AWS_ENDPOINT_URL_S3``/``AWS_ENDPOINT_URL`` as
    for the data) gets a pyarrow ``S3FileSystem`` and the prefix-stripped path Ray wants with it (Ray docs,
    https://docs.ray.io/en/latest/train/user-guides/persistent-storage.html).
    The filesystem holds no credentials: every process takes them from the standard AWS chain.
    """
    from urllib.parse import parse_qs, urlparse

    if not root.startswith("s3://"):
        return root, None
    storage = S3Storage(root)
    endpoint = custom_endpoint(storage.endpoint_url)
    if not endpoint:
        return storage.url, None
    import pyarrow.fs

    parsed = urlparse(endpoint)
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    region = parse_qs(urlparse(root).query).get("region", [region])[0]
    filesystem = pyarrow.fs.S3FileSystem(
        endpoint_override=parsed.netloc, scheme=parsed.scheme or "https", region=region
    )
    return f"{storage.bucket}/{storage.prefix}".rstrip("/"), filesystem
