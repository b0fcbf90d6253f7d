"""Storage's base types: the one-line error, object infos, the abstract interface and URL helpers."""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import IO


class StorageError(OSError):
    """A storage operation failed for a reason the user can act on; the message is one line."""


@dataclass(frozen=True)
class ObjectInfo:
    """An object (file) under a storage root: its name relative to the root and its size in bytes."""

    name: str
    size: int


class Storage(ABC):
    """Objects under a root URL. Names are relative, ``/``-separated."""

    url: str

    def join(self, name: str) -> str:
        """The full URL of ``name``."""
        return f"{self.url.rstrip('/')}/{name}" if name else self.url

    @abstractmethod
    def list(self, prefix: str = "") -> list[ObjectInfo]:
        """Every object under the root whose name starts with ``prefix``, sorted by name."""
        ...

    @abstractmethod
    def exists(self, name: str) -> bool: ...

    @abstractmethod
    def size(self, name: str) -> int: ...

    @abstractmethod
    def open_read(self, name: str) -> IO[bytes]:
        """A binary stream of the object (S3: the resumable reader)."""
        ...

    @abstractmethod
    def open_range(self, name: str, start: int, stop: int) -> IO[bytes]:
        """A binary stream of bytes ``[start, stop)`` of the object (S3: one resumable Range request)."""
        ...

    def read_bytes(self, name: str) -> bytes:
        with self.open_read(name) as stream:
            return stream.read()

    @abstractmethod
    def open_write(self, name: str) -> contextlib.AbstractContextManager[IO[bytes]]:
        """Write ``name`` atomically: readers see the old object or the complete new one, never a partial one."""

    def write_bytes(self, name: str, data: bytes) -> None:
        with self.open_write(name) as stream:
            stream.write(data)

    @abstractmethod
    def delete(self, name: str) -> None: ...

    @abstractmethod
    def read_versioned(self, name: str) -> tuple[bytes, str] | None:
        """``(content, version)`` of ``name``, or None when it does not exist; the version is opaque and changes
        with every write."""

    @abstractmethod
    def write_if(self, name: str, data: bytes, version: str | None) -> bool:
        """Write ``name`` only if it is still at ``version`` (None: only if it does not exist); False when another
        writer got there first. Atomic against other writers of the same storage: two calls with the same
        ``version`` never both succeed."""


def child_url(url: str, name: str) -> str:
    """``url`` joined with ``name``, keeping a query: ``s3://b/p?q`` and ``run`` give ``s3://b/p/run?q``."""
    base, question, query = url.partition("?")
    return f"{base.rstrip('/')}/{name}{question}{query}"


def split_url(url: str) -> tuple[str, str]:
    """``(parent URL, last name)`` of an object URL: ``s3://b/p/x.json`` -> ``("s3://b/p", "x.json")``; a query
    stays with the parent."""
    base, question, query = url.partition("?")
    head, _, tail = base.rstrip("/").rpartition("/")
    return head + question + query, tail
