"""Raw samples out of one shard: the whole shard (a streamed tar walk) or the samples at given positions (with the
shard's index: one range read from the first wanted sample to the last; without: the shard from its start, stopping
after the last wanted sample). A sparse member, or one over the member limit, ends the read with one line naming
the shard and the member (:mod:`densenet_ray.data.format.tar_members`)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from densenet_ray.data.format.manifest import ShardInfo
from densenet_ray.data.format.shard_index import Member, ShardIndex, parse_index, split_member_name
from densenet_ray.data.format.tar_members import file_members, refusal, size_problem
from densenet_ray.data.storage import Storage, StorageError
from densenet_ray.errors import DataError

# key, image bytes, label: a class index (-1 when the cls member is missing or not a number) or, multi-label, a
# tuple of class indices (the labels member)
RawSample = tuple[str, bytes, "int | tuple[int, ...]"]


def load_index(storage: Storage, shard: ShardInfo) -> ShardIndex | None:
    """The shard's index, or None for a shard built without one; it must list the manifest's sample count."""
    if not shard.index:
        return None
    where = storage.join(shard.index)
    index = parse_index(storage.read_bytes(shard.index).decode("utf-8", errors="replace"), where)
    if len(index) != shard.samples:
        raise DataError(
            f"{where} lists {len(index)} samples, the manifest {shard.samples} for {shard.name} "
            "(rebuild it with `densenet-ray data index --force`)"
        )
    return index


def read_shard(storage: Storage, shard: ShardInfo) -> Iterator[RawSample]:
    """Every sample of the shard in stored order (members grouped by key, WebDataset's rule)."""
    url = storage.join(shard.name)
    try:
        with storage.open_read(shard.name) as stream:
            current_key: str | None = None
            members: dict[str, bytes] = {}
            for name, data in file_members(stream, f"shard {url}", DataError):
                key, extension = split_member_name(name)
                if key != current_key and members:
                    yield _sample(current_key, members)
                    members = {}
                current_key = key
                members[extension] = data
            if members:
                yield _sample(current_key, members)
    except (StorageError, DataError):
        raise
    except Exception as error:  # tarfile and stream errors: name the shard, not a bare traceback
        raise DataError(f"cannot read shard {url} ({type(error).__name__}: {error})") from None


def read_positions(
    storage: Storage, shard: ShardInfo, positions: Sequence[int], index: ShardIndex | None
) -> Iterator[tuple[int, RawSample]]:
    """``(position, sample)`` for each of ``positions`` (ascending) of the shard, in order."""
    if not positions:
        return
    if index is None:
        yield from _scan(storage, shard, positions)
        return
    wanted, samples = set(positions), index.samples
    first, last = positions[0], positions[-1]
    cursor = samples[first].start
    url = storage.join(shard.name)
    try:
        with storage.open_range(shard.name, cursor, samples[last].end) as stream:
            for position in range(first, last + 1):
                sample = samples[position]
                _check_sizes(url, sample.members)
                data = stream.read(sample.end - cursor)
                if len(data) != sample.end - cursor:
                    raise DataError(
                        f"shard {url} is truncated or corrupt: its bytes end inside sample {position + 1} of "
                        f"{shard.samples}, where its index says they go on (run `densenet-ray data verify`)"
                    )
                if position in wanted:
                    members = {
                        m.extension: data[m.offset - cursor : m.offset - cursor + m.size] for m in sample.members
                    }
                    yield position, _sample(sample.key, members)
                cursor = sample.end
    except (StorageError, DataError):
        raise
    except Exception as error:
        raise DataError(f"cannot read shard {url} ({type(error).__name__}: {error})") from None


def _scan(storage: Storage, shard: ShardInfo, positions: Sequence[int]) -> Iterator[tuple[int, RawSample]]:
    wanted, last = set(positions), positions[-1]
    position = -1
    for position, sample in enumerate(read_shard(storage, shard)):
        if position in wanted:
            yield position, sample
        if position == last:
            return
    raise DataError(
        f"shard {storage.join(shard.name)} is truncated or corrupt: {position + 1} of {shard.samples} samples "
        "(run `densenet-ray data verify`)"
    )


def _check_sizes(url: str, members: Sequence[Member]) -> None:
    """The member limit, on the sizes the index lists (the bytes are sliced from one range read, not walked)."""
    for member in members:
        problem = size_problem(member.size)
        if problem is not None:
            raise DataError(refusal(f"shard {url}", member.name, problem))


def _sample(key: str | None, members: dict[str, bytes]) -> RawSample:
    images = [data for extension, data in members.items() if extension not in ("cls", "labels")]
    label: int | tuple[int, ...]
    try:
        if "labels" in members:
            label = tuple(int(part) for part in members["labels"].decode().split(",") if part)
        else:
            label = int(members["cls"])
    except (KeyError, ValueError):
        label = -1
    # A sample missing its image or label (a truncated member) still counts, and fails decoding downstream.
    return str(key), images[0] if images else b"", label
