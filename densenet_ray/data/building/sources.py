"""Raw datasets the shard builder reads: CIFAR python tarballs, SVHN ``.mat`` files and class-folder images.

Every source is a random-access, picklable list of samples (so ranges of it can be sharded in parallel tasks):
``len(source)`` samples, ``source.read(i)`` gives ``(image bytes, extension, class index)``. Files are opened
lazily in each process. Samples are ordered by class name, then folder and file name (torchvision ``ImageFolder``'s
order); class indices follow the sorted class names (for CIFAR and SVHN, the official label order).
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import tarfile
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from densenet_ray.data.building.folder_source import imagefolder_source, imagefolder_sources
from densenet_ray.data.building.source_base import FileListSource, Source, split_holdout
from densenet_ray.errors import UserError

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
DATASETS = ("cifar10", "cifar100", "svhn", "imagefolder", "csv")  # csv: data/building/list_source.py


def _encode_png(pixels: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    # Lossless, and deterministic for a given zlib: rebuilding gives byte-identical shards.
    Image.fromarray(pixels).save(buffer, format="PNG", compress_level=6)
    return buffer.getvalue()


class ArraySource(Source):
    """Raw uint8 HWC pixels in memory (CIFAR, SVHN), stored losslessly as PNG."""

    def __init__(
        self,
        dataset: str,
        split: str,
        classes: list[str],
        location: str,
        loader: Callable[[], tuple[np.ndarray, np.ndarray]],
    ) -> None:
        super().__init__(dataset, split, classes, location)
        self._loader = loader  # picklable: returns (pixels NHWC uint8, labels)
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


# What the official CIFAR python pickles name (and numpy's own pickles of such arrays, up to protocol 4): an array's
# reconstruction, its class and its dtype. A pickle may name any function to call as it loads, so the batch files are
# read by an unpickler that refuses every other name before calling it (rather than trusting a published MD5, which
# a local copy repacked, or a subset like the test suite's, would not match).
CIFAR_PICKLE_NAMES = {("numpy._core.multiarray", "_reconstruct"), ("numpy", "ndarray"), ("numpy", "dtype")}


class _CifarUnpickler(pickle.Unpickler):
    """An unpickler for CIFAR batch files: dicts of bytes, lists and uint8 arrays, nothing that runs code."""

    def __init__(self, handle: IO[bytes], label: str) -> None:
        super().__init__(handle, encoding="bytes")  # the files are Python 2 pickles: keep their strings as bytes
        self.label = label

    def find_class(self, module: str, name: str) -> Any:
        modern = module.replace("numpy.core.", "numpy._core.", 1)  # numpy 2 renamed the package older files name
        if (modern, name) not in CIFAR_PICKLE_NAMES:
            raise UserError(
                f"{self.label} is not plain CIFAR data: unpickling it would call {module}.{name}; refused (use the "
                "official python tarball)"
            )
        return super().find_class(modern, name)


def _read_cifar_pickle(archive: tarfile.TarFile, member: tarfile.TarInfo, tarball: str) -> Any:
    label = f"{tarball}: {Path(member.name).name}"
    try:
        handle = archive.extractfile(member)
        if handle is None:  # not a regular file: no pickle to read
            raise TypeError(f"{member.name} is not a regular file")
        return _CifarUnpickler(handle, label).load()
    except UserError:
        raise
    except (pickle.UnpicklingError, EOFError, KeyError, ValueError, TypeError) as error:  # a corrupt pickle
        raise UserError(f"{label} is not a CIFAR python pickle ({type(error).__name__})") from None


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
                batch = _read_cifar_pickle(archive, names[member], self.tarball)
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
        meta = _read_cifar_pickle(archive, names[meta_name], tarball)
    classes = [name.decode() for name in meta[b"label_names" if ten else b"fine_label_names"]]
    if ten:
        members = tuple(f"data_batch_{i}" for i in range(1, 6)) if split == "train" else ("test_batch",)
    else:
        members = (split,)
    missing = [m for m in members if m not in names]
    if missing:
        raise UserError(f"{tarball} lacks {', '.join(missing)}: it is not the official {dataset} python tarball")
    loader = _CifarLoader(tarball, members, b"labels" if ten else b"fine_labels")
    source = ArraySource(dataset, split, classes, tarball, loader)
    source._data()  # read and checked here, so a bad batch is one line before a build shows progress (it reads them)
    return source


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


def open_source(dataset: str, source: str | None, split: str | None, cache_dir: str, layout: str = "auto") -> Source:
    """The :class:`Source` for ``densenet-ray data build DATASET [--source SRC] [--split NAME] [--layout L]``
    (``layout``: imagefolder's, see :func:`imagefolder_source`)."""
    if dataset not in DATASETS:
        raise UserError(f"unknown dataset {dataset!r}; choose one of: {', '.join(DATASETS)}")
    if dataset == "imagefolder":
        if not source:
            raise UserError("imagefolder needs --source (a class-folder directory or .tar)")
        return imagefolder_source(source, split, layout)
    if source is None:
        files = download(dataset, cache_dir)
        source = files[0] if dataset != "svhn" else os.path.dirname(files[0])
    if not os.path.exists(source):
        raise UserError(f"--source {source} does not exist")
    if dataset == "svhn":
        return svhn_source(source, split or "train")
    return cifar_source(dataset, source, split or "train")


__all__ = [
    "DATASETS",
    "FileListSource",
    "Source",
    "cifar_source",
    "imagefolder_source",
    "imagefolder_sources",
    "open_source",
    "split_holdout",
    "svhn_source",
]
