"""What each rank wrote into a checkpoint, file by file with its size and SHA-256 (``files-rank<r>.json``), so that a
checkpoint stored other than as written is found before a resume trusts it: a server that kept an upload's
aws-chunked framing, a truncated upload, a flipped byte that ``torch.load`` would read as a different weight. The
resume names the file that does not match and falls back to the checkpoint before (``train/run/preflight.py``)."""

from __future__ import annotations

import hashlib
import json
import os

from densenet_ray.data.storage import Storage, StorageError

MANIFEST_PREFIX = "files-rank"


def write_manifest(directory: str, rank: int) -> None:
    """Record the files ``rank`` wrote into ``directory`` (its own part of the checkpoint, before Ray merges the
    ranks' parts) in ``files-rank<rank>.json``."""
    entries = {}
    for name in sorted(os.listdir(directory)):
        if name.startswith(MANIFEST_PREFIX):
            continue
        with open(os.path.join(directory, name), "rb") as handle:
            data = handle.read()
        entries[name] = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    with open(os.path.join(directory, f"{MANIFEST_PREFIX}{rank}.json"), "w") as handle:
        json.dump(entries, handle, indent=1)


def unverified(storage: Storage, checkpoint: str, read: dict[str, bytes]) -> str | None:
    """Why a file of ``checkpoint`` (a directory under ``storage``) is not stored as its rank recorded it, or None
    when every recorded file matches (or, from before manifests were written, nothing is recorded). ``read``: files
    already read, by path under ``storage``; the others are read here."""
    for info in storage.list(f"{checkpoint}/{MANIFEST_PREFIX}"):
        manifest = info.name.rsplit("/", 1)[-1]
        try:
            recorded = json.loads(storage.read_bytes(info.name))
            entries = {str(name): (int(entry["bytes"]), str(entry["sha256"])) for name, entry in recorded.items()}
        except (ValueError, TypeError, KeyError, AttributeError):
            return f"its {manifest} is not a file list as written (stored corrupt)"
        for name, (size, digest) in entries.items():
            path = f"{checkpoint}/{name}"
            try:
                data = read[path] if path in read else storage.read_bytes(path)
            except StorageError:
                return f"{name}, listed in {manifest}, is missing"
            if len(data) != size or hashlib.sha256(data).hexdigest() != digest:
                return f"{name} is not stored as written ({len(data)} bytes, {size} written, SHA-256 differs)"
    return None
