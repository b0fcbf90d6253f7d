"""The Parquet files batch inference writes: one per input shard (``test-000003.tar`` -> ``test-000003.parquet``),
each written whole and atomically once every sample of its shard is accounted for, so a rerun with the same
``--out`` skips exactly the shards already written.

Columns: ``key`` (the sample's key in its shard), then for a single-label model ``top_classes`` and
``top_probabilities`` (lists, most probable first), for a multi-label model one probability column per class,
named by the class. The file's metadata names the model's classes and the source shard.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from densenet_ray.data.format.manifest import ShardInfo
from densenet_ray.data.storage import Storage, StorageError, open_storage
from densenet_ray.errors import UserError

SUFFIX = ".parquet"


def output_name(shard: ShardInfo) -> str:
    """The Parquet file of a shard's predictions."""
    return os.path.splitext(os.path.basename(shard.name))[0] + SUFFIX


def open_output(url: str) -> Storage:
    """``--out``'s storage, checked writable by writing and removing a probe (one line when it is not)."""
    probe = ".densenet-ray-write-probe"
    try:
        storage = open_storage(url)
        storage.write_bytes(probe, b"")
        storage.delete(probe)
    except (StorageError, OSError) as error:
        reason = getattr(error, "strerror", None) or str(error).splitlines()[0]
        raise UserError(
            f"--out {url} is not writable ({reason}); give a directory or s3:// prefix you can write"
        ) from None
    return storage


def pending(shards: Sequence[ShardInfo], out: Storage) -> list[ShardInfo]:
    """The shards whose Parquet file is not in ``out`` yet (one listing)."""
    written = {info.name for info in out.list() if info.name.endswith(SUFFIX)}
    return [shard for shard in shards if output_name(shard) not in written]


@dataclass(frozen=True)
class Labels:
    """What the model's outputs are: its class names, and whether each is scored on its own (multi-label)."""

    classes: tuple[str, ...]
    multi_label: bool


def write_predictions(out: Storage, shard: ShardInfo, rows: list[dict[str, Any]], labels: Labels) -> None:
    """One shard's predictions as its Parquet file, in key order, written atomically."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows, classes = sorted(rows, key=lambda row: row["key"]), labels.classes
    columns: dict[str, Any] = {"key": pa.array([row["key"] for row in rows], pa.string())}
    if labels.multi_label:  # a column per class
        for index, name in enumerate(classes):
            columns[name] = pa.array([row["probabilities"][index] for row in rows], pa.float32())
    else:
        columns["top_classes"] = pa.array([row["top_classes"] for row in rows], pa.list_(pa.string()))
        columns["top_probabilities"] = pa.array([row["top_probabilities"] for row in rows], pa.list_(pa.float32()))
    metadata = {"densenet_ray.shard": shard.name, "densenet_ray.classes": ",".join(classes)}
    table = pa.table(columns).replace_schema_metadata(metadata)
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    out.write_bytes(output_name(shard), buffer.getvalue())
