"""Images labelled by a list: a CSV file with a path column and a label column, the images under a root directory
or S3 prefix (``data build csv``). One class name a row, or, with a label separator, several (multi-label; none is a
valid row there). ImageNet's validation layout, one flat folder and a label file, is one such list.

Python's ``csv`` module reads the list (quoted fields, any dialect ``csv.Sniffer`` recognises); the images are read
through :mod:`densenet_ray.data.storage`, so the root may be local or ``s3://``, and every listed file is checked to
exist before anything is written.
"""

from __future__ import annotations

import csv
import io

from densenet_ray.data.building.source_base import FileEntry, FileListSource, image_extension
from densenet_ray.data.format.label import Label
from densenet_ray.data.storage import Storage, StorageError, open_storage, split_url
from densenet_ray.errors import UserError

SHOWN_MISSING = 3  # missing files named in the error


class StorageListSource(FileListSource):
    """A :class:`FileListSource` whose entries are paths under a storage root (local or S3)."""

    def __init__(
        self, split: str, classes: list[str], location: str, entries: list[FileEntry], root: Storage, multi: bool
    ) -> None:
        super().__init__("csv", split, classes, location, entries)
        self.root, self.multi_label = root, multi

    def read(self, index: int) -> tuple[bytes, str, Label]:
        entry = self.entries[index]
        return self.root.read_bytes(entry.path), entry.extension, entry.label


def _read_rows(list_url: str, endpoint_url: str | None) -> tuple[list[dict[str, str]], list[str]]:
    parent, name = split_url(list_url)
    try:
        text = open_storage(parent, endpoint_url).read_bytes(name).decode("utf-8-sig")
    except StorageError as error:
        raise UserError(f"--source {list_url}: {error}") from None
    try:
        dialect: type[csv.Dialect] | csv.Dialect = csv.Sniffer().sniff(text[:4096], delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    reader = csv.DictReader(io.StringIO(text), dialect=dialect)
    rows = list(reader)
    return rows, list(reader.fieldnames or [])


def _labels(rows: list[dict[str, str]], column: str, separator: str | None, where: str) -> list[list[str]]:
    labels = []
    for number, row in enumerate(rows, start=2):  # line 1 is the header
        cell = (row.get(column) or "").strip()
        names = [part.strip() for part in cell.split(separator)] if separator else [cell]
        names = [name for name in names if name]
        if not separator and not names:
            raise UserError(f"{where} line {number} has no {column!r}; every image needs a class")
        labels.append(names)
    return labels


def _check_present(root: Storage, paths: list[str], where: str) -> None:
    """Every listed file exists: one listing of an S3 prefix, or a stat per local file."""
    if root.url.startswith("s3://"):
        present = {info.name for info in root.list()}
        missing = [path for path in paths if path not in present]
    else:
        missing = [path for path in paths if not root.exists(path)]
    if missing:
        shown = ", ".join(missing[:SHOWN_MISSING]) + (", ..." if len(missing) > SHOWN_MISSING else "")
        raise UserError(f"{where} names {len(missing)} file(s) missing under {root.url} ({shown})")


def list_source(
    list_url: str,
    root: str,
    path_column: str = "path",
    label_column: str = "label",
    separator: str | None = None,
    split: str = "train",
    classes: list[str] | None = None,
    endpoint_url: str | None = None,
) -> StorageListSource:
    """The images ``list_url`` names (relative to ``root``) with their labels. ``separator`` splits a label cell
    into several classes (multi-label); ``classes`` fixes the class list and its order (a training split's, so a
    test list lacking a class keeps the same indices); by default the sorted names found."""
    rows, columns = _read_rows(list_url, endpoint_url)
    for flag, column in (("--path-column", path_column), ("--label-column", label_column)):
        if column not in columns:
            raise UserError(f"{flag} {column!r} is not a column of {list_url}; its columns: {', '.join(columns)}")
    if not rows:
        raise UserError(f"{list_url} lists no images")
    labels = _labels(rows, label_column, separator, list_url)
    found = sorted({name for names in labels for name in names})
    chosen = list(classes) if classes else found
    unknown = sorted(set(found) - set(chosen))
    if unknown:
        raise UserError(f"{list_url} has classes the given class list lacks: {', '.join(unknown[:5])}")
    if len(chosen) < 2:
        raise UserError(f"{list_url} has {len(chosen)} class; a classifier needs at least two")
    index = {name: position for position, name in enumerate(chosen)}
    storage = open_storage(root, endpoint_url)
    paths = [row[path_column].strip().lstrip("/") for row in rows]
    _check_present(storage, paths, list_url)
    entries = []
    for path, names in zip(paths, labels, strict=True):
        label: Label = tuple(sorted(index[name] for name in names)) if separator else index[names[0]]
        entries.append(FileEntry(path, -1, 0, image_extension(path) or "", label, path))
    source = StorageListSource(split, chosen, list_url, entries, storage, multi=bool(separator))
    source.every_class_present = not classes  # a given class list may name classes this list lacks
    return source
