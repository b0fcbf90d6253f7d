"""Where things live by default, and how a user's path or URL becomes an absolute location. The one owner of both.

Runs and sweeps default to ``~/densenet-ray/{runs,sweeps}``; built datasets and downloads to
``~/.cache/densenet-ray`` (with the compiled-graph
cache in its ``inductor/``). Paths are made absolute once, on the driver, so workers on other machines or in other
working directories see the same location.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from densenet_ray.errors import UserError

HOME_ROOT = os.path.join(os.path.expanduser("~"), "densenet-ray")  # holds runs/ and sweeps/ by default
RUNS_ROOT = os.path.join(HOME_ROOT, "runs")
SWEEPS_ROOT = os.path.join(HOME_ROOT, "sweeps")
CACHE_DIR = os.path.join(os.path.expanduser("~"), ".cache", "densenet-ray")
DOWNLOADS_DIR = os.path.join(CACHE_DIR, "downloads")
COMPILE_CACHE_DIR = os.path.join(CACHE_DIR, "inductor")  # torch.compile's cache, shared by runs and workers


def absolute_location(location: str) -> str:
    """A URL (``s3://``, ``file://``) unchanged; a local path with ``~`` expanded, made absolute."""
    if "://" in location:
        return location
    return os.path.abspath(os.path.expanduser(location))


def dataset_cache(dataset: str) -> str:
    """The directory a dataset's shards are built into on first use."""
    return os.path.join(CACHE_DIR, dataset)


@contextlib.contextmanager
def atomic_path(path: str) -> Iterator[str]:
    """A temporary name beside the local file ``path`` (same extension, so format-by-suffix writers still work) to
    write to; it becomes ``path`` only when the block succeeds, and is removed when it fails."""
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise UserError(f"cannot write {path}: the folder {directory} does not exist")
    stem, extension = os.path.splitext(os.path.basename(path))
    partial = os.path.join(directory, f".{stem}.partial-{os.getpid()}{extension}")
    try:
        yield partial
        os.replace(partial, path)
    finally:
        if os.path.exists(partial):
            os.remove(partial)
