"""Writing one WebDataset tar shard reproducibly, with its size, SHA-256 and pixel statistics."""

from __future__ import annotations

import hashlib
import io
import tarfile
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import IO

import numpy as np

from densenet_ray.data.format.image_check import SkippedFile
from densenet_ray.data.format.label import Label
from densenet_ray.data.format.manifest import ShardInfo
from densenet_ray.data.format.shard_index import Member, build_index, index_name, padded, split_member_name
from densenet_ray.data.storage import Storage


def shard_name(split: str, index: int) -> str:
    """``{split}-000000.tar``, the name of shard ``index`` of ``split``."""
    return f"{split}-{index:06d}.tar"


def sample_key(index: int) -> str:
    """The ``__key__`` of the sample at global position ``index`` in its split (unique, sortable, no dots)."""
    return f"{index:08d}"


@dataclass
class PixelStats:
    """Running per-channel sums over images on the [0, 1] scale, mergeable across shards and tasks."""

    images: int = 0
    pixels: int = 0
    total: np.ndarray = field(default_factory=lambda: np.zeros(3))
    squares: np.ndarray = field(default_factory=lambda: np.zeros(3))
    sizes: set[tuple[int, int]] = field(default_factory=set)
    formats: set[str] = field(default_factory=set)
    undecodable: list[str] = field(default_factory=list)
    short_sides: Counter[int] = field(default_factory=Counter)  # images by the length of their shorter side
    class_counts: Counter[int] = field(default_factory=Counter)  # samples by class index
    converted: Counter[str] = field(default_factory=Counter)  # images made RGB, by the mode they were in
    skipped: list[SkippedFile] = field(default_factory=list)  # source files left out

    def add(self, image: bytes) -> None:
        from PIL import Image

        with Image.open(io.BytesIO(image)) as opened:
            pixels = np.asarray(opened.convert("RGB"), dtype=np.float64).reshape(-1, 3) / 255.0
        self.images += 1
        self.pixels += pixels.shape[0]
        self.total += pixels.sum(0)
        self.squares += np.square(pixels).sum(0)

    def add_size(self, image: bytes) -> None:
        from PIL import Image

        with Image.open(io.BytesIO(image)) as opened:  # reads the header only
            self.sizes.add((opened.height, opened.width))
            self.short_sides[min(opened.height, opened.width)] += 1

    def merge(self, other: PixelStats) -> None:
        self.images += other.images
        self.pixels += other.pixels
        self.total += other.total
        self.squares += other.squares
        self.sizes |= other.sizes
        self.formats |= other.formats
        self.undecodable += other.undecodable
        self.short_sides.update(other.short_sides)
        self.class_counts.update(other.class_counts)
        self.converted.update(other.converted)
        self.skipped += other.skipped

    def short_side_summary(self) -> list[int] | None:
        """``[smallest, median, largest]`` shorter side over the images, or None when none was sized."""
        if not self.short_sides:
            return None
        ordered = sorted(self.short_sides.elements())
        return [ordered[0], ordered[len(ordered) // 2], ordered[-1]]

    def mean_std(self) -> tuple[list[float], list[float]]:
        if not self.pixels:
            return [0.0] * 3, [0.0] * 3
        mean = self.total / self.pixels
        std = np.sqrt(np.maximum(self.squares / self.pixels - np.square(mean), 0.0))
        return [round(float(v), 6) for v in mean], [round(float(v), 6) for v in std]


class _HashingWriter(io.RawIOBase):
    """Forwards writes to ``target`` while counting bytes and hashing them."""

    def __init__(self, target: IO[bytes]) -> None:
        super().__init__()
        self.target, self.digest, self.bytes = target, hashlib.sha256(), 0

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]  # tarfile writes bytes; RawIOBase takes any buffer
        self.target.write(data)
        self.digest.update(data)
        self.bytes += len(data)
        return len(data)


def _add_member(archive: tarfile.TarFile, name: str, data: bytes) -> Member:
    """Append one member; returns it as the index records it (tarfile's ``offset`` is where the archive ends)."""
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), 0, 0o444
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    archive.addfile(info, io.BytesIO(data))
    return Member(split_member_name(name)[1], archive.offset - padded(len(data)), len(data), name)


def write_shard(
    storage: Storage,
    name: str,
    samples: Iterable[tuple[str, bytes, str, Label]],
    stats: PixelStats | None = None,
    stats_every: int = 1,
) -> ShardInfo:
    """Write ``(key, image, extension, label)`` samples as tar shard ``name``, atomically.

    Members have fixed mtime, owner and mode and ustar headers (no per-member PAX header), so rebuilding from the
    same source gives a byte-identical shard. Every ``stats_every``-th sample's pixels go into ``stats``; every
    sample's size does. The shard's index (DALI's format, see ``shard_index``) is written beside it, after it.
    """
    count = 0
    members: list[Member] = []
    with storage.open_write(name) as target:
        hashed = _HashingWriter(target)
        with tarfile.open(fileobj=hashed, mode="w|", format=tarfile.USTAR_FORMAT) as archive:
            for key, image, extension, label in samples:
                members.append(_add_member(archive, f"{key}.{extension}", image))
                if isinstance(label, tuple):  # multi-label: the class indices, comma-separated (none: empty)
                    members.append(_add_member(archive, f"{key}.labels", ",".join(map(str, label)).encode()))
                else:
                    members.append(_add_member(archive, f"{key}.cls", str(label).encode()))
                if stats is not None:
                    stats.class_counts.update(label if isinstance(label, tuple) else (label,))
                    stats.formats.add(extension)
                    try:
                        stats.add_size(image)
                        if int(key) % stats_every == 0:
                            stats.add(image)
                    except Exception:  # PIL raises many types; the bytes are kept, the key is reported
                        stats.undecodable.append(key)
                count += 1
    storage.write_bytes(index_name(name), build_index(members).to_text().encode())
    digest = hashed.digest.hexdigest()
    return ShardInfo(name=name, samples=count, bytes=hashed.bytes, sha256=digest, index=index_name(name))
