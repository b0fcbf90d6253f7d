"""Official-format dataset files made from the committed real CIFAR-10 slice (CIFAR tarball, SVHN .mat, ILSVRC)."""

from __future__ import annotations

import io
import pickle
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def fixture_images(fixture_tar: str) -> list[tuple[str, str, bytes]]:
    """``(class, file name, JPEG bytes)`` of every fixture image, sorted."""
    found = []
    with tarfile.open(fixture_tar) as archive:
        for member in archive.getmembers():
            if member.isfile():
                _, cls, name = member.name.split("/")
                found.append((cls, name, archive.extractfile(member).read()))
    return sorted(found)


def fixture_pixels(fixture_tar: str) -> tuple[np.ndarray, np.ndarray]:
    """Decoded uint8 NHWC pixels and labels of the fixture images."""
    images = fixture_images(fixture_tar)
    pixels = np.stack([np.asarray(Image.open(io.BytesIO(data)).convert("RGB")) for _, _, data in images])
    labels = np.array([CLASSES.index(cls) for cls, _, _ in images])
    return pixels, labels


def _write_pickles(path: Path, folder: str, members: dict[str, dict]) -> None:
    """A .tar.gz of pickled batch dicts under ``folder/``, as the official CIFAR python tarballs are laid out."""
    with tarfile.open(path, "w:gz") as archive:
        for name, content in members.items():
            data = pickle.dumps(content)
            info = tarfile.TarInfo(f"{folder}/{name}")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))


def write_cifar10_tarball(fixture_tar: str, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The official cifar-10-python.tar.gz layout: 5 train batches, a test batch, batches.meta (400 / 100)."""
    pixels, labels = fixture_pixels(fixture_tar)
    order = np.random.default_rng(0).permutation(len(labels))  # official batches are not class-sorted
    pixels, labels = pixels[order], labels[order]
    flat = pixels.transpose(0, 3, 1, 2).reshape(len(labels), -1)
    members = {"batches.meta": {b"label_names": [c.encode() for c in CLASSES]}}
    for i in range(5):
        part = slice(80 * i, 80 * (i + 1))
        members[f"data_batch_{i + 1}"] = {b"data": flat[part], b"labels": labels[part].tolist()}
    members["test_batch"] = {b"data": flat[400:], b"labels": labels[400:].tolist()}
    _write_pickles(path, "cifar-10-batches-py", members)
    return pixels, labels


def write_cifar100_tarball(fixture_tar: str, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The official cifar-100-python.tar.gz layout: train, test and meta with 100 fine label names (400 / 100)."""
    pixels, labels = fixture_pixels(fixture_tar)
    fine = labels * 10 + np.arange(len(labels)) % 10  # spread the 10 real classes over 100 fine labels
    flat = pixels.transpose(0, 3, 1, 2).reshape(len(labels), -1)
    members = {
        "meta": {b"fine_label_names": [f"class{i:02d}".encode() for i in range(100)]},
        "train": {b"data": flat[:400], b"fine_labels": fine[:400].tolist()},
        "test": {b"data": flat[400:], b"fine_labels": fine[400:].tolist()},
    }
    _write_pickles(path, "cifar-100-python", members)
    return pixels, fine


def write_svhn_mat(fixture_tar: str, directory: Path) -> np.ndarray:
    """``train_32x32.mat`` in the official layout: X (32, 32, 3, N), y (N, 1) with digit 0 labelled 10."""
    from scipy.io import savemat

    pixels, labels = fixture_pixels(fixture_tar)
    savemat(
        directory / "train_32x32.mat",
        {"X": pixels.transpose(1, 2, 3, 0), "y": np.where(labels == 0, 10, labels)[:, None]},
    )
    return labels


def write_ilsvrc_tar(fixture_tar: str, path: Path) -> None:
    """ILSVRC2012_img_train.tar's layout: one uncompressed tar per class holding that class's JPEGs."""
    by_class: dict[str, list[tuple[str, bytes]]] = {}
    for cls, name, data in fixture_images(fixture_tar):
        by_class.setdefault(cls, []).append((f"{cls}_{name}", data))
    with tarfile.open(path, "w") as outer:
        for cls, images in by_class.items():
            buffer = io.BytesIO()
            with tarfile.open(fileobj=buffer, mode="w") as inner:
                for name, data in images:
                    info = tarfile.TarInfo(name)
                    info.size = len(data)
                    inner.addfile(info, io.BytesIO(data))
            info = tarfile.TarInfo(f"{cls}.tar")
            info.size = len(buffer.getvalue())
            outer.addfile(info, io.BytesIO(buffer.getvalue()))
