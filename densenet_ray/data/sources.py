"""Raw datasets the shard builder reads: CIFAR python tarballs, SVHN ``.mat`` files and class-folder images.

Every source is a random-access, picklable list of samples (so ranges of it can be sharded in parallel tasks):
``len(source)`` samples, ``source.read(i)`` gives ``(image bytes, extension, class index)``. Files are opened
lazily in each process. Samples are ordered by class name, then file name; class indices follow the sorted class
names (for CIFAR and SVHN, the official label order).
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import tarfile
import urllib.request
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from densenet_ray.errors import UserError

IMAGE_EXTENSIONS = {".jpg": "jpg", ".jpeg": "jpg", ".png": "png", ".bmp": "bmp", ".webp": "webp"}

# Official download locations and the MD5 checksums published with them (the CIFAR page lists the CIFAR ones; the
# SVHN ones are those torchvision's dataset classes check).
DOWNLOADS = {
    "cifar10": [("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a")],
    "cifar100": [("https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz", "eb9058c3a382ffc7106e4002c42a8d85")],
    "svhn": [
        ("http://ufldl.stanford.edu/housenumbers/train_32x32.mat", "e26dedcc434d2e4c54c9b2d4a06d8373"),
        ("http://ufldl.stanford.edu/housenumbers/test_32x32.mat", "eb5a983be6a315427106f1b164d9cef3"),
        ("http://ufldl.stanford.edu/housenumbers/extra_32x32.mat", "a93ce644f1a588dc4d68dda5feec44a7"),
    ],
}
DATASETS = ("cifar10", "cifar100", "svhn", "imagefolder")


class Source(ABC):
    """A split of a raw dataset, read sample by sample."""

    def __init__(self, dataset: str, split: str, classes: list[str], location: str) -> None:
        self.dataset, self.split, self.classes, self.location = dataset, split, classes, location

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def read(self, index: int) -> tuple[bytes, str, int]:
        """``(image bytes, extension, class index)`` of sample ``index``."""


def _encode_png(pixels: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    # Lossless, and deterministic for a given zlib: rebuilding gives byte-identical shards.
    Image.fromarray(pixels).save(buffer, format="PNG", compress_level=6)
    return buffer.getvalue()


class ArraySource(Source):
    """Raw uint8 HWC pixels in memory (CIFAR, SVHN), stored losslessly as PNG."""

    def __init__(self, dataset: str, split: str, classes: list[str], location: str, loader: Any) -> None:
        super().__init__(dataset, split, classes, location)
        self._loader = loader  # picklable callable returning (pixels NHWC uint8, labels)
        self._arrays: tuple[np.ndarray, np.ndarray] | None = None

    def _data(self) -> tuple[np.ndarray, np.ndarray]:
        if self._arrays is None:
            self._arrays = self._loader()
        return self._arrays

    def __len__(self) -> int:
        return len(self._data()[1])

    def read(self, index: int) -> tuple[bytes, str, int]:
        pixels, labels = self._data()
        return _encode_png(pixels[index]), "png", int(labels[index])

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_arrays": None}


@dataclass(frozen=True)
class _CifarLoader:
    tarball: str
    members: tuple[str, ...]
    label_key: bytes

    def __call__(self) -> tuple[np.ndarray, np.ndarray]:
        images, labels = [], []
        with tarfile.open(self.tarball) as archive:
            names = {Path(m.name).name: m for m in archive.getmembers()}
            for member in self.members:
                batch = pickle.load(archive.extractfile(names[member]), encoding="bytes")  # noqa: S301 - official data
                images.append(np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
                labels.append(np.asarray(batch[self.label_key], dtype=np.int64))
        return np.ascontiguousarray(np.concatenate(images)), np.concatenate(labels)


def cifar_source(dataset: str, tarball: str, split: str) -> ArraySource:
    """CIFAR-10/100 from the official python tarball; ``split`` is ``train`` or ``test``."""
    if split not in ("train", "test"):
        raise UserError(f"split {split!r} is not in {dataset}; choose train or test")
    if not tarfile.is_tarfile(tarball):
        raise UserError(f"{tarball} is not a tar archive (expected the official {dataset} python tarball)")
    ten = dataset == "cifar10"
    with tarfile.open(tarball) as archive:
        names = {Path(m.name).name: m for m in archive.getmembers() if m.isfile()}
        meta_name = "batches.meta" if ten else "meta"
        if meta_name not in names:
            raise UserError(f"{tarball} has no {meta_name}: it is not the official {dataset} python tarball")
        meta = pickle.load(archive.extractfile(names[meta_name]), encoding="bytes")  # noqa: S301 - official data
    classes = [name.decode() for name in meta[b"label_names" if ten else b"fine_label_names"]]
    if ten:
        members = tuple(f"data_batch_{i}" for i in range(1, 6)) if split == "train" else ("test_batch",)
    else:
        members = (split,)
    missing = [m for m in members if m not in names]
    if missing:
        raise UserError(f"{tarball} lacks {', '.join(missing)}: it is not the official {dataset} python tarball")
    loader = _CifarLoader(tarball, members, b"labels" if ten else b"fine_labels")
    return ArraySource(dataset, split, classes, tarball, loader)


@dataclass(frozen=True)
class _SvhnLoader:
    path: str

    def __call__(self) -> tuple[np.ndarray, np.ndarray]:
        from scipy.io import loadmat

        data = loadmat(self.path)
        pixels = np.ascontiguousarray(np.asarray(data["X"], dtype=np.uint8).transpose(3, 0, 1, 2))
        labels = np.asarray(data["y"], dtype=np.int64).reshape(-1) % 10  # the .mat files label digit 0 as 10
        return pixels, labels


def svhn_source(directory: str, split: str) -> ArraySource:
    """SVHN from the official cropped-digit ``{split}_32x32.mat`` files; ``split`` is train, test or extra."""
    if split not in ("train", "test", "extra"):
        raise UserError(f"split {split!r} is not in svhn; choose train, test or extra")
    path = os.path.join(directory, f"{split}_32x32.mat") if os.path.isdir(directory) else directory
    if not os.path.isfile(path):
        raise UserError(f"{path} does not exist (expected the official SVHN {split}_32x32.mat)")
    return ArraySource("svhn", split, [str(d) for d in range(10)], path, _SvhnLoader(path))


@dataclass(frozen=True)
class _Entry:
    """Where one image's bytes are: a file, or a byte range of a (possibly nested) tar."""

    path: str
    offset: int
    size: int
    extension: str
    label: int


class FileListSource(Source):
    """Images listed up front as files or tar byte ranges (class-folder directories and tars)."""

    def __init__(self, dataset: str, split: str, classes: list[str], location: str, entries: list[_Entry]) -> None:
        super().__init__(dataset, split, classes, location)
        self.entries = entries
        self._handles: dict[str, Any] = {}

    def __len__(self) -> int:
        return len(self.entries)

    def read(self, index: int) -> tuple[bytes, str, int]:
        entry = self.entries[index]
        if entry.offset < 0:
            with open(entry.path, "rb") as handle:
                return handle.read(), entry.extension, entry.label
        handle = self._handles.get(entry.path)
        if handle is None:
            handle = self._handles[entry.path] = open(entry.path, "rb")  # noqa: SIM115 - kept open across reads
        handle.seek(entry.offset)
        return handle.read(entry.size), entry.extension, entry.label

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_handles": {}}


def split_holdout(source: FileListSource, per_class: int) -> tuple[FileListSource, FileListSource]:
    """``(train, test)``: the last ``per_class`` images of every class (in file-name order) become ``test``."""
    if per_class < 1:
        raise UserError(f"--holdout-per-class {per_class} must be positive")
    by_class: dict[int, list[_Entry]] = {}
    for entry in source.entries:
        by_class.setdefault(entry.label, []).append(entry)
    short = [source.classes[label] for label, entries in by_class.items() if len(entries) <= per_class]
    if short:
        raise UserError(f"--holdout-per-class {per_class} leaves no training images for class(es) {', '.join(short)}")
    keep = [e for label in sorted(by_class) for e in by_class[label][:-per_class]]
    held = [e for label in sorted(by_class) for e in by_class[label][-per_class:]]
    train = FileListSource(source.dataset, "train", source.classes, source.location, keep)
    test = FileListSource(source.dataset, "test", source.classes, source.location, held)
    return train, test


def _image_extension(name: str) -> str | None:
    return IMAGE_EXTENSIONS.get(os.path.splitext(name)[1].lower())


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
    """Class-folder images from a directory, a ``.tar``, or an ILSVRC2012-style tar of per-class tars."""
    if os.path.isdir(location):
        found = []
        for directory, _, files in os.walk(location):
            for file in files:
                extension = _image_extension(file)
                if extension:
                    relative = os.path.relpath(os.path.join(directory, file), location)
                    found.append((tuple(relative.split(os.sep)), extension, -1, os.path.join(directory, file)))
    elif os.path.isfile(location) and tarfile.is_tarfile(location):
        found = _tar_images(location)
    else:
        raise UserError(f"{location} is neither a directory nor a tar archive of class folders")
    if not found:
        raise UserError(f"{location} contains no images ({', '.join(sorted(IMAGE_EXTENSIONS))})")
    split_folder, labelled = _class_layout([item[0] for item in found])
    classes = sorted({cls for cls, _ in labelled})
    index = {cls: i for i, cls in enumerate(classes)}
    entries = []
    for (cls, path), (_, extension, offset_size, file_path) in zip(labelled, found, strict=True):
        offset, size = offset_size if offset_size != -1 else (-1, 0)
        entries.append((cls, path, _Entry(file_path, offset, size, extension, index[cls])))
    entries.sort(key=lambda item: (item[0], item[1]))
    return FileListSource(
        "imagefolder", split or split_folder or "train", classes, location, [entry for _, _, entry in entries]
    )


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
                        extension = _image_extension(image.name) if image.isfile() else None
                        if extension:
                            span = (member.offset_data + image.offset_data, image.size)
                            found.append(((cls, Path(image.name).name), extension, span, location))
            return found
        for member in members:
            extension = _image_extension(member.name)
            if extension:
                parts = tuple(part for part in member.name.split("/") if part not in ("", "."))
                found.append((parts, extension, (member.offset_data, member.size), location))
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


def download(dataset: str, cache_dir: str) -> list[str]:
    """Download ``dataset``'s official files into ``cache_dir`` (once), verifying the published MD5."""
    os.makedirs(cache_dir, exist_ok=True)
    paths = []
    for url, md5 in DOWNLOADS[dataset]:
        path = os.path.join(cache_dir, url.rsplit("/", 1)[1])
        if not (os.path.isfile(path) and _md5(path) == md5):
            partial = path + ".part"
            try:
                with urllib.request.urlopen(url, timeout=60) as response, open(partial, "wb") as out:  # noqa: S310
                    while chunk := response.read(1 << 20):
                        out.write(chunk)
            except OSError as error:
                raise UserError(f"cannot download {url} ({error}); pass --source with a local copy") from None
            actual = _md5(partial)
            if actual != md5:
                os.unlink(partial)
                raise UserError(f"{url} has MD5 {actual}, not the published {md5}; the download is corrupt")
            os.replace(partial, path)
        paths.append(path)
    return paths


def _md5(path: str) -> str:
    digest = hashlib.md5()  # noqa: S324 - the published checksums are MD5
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def open_source(dataset: str, source: str | None, split: str | None, cache_dir: str) -> Source:
    """The :class:`Source` for ``densenet-ray data build DATASET [--source SRC] [--split NAME]``."""
    if dataset not in DATASETS:
        raise UserError(f"unknown dataset {dataset!r}; choose one of: {', '.join(DATASETS)}")
    if dataset == "imagefolder":
        if not source:
            raise UserError("imagefolder needs --source (a class-folder directory or .tar)")
        return imagefolder_source(source, split)
    if source is None:
        files = download(dataset, cache_dir)
        source = files[0] if dataset != "svhn" else os.path.dirname(files[0])
    if not os.path.exists(source):
        raise UserError(f"--source {source} does not exist")
    if dataset == "svhn":
        return svhn_source(source, split or "train")
    return cifar_source(dataset, source, split or "train")
