"""A directory on the local file system as :class:`Storage`; writes are atomic (temporary file, fsync, rename), and
every name stays below the directory (a manifest's shard names come from whoever built the shards)."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import os
import tempfile
from collections.abc import Iterator
from typing import IO, Any

from densenet_ray.data.storage.base import ObjectInfo, Storage, StorageError


class LocalStorage(Storage):
    """A directory on the local file system."""

    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(os.path.expanduser(root))
        self.url = self.root

    def _path(self, name: str) -> str:
        """The file of ``name``; :class:`StorageError` when the name leaves the root (``..`` or an absolute name),
        as a manifest or index from elsewhere may ask. Symbolic links below the root are followed: only this
        machine's users make them (shards linked from another disk are a common layout)."""
        if not name:
            return self.root
        parts = name.split("/")
        if os.path.isabs(name) or ".." in parts:
            raise StorageError(f"{name!r} leaves {self.root}: a storage name is a relative path below it, without '..'")
        return os.path.join(self.root, *parts)

    def list(self, prefix: str = "") -> list[ObjectInfo]:
        if not os.path.isdir(self.root):
            return []
        found = []
        for directory, _, files in os.walk(self.root):
            for file in files:
                full = os.path.join(directory, file)
                name = os.path.relpath(full, self.root).replace(os.sep, "/")
                if name.startswith(prefix) and ".tmp-" not in file:
                    found.append(ObjectInfo(name, os.path.getsize(full)))
        return sorted(found, key=lambda info: info.name)

    def exists(self, name: str) -> bool:
        return os.path.isfile(self._path(name))

    def size(self, name: str) -> int:
        try:
            return os.path.getsize(self._path(name))
        except FileNotFoundError:
            raise StorageError(f"no such file: {self._path(name)}") from None

    def open_read(self, name: str) -> io.BufferedReader:
        try:
            return open(self._path(name), "rb")
        except FileNotFoundError:
            raise StorageError(f"no such file: {self._path(name)}") from None
        except PermissionError:
            raise StorageError(f"permission denied reading {self._path(name)}") from None

    def open_range(self, name: str, start: int, stop: int) -> IO[bytes]:
        handle = self.open_read(name)
        handle.seek(start)
        return io.BufferedReader(_Bounded(handle, stop - start))

    @contextlib.contextmanager
    def open_write(self, name: str) -> Iterator[IO[bytes]]:
        path = self._path(name)
        directory = os.path.dirname(path)
        try:
            os.makedirs(directory, exist_ok=True)
            handle = tempfile.NamedTemporaryFile(  # noqa: SIM115 - closed below, then renamed into place
                "wb", dir=directory, prefix=os.path.basename(path) + ".tmp-", delete=False
            )
        except OSError as error:
            raise StorageError(f"cannot write to {directory}: {error.strerror or error}") from None
        try:
            with handle:
                yield handle
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(handle.name, 0o666 & ~_umask())  # mkstemp creates 0600; give the file the usual mode
            os.replace(handle.name, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(handle.name)
            raise

    def delete(self, name: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._path(name))

    def read_versioned(self, name: str) -> tuple[bytes, str] | None:
        try:
            with open(self._path(name), "rb") as handle:
                data = handle.read()
        except FileNotFoundError:
            return None
        return data, hashlib.sha256(data).hexdigest()

    def write_if(self, name: str, data: bytes, version: str | None) -> bool:
        # An exclusive flock on the directory serialises compare-and-write between the processes of this machine
        # and leaves no lock file behind.
        path = self._path(name)
        directory = os.path.dirname(path)
        try:
            os.makedirs(directory, exist_ok=True)
            descriptor = os.open(directory, os.O_RDONLY)
        except OSError as error:
            raise StorageError(f"cannot write to {directory}: {error.strerror or error}") from None
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX)
            current = self.read_versioned(name)
            if (current[1] if current else None) != version:
                return False
            self.write_bytes(name, data)
            return True
        finally:
            os.close(descriptor)


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


class _Bounded(io.RawIOBase):
    """At most ``remaining`` bytes of an open file, from where it stands; closing closes the file."""

    def __init__(self, handle: io.BufferedReader, remaining: int) -> None:
        super().__init__()
        self.handle, self.remaining = handle, remaining

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")[: self.remaining]
        count = self.handle.readinto(view) or 0
        self.remaining -= count
        return count

    def close(self) -> None:
        self.handle.close()
        super().close()
