"""Class-folder images: a directory, a ``.tar``, or an ILSVRC2012-style tar of per-class tars."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path
from typing import Any

from densenet_ray.data.source_base import IMAGE_EXTENSIONS, FileEntry, FileListSource, image_extension
from densenet_ray.errors import UserError


def _class_layout(paths: list[tuple[str, ...]]) -> tuple[str | None, list[tuple[str, tuple[str, ...]]]]:
    """Split ``(dirs..., file)`` paths into an optional split folder and ``(class, path)`` pairs."""
    depths = {len(p) for p in paths}
    if depths == {2}:
        return None, [(p[0], p) for p in paths]
    if depths == {3} and len({p[0] for p in paths}) == 1:
        return paths[0][0], [(p[1], p) for p in paths]
    raise UserError(
        "expected class-folder layout: <class>/<image> or <split>/<class>/<image> "
        f"(found images at depths {sorted(d - 1 for d in depths)})"
    )


def imagefolder_source(location: str, split: str | None = None) -> FileListSource:
    """Class-folder images from a directory, a ``.tar``, or an ILSVRC2012-style tar of per-class tars. Other files
    in the class folders are listed too (with no extension), for the builder to skip and count; hidden files are
    not. A class folder without images, or a single class, is a :class:`UserError`."""
    if os.path.isdir(location):
        found = _directory_files(location)
    elif os.path.isfile(location) and tarfile.is_tarfile(location):
        found = _tar_images(location)
    else:
        raise UserError(f"{location} is neither a directory nor a tar archive of class folders")
    images = [item for item in found if item[1]]
    if not images:
        raise UserError(f"{location} contains no images ({', '.join(sorted(IMAGE_EXTENSIONS))})")
    split_folder, labelled = _class_layout([item[0] for item in images])
    classes = sorted({cls for cls, _ in labelled})
    if os.path.isdir(location):
        _check_no_empty_class(os.path.join(location, split_folder) if split_folder else location, classes)
    if len(classes) < 2:
        raise UserError(f"{location} has one class ({classes[0]}); a classifier needs at least two class folders")
    index = {cls: i for i, cls in enumerate(classes)}
    depth = len(images[0][0])
    entries = []
    for path, extension, offset_size, file_path in found:
        cls = path[-2] if len(path) == depth else None
        if cls not in index or (split_folder and path[0] != split_folder):
            continue  # a stray file outside the class folders (a README beside them)
        offset, size = offset_size if offset_size != -1 else (-1, 0)
        entry = FileEntry(file_path, offset, size, extension, index[cls], "/".join(path))
        entries.append((cls, path, entry))
    entries.sort(key=lambda item: (item[0], item[1]))
    return FileListSource(
        "imagefolder", split or split_folder or "train", classes, location, [entry for _, _, entry in entries]
    )


def _directory_files(location: str) -> list[tuple[tuple[str, ...], str, Any, str]]:
    found = []
    for directory, folders, files in os.walk(location):
        folders[:] = [folder for folder in folders if not folder.startswith(".")]
        for file in files:
            if not file.startswith("."):
                relative = os.path.relpath(os.path.join(directory, file), location)
                found.append(
                    (tuple(relative.split(os.sep)), image_extension(file) or "", -1, os.path.join(directory, file))
                )
    return found


def _check_no_empty_class(root: str, classes: list[str]) -> None:
    for folder in sorted(os.listdir(root)):
        if folder not in classes and not folder.startswith(".") and os.path.isdir(os.path.join(root, folder)):
            raise UserError(f"class folder {os.path.join(root, folder)} has no images; add some or remove it")


def _tar_images(location: str) -> list[tuple[tuple[str, ...], str, Any, str]]:
    found = []
    with tarfile.open(location) as archive:
        members = [m for m in archive.getmembers() if m.isfile()]
        nested = [m for m in members if m.name.endswith(".tar")]
        if nested and len(nested) == len(members):
            # ILSVRC2012_img_train.tar: one tar per class (n01440764.tar, ...), each holding that class's JPEGs.
            for member in nested:
                cls = Path(member.name).stem
                window = _Window(location, member.offset_data, member.size)
                with tarfile.open(fileobj=window) as inner:
                    for image in inner.getmembers():
                        extension = image_extension(image.name) if image.isfile() else None
                        if image.isfile() and not Path(image.name).name.startswith("."):
                            span = (member.offset_data + image.offset_data, image.size)
                            found.append(((cls, Path(image.name).name), extension or "", span, location))
            return found
        for member in members:
            parts = tuple(part for part in member.name.split("/") if part not in ("", "."))
            if parts and not parts[-1].startswith("."):
                found.append((parts, image_extension(member.name) or "", (member.offset_data, member.size), location))
    return found


class _Window(io.RawIOBase):
    """A read-only, seekable view of ``size`` bytes at ``offset`` in a file (a tar nested in a tar)."""

    def __init__(self, path: str, offset: int, size: int) -> None:
        super().__init__()
        self._file = open(path, "rb")  # noqa: SIM115 - closed in close()
        self._offset, self._size, self._position = offset, size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, position: int, whence: int = 0) -> int:
        base = {0: 0, 1: self._position, 2: self._size}[whence]
        self._position = max(0, min(self._size, base + position))
        return self._position

    def readinto(self, buffer: Any) -> int:
        count = min(len(buffer), self._size - self._position)
        if count <= 0:
            return 0
        self._file.seek(self._offset + self._position)
        data = self._file.read(count)
        buffer[: len(data)] = data
        self._position += len(data)
        return len(data)

    def close(self) -> None:
        self._file.close()
        super().close()
