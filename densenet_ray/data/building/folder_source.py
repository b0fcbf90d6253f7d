"""Class-folder images: a directory, a ``.tar``, or an ILSVRC2012-style tar of per-class tars; images at any depth
below their class folder, with an optional top level of split folders (``data/building/folder_layout.py`` decides)."""

from __future__ import annotations

import io
import os
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from densenet_ray.data.building.folder_layout import FolderLayout, read_layout
from densenet_ray.data.building.source_base import IMAGE_EXTENSIONS, FileEntry, FileListSource, image_extension
from densenet_ray.data.format.tar_members import check_member, refusal
from densenet_ray.errors import UserError

Found = tuple[tuple[str, ...], str, Any, str]  # (folders and name, image extension or "", tar byte range or -1, file)


def imagefolder_source(location: str, split: str | None = None, layout: str = "auto") -> FileListSource:
    """One split of the class-folder images at ``location`` (a directory, a ``.tar``, or an ILSVRC2012-style tar of
    per-class tars), written as ``split`` (default: the split folder's name, or train). Images at any depth below a
    class folder belong to it, in torchvision ``ImageFolder``'s order; ``layout`` says whether the top-level folders
    are classes or splits (see :func:`~densenet_ray.data.building.folder_layout.read_layout`). Where there are several
    split folders, ``split`` picks one (default train). Other files in the class folders are listed too (with no
    extension), for the builder to skip and count; hidden files are not. A class folder without images, or a single
    class, is a :class:`UserError`."""
    found, folder = _scan(location, layout)
    return _split_source(location, found, folder, _pick_split(location, folder.splits, split), split)


def imagefolder_sources(location: str, layout: str = "auto") -> list[FileListSource]:
    """Every split of the class-folder images at ``location``: one per split folder, or train for a folder of
    classes (as :func:`imagefolder_source` reads each)."""
    found, folder = _scan(location, layout)
    return [_split_source(location, found, folder, split, None) for split in folder.splits or (None,)]


def _scan(location: str, layout: str) -> tuple[list[Found], FolderLayout]:
    if os.path.isdir(location):
        found = _directory_files(location)
    elif os.path.isfile(location) and tarfile.is_tarfile(location):
        found = _tar_images(location)
    else:
        raise UserError(f"{location} is neither a directory nor a tar archive of class folders")
    images = [item[0] for item in found if item[1]]
    if not images:
        raise UserError(f"{location} contains no images ({', '.join(sorted(IMAGE_EXTENSIONS))})")
    folder = read_layout(location, images, layout)
    if os.path.isdir(location):
        for split in folder.splits or (None,):
            root = os.path.join(location, split) if split else location
            _check_no_empty_class(root, folder.classes_in(images, split))
    if len(folder.classes) < 2:
        one = folder.classes[0]
        raise UserError(f"{location} has one class ({one}); a classifier needs at least two class folders")
    return found, folder


def _pick_split(location: str, splits: tuple[str, ...], split: str | None) -> str | None:
    """The split folder to read: the one named ``split``, the only one, or train; None for a folder of classes."""
    if not splits or split in splits:
        return split if splits else None
    if len(splits) == 1:
        return splits[0]  # one split folder, written as the split asked for
    if split is None and "train" in splits:
        return "train"
    if split is None:
        raise UserError(f"{location} has split folders {', '.join(splits)} and none is train; pass --split")
    raise UserError(f"--split {split} is not a split folder of {location}; choose one of: {', '.join(splits)}")


def _split_source(
    location: str, found: list[Found], folder: FolderLayout, chosen: str | None, name: str | None
) -> FileListSource:
    """The files of split folder ``chosen`` (None: the whole folder) as split ``name`` (default ``chosen``)."""
    index = {cls: i for i, cls in enumerate(folder.classes)}
    entries, present = [], set()
    for path, extension, offset_size, file_path in found:
        cls = folder.class_of(path, chosen)
        if cls is None:
            continue  # a stray file outside the class folders (a README beside them)
        offset, size = offset_size if offset_size != -1 else (-1, 0)
        entry = FileEntry(file_path, offset, size, extension, index[cls], "/".join(path))
        entries.append((cls, "/".join(path[:-1]), path[-1], entry))
        if extension:
            present.add(cls)
    entries.sort(key=lambda item: item[:3])  # torchvision's: by class, then sorted(os.walk(...)), then file name
    source = FileListSource(
        "imagefolder", name or chosen or "train", folder.classes, location, [item[3] for item in entries]
    )
    # The classes are the union over the splits: a split may lack one that another split has.
    source.every_class_present = present == set(folder.classes)
    return source


def _directory_files(location: str) -> list[Found]:
    found: list[Found] = []
    for directory, files in _walk(location):
        for file in files:
            if not file.startswith("."):
                relative = os.path.relpath(os.path.join(directory, file), location)
                found.append(
                    (tuple(relative.split(os.sep)), image_extension(file) or "", -1, os.path.join(directory, file))
                )
    return found


def _walk(location: str) -> Iterator[tuple[str, list[str]]]:
    """``(folder, file names)`` below ``location``, following links as torchvision's ``ImageFolder`` does, except
    into hidden folders and links back to a folder's own parents (which would never end)."""
    parents: dict[str, set[str]] = {location: set()}
    for directory, folders, files in os.walk(location, followlinks=True):
        chain = parents.pop(directory, set()) | {os.path.realpath(directory)}
        kept = []
        for folder in folders:
            path = os.path.join(directory, folder)
            if not folder.startswith(".") and os.path.realpath(path) not in chain:
                kept.append(folder)
                parents[path] = chain
        folders[:] = kept
        yield directory, files


def _check_no_empty_class(root: str, classes: set[str]) -> None:
    for folder in sorted(os.listdir(root)):
        if folder not in classes and not folder.startswith(".") and os.path.isdir(os.path.join(root, folder)):
            raise UserError(f"class folder {os.path.join(root, folder)} has no images; add some or remove it")


def _tar_images(location: str) -> list[Found]:
    """Every file of the archive as a byte range of it; a sparse member or one over the member limit is refused
    (its byte range would not hold its bytes, or too many)."""
    found: list[Found] = []
    with tarfile.open(location) as archive:
        members = [m for m in archive.getmembers() if m.isfile()]
        nested = [m for m in members if m.name.endswith(".tar")]
        if nested and len(nested) == len(members):
            # ILSVRC2012_img_train.tar: one tar per class (n01440764.tar, ...), each holding that class's JPEGs.
            for member in nested:
                if member.issparse():  # a class tar is large; only its images are held to the limit
                    raise UserError(refusal(location, member.name, "is a sparse file"))
                cls = Path(member.name).stem
                window = _Window(location, member.offset_data, member.size)
                with tarfile.open(fileobj=window) as inner:
                    for image in inner.getmembers():
                        extension = image_extension(image.name) if image.isfile() else None
                        if image.isfile() and not Path(image.name).name.startswith("."):
                            check_member(image, f"{location}: {member.name}", UserError)
                            span = (member.offset_data + image.offset_data, image.size)
                            found.append(((cls, Path(image.name).name), extension or "", span, location))
            return found
        for member in members:
            parts = tuple(part for part in member.name.split("/") if part not in ("", "."))
            if parts and not any(part.startswith(".") for part in parts):  # as the directory walk skips them
                check_member(member, location, UserError)
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
