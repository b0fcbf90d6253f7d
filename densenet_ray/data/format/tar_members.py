"""The one limit on a tar member read into memory, declared once, and the streamed tar walk that applies it.

A tar header says how large its member is, and a GNU or PAX sparse member says so without the bytes being there:
a 10 KB archive can declare a member of gigabytes, which :mod:`tarfile` then hands out as zeros. Every reader of
members (shards, class-folder archives, images inside a shard for ``predict``) refuses a sparse member and one
larger than :data:`MAX_MEMBER_BYTES` before reading it, in one line naming the archive and the member.
"""

from __future__ import annotations

import tarfile
from collections.abc import Iterator
from typing import IO

# 64 MiB: one encoded image is a member. A 100-megapixel photograph is 20-50 MB as a high-quality JPEG, ImageNet's
# and Open Images' largest files are under 20 MB, and a converted image the builder stores as PNG stays below this
# up to about 20 megapixels of noise-like content. A loader worker holds a few members at a time, so the cap also
# bounds what one damaged archive can make a worker allocate.
MAX_MEMBER_BYTES = 64 << 20


def member_problem(info: tarfile.TarInfo) -> str | None:
    """Why the member must not be read (sparse, or over :data:`MAX_MEMBER_BYTES`), or None when it may be."""
    return "is a sparse file" if info.issparse() else size_problem(info.size)


def size_problem(size: int) -> str | None:
    """Why a member of ``size`` bytes must not be read, or None when it may be."""
    return f"declares {size:,} bytes" if size > MAX_MEMBER_BYTES else None


def refusal(archive: str, name: str, problem: str) -> str:
    """The one-line refusal of member ``name`` of ``archive``."""
    return f"{archive}: member {name} {problem}; members must be plain files of at most {MAX_MEMBER_BYTES >> 20} MiB"


def check_member(info: tarfile.TarInfo, archive: str, error: type[Exception]) -> None:
    """Raise ``error`` (one line naming ``archive`` and the member) when the member must not be read."""
    problem = member_problem(info)
    if problem is not None:
        raise error(refusal(archive, info.name, problem))


def file_members(stream: IO[bytes], archive: str, error: type[Exception]) -> Iterator[tuple[str, bytes]]:
    """``(name, bytes)`` of every regular member of the tar streamed from ``stream``, in order, each checked by
    :func:`check_member` before its bytes are read. WebDataset's ``tar_file_iterator`` does this walk too, but its
    ``select_files`` sees only names, not the header's type and size."""
    with tarfile.open(fileobj=stream, mode="r|*") as walk:
        for info in walk:
            if not info.isreg():
                continue
            check_member(info, archive, error)
            handle = walk.extractfile(info)
            assert handle is not None  # a regular member always has data
            yield info.name, handle.read()
            # A streamed walk keeps every header it has passed; a shard has many. (typeshed omits TarFile.members.)
            walk.members = []  # type: ignore[attr-defined]
