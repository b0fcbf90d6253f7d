"""Per-shard sample indexes in the format NVIDIA DALI's ``fn.readers.webdataset(index_paths=...)`` reads.

DALI's ``wds2idx`` tool (https://github.com/NVIDIA/DALI/blob/main/tools/wds2idx.py, documented at
https://docs.nvidia.com/deeplearning/dali/user-guide/docs/operations/nvidia.dali.fn.readers.webdataset.html) writes
a text file: a first line ``v1.2 <samples>``, then one line per sample listing each of its members as
``<extension> <data offset> <data size> <member name>``. The offset is where the member's bytes start in the tar
(after its header). ``train-000000.tar``'s index is ``train-000000.idx`` beside it, so the same shards feed DALI on
GPU nodes and this pipeline, which uses the offsets to read a span of samples from the middle of a shard with one
HTTP Range request or a local seek.

A sample's bytes run from the end of the previous sample's last member (the tar is a sequence of 512-byte blocks,
so member data is padded to a block) to the end of its own last member's padding; reading that range and slicing
the members by offset needs no tar parsing.
"""

from __future__ import annotations

import tarfile
from collections.abc import Iterable
from dataclasses import dataclass
from typing import IO

from densenet_ray.errors import DataError

VERSION = "v1.2"
BLOCK = tarfile.BLOCKSIZE


def index_name(shard_name: str) -> str:
    """``train-000000.tar`` -> ``train-000000.idx`` (the name ``wds2idx`` gives by default)."""
    head, slash, tail = shard_name.rpartition("/")
    stem = tail[:1] + tail[1:].split(".", 1)[0]
    return f"{head}{slash}{stem}.idx"


def split_member_name(name: str) -> tuple[str, str]:
    """``(sample key, extension)`` of a member: the key runs to the first dot of the file name (WebDataset's rule)."""
    directory, slash, tail = name.rpartition("/")
    dot = tail.find(".", 1)
    if dot < 0:
        return name, ""
    return f"{directory}{slash}{tail[:dot]}", tail[dot + 1 :]


def padded(size: int) -> int:
    return -(-size // BLOCK) * BLOCK


@dataclass(frozen=True)
class Member:
    extension: str
    offset: int  # where the member's data starts in the shard
    size: int
    name: str


@dataclass(frozen=True)
class IndexedSample:
    """One sample of a shard: its key, its members and the byte range ``[start, end)`` that holds them."""

    key: str
    members: tuple[Member, ...]
    start: int
    end: int


@dataclass(frozen=True)
class ShardIndex:
    samples: list[IndexedSample]

    def __len__(self) -> int:
        return len(self.samples)

    def to_text(self) -> str:
        lines = [f"{VERSION} {len(self.samples)}"]
        for sample in self.samples:
            lines.append(" ".join(f"{m.extension} {m.offset} {m.size} {m.name}" for m in sample.members))
        return "\n".join(lines) + "\n"


def build_index(members: Iterable[Member]) -> ShardIndex:
    """Group members (in tar order) into samples by key, with each sample's byte range."""
    grouped: list[list[Member]] = []
    last_key = None
    for member in members:
        key, _ = split_member_name(member.name)
        if key != last_key:
            grouped.append([])
            last_key = key
        grouped[-1].append(member)
    samples, end = [], 0
    for group in grouped:
        start, end = end, max(m.offset + padded(m.size) for m in group)
        samples.append(IndexedSample(split_member_name(group[0].name)[0], tuple(group), start, end))
    return ShardIndex(samples)


def index_tar(stream: IO[bytes]) -> ShardIndex:
    """The index of the tar streamed from ``stream`` (read once, front to back), through :mod:`tarfile`."""
    members = []
    with tarfile.open(fileobj=stream, mode="r|") as archive:
        for info in archive:
            if info.isfile():
                members.append(Member(split_member_name(info.name)[1], info.offset_data, info.size, info.name))
    return build_index(members)


def parse_index(text: str, where: str) -> ShardIndex:
    """Parse an index file; :class:`DataError` naming ``where`` when it is not one."""
    lines = text.splitlines()
    try:
        version, count = lines[0].split()
        if version != VERSION:
            raise ValueError(f"version {version!r} is not {VERSION}")
        members = []
        for line in lines[1 : 1 + int(count)]:
            fields = line.split(" ")
            if not fields or len(fields) % 4:
                raise ValueError(f"line {line[:60]!r} is not groups of 'extension offset size name'")
            for i in range(0, len(fields), 4):
                members.append(Member(fields[i], int(fields[i + 1]), int(fields[i + 2]), fields[i + 3]))
        index = build_index(members)
        if len(index) != int(count):
            raise ValueError(f"header says {count} samples, lines hold {len(index)}")
        return index
    except (ValueError, IndexError) as error:
        raise DataError(
            f"{where} is not a WebDataset index ({error}; rebuild it with `densenet-ray data index`)"
        ) from None
