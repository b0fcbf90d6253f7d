"""Adding sample indexes to shards built without them, and checking an index against its shard."""

from __future__ import annotations

import dataclasses

from densenet_ray.data.format.manifest import Manifest, ShardInfo, write_manifest
from densenet_ray.data.format.shard_index import ShardIndex, index_name, index_tar
from densenet_ray.data.reading.shard_reader import load_index
from densenet_ray.data.storage import Storage
from densenet_ray.errors import DataError


def index_shard(storage: Storage, shard: ShardInfo) -> ShardInfo:
    """Stream ``shard``, write its index beside it (atomically) and return its info naming the index."""
    with storage.open_read(shard.name) as stream:
        index = index_tar(stream)
    if len(index) != shard.samples:
        raise DataError(
            f"{storage.join(shard.name)} holds {len(index)} samples, the manifest says {shard.samples} "
            "(run `densenet-ray data verify`)"
        )
    name = index_name(shard.name)
    storage.write_bytes(name, index.to_text().encode())
    return dataclasses.replace(shard, index=name)


def index_manifest(storage: Storage, manifest: Manifest, force: bool = False) -> int:
    """Index every shard of ``manifest`` that lists no index (every shard with ``force``), then rewrite the manifest
    atomically with the index names; returns how many indexes were written."""
    shards, written = [], 0
    for shard in manifest.shards:
        if shard.index and not force:
            shards.append(shard)
            continue
        shards.append(index_shard(storage, shard))
        written += 1
    if written:
        write_manifest(storage, dataclasses.replace(manifest, shards=shards))
    return written


def index_problem(storage: Storage, shard: ShardInfo, actual: ShardIndex) -> str | None:
    """What is wrong with the index ``shard`` lists, given the index of the shard's actual bytes; None if nothing."""
    where = storage.join(shard.index)
    try:
        listed = load_index(storage, shard)
    except (DataError, OSError) as error:
        return str(error)
    if listed is not None and listed.samples != actual.samples:
        return f"{where} does not match its shard (rebuild it with `densenet-ray data index --force`)"
    return None
