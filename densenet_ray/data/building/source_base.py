"""What every raw dataset the shard builder reads is: a random-access, picklable list of samples (so ranges of it
can be sharded in parallel tasks), and the one kind made of files (class folders, tars, lists of files)."""

from __future__ import annotations

import copy
import os
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

from densenet_ray.data.format.label import Label
from densenet_ray.errors import UserError

IMAGE_EXTENSIONS = {".jpg": "jpg", ".jpeg": "jpg", ".png": "png", ".bmp": "bmp", ".webp": "webp"}


class Source(ABC):
    """A split of a raw dataset, read sample by sample (``multi_label``: labels are tuples of class indices)."""

    multi_label = False
    every_class_present = False  # a class without a readable image is an error (classes found, not given)

    def __init__(self, dataset: str, split: str, classes: list[str], location: str) -> None:
        self.dataset, self.split, self.classes, self.location = dataset, split, classes, location

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def read(self, index: int) -> tuple[bytes, str, Label]:
        """``(image bytes, extension, label)`` of sample ``index``; the extension is empty for a file whose name is
        not an image's (the builder skips and counts it)."""

    def name(self, index: int) -> str:
        """How messages name sample ``index``: its file, or its position in the source."""
        return f"{self.location}[{index}]"


@dataclass(frozen=True)
class FileEntry:
    """Where one image's bytes are: a file, or a byte range of a (possibly nested) tar."""

    path: str
    offset: int
    size: int
    extension: str
    label: Label
    name: str = ""


class FileListSource(Source):
    """Images listed up front as files or tar byte ranges (class-folder directories and tars)."""

    every_class_present = True

    def __init__(self, dataset: str, split: str, classes: list[str], location: str, entries: list[FileEntry]) -> None:
        super().__init__(dataset, split, classes, location)
        self.entries = entries
        self._handles: dict[str, Any] = {}

    def __len__(self) -> int:
        return len(self.entries)

    def read(self, index: int) -> tuple[bytes, str, Label]:
        entry = self.entries[index]
        if entry.offset < 0:
            with open(entry.path, "rb") as whole:
                return whole.read(), entry.extension, entry.label
        handle = self._handles.get(entry.path)
        if handle is None:
            handle = self._handles[entry.path] = open(entry.path, "rb")  # noqa: SIM115 - kept open across reads
        handle.seek(entry.offset)
        return handle.read(entry.size), entry.extension, entry.label

    def name(self, index: int) -> str:
        return self.entries[index].name or super().name(index)

    def with_entries(self, split: str, entries: list[FileEntry]) -> FileListSource:
        """The same source (its kind, classes, location) as ``split`` of ``entries``."""
        part = copy.copy(self)
        part.split, part.entries, part._handles = split, entries, {}
        return part

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_handles": {}}


def split_holdout(source: FileListSource, per_class: int) -> tuple[FileListSource, FileListSource]:
    """``(train, test)``: the last ``per_class`` images of every class (in file-name order) become ``test``; files
    that are not images stay with ``train``, to be skipped and counted there."""
    if per_class < 1:
        raise UserError(f"--holdout-per-class {per_class} must be positive")
    if source.multi_label:
        raise UserError("--holdout-per-class needs one label per image; list the test images in a file of their own")
    by_class: dict[Any, list[FileEntry]] = {}
    for entry in source.entries:
        by_class.setdefault(entry.label, []).append(entry)
    others = [entry for entry in source.entries if not entry.extension]
    by_class = {label: [e for e in entries if e.extension] for label, entries in by_class.items()}
    short = [source.classes[label] for label, entries in by_class.items() if len(entries) <= per_class]
    if short:
        raise UserError(f"--holdout-per-class {per_class} leaves no training images for class(es) {', '.join(short)}")
    keep = [e for label in sorted(by_class) for e in by_class[label][:-per_class]] + others
    held = [e for label in sorted(by_class) for e in by_class[label][-per_class:]]
    return source.with_entries("train", keep), source.with_entries("test", held)


def image_extension(name: str) -> str | None:
    return IMAGE_EXTENSIONS.get(os.path.splitext(name)[1].lower())
