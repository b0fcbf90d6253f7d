"""A user's own image folder made of real CIFAR-10 photographs: a few classes upscaled to 96 pixels, stored as a
mix of JPEG and PNG files in the modes people's folders hold (greyscale, palette, RGBA, CMYK, 16-bit), plus a
corrupt JPEG and a text file among them."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from tests.data.sources_fixtures import fixture_images

OWN_CLASSES = ["airplane", "automobile", "bird", "cat", "deer"]
# One image of each class is stored in another mode: (mode, format) in class order.
ODD_MODES = [("L", "JPEG"), ("P", "PNG"), ("RGBA", "PNG"), ("CMYK", "JPEG"), ("I;16", "PNG")]


def _odd_image(image: Image.Image, mode: str) -> Image.Image:
    if mode == "I;16":  # 16-bit greyscale, as scanners and medical images write it
        grey = np.asarray(image.convert("L"), dtype=np.uint16) * 257
        return Image.fromarray(grey)
    return image.convert(mode)


def write_own_folder(fixture_tar: str, root: Path, per_class: int = 20, size: int = 96) -> Path:
    """``root/<class>/<name>`` for the first ``per_class`` images of each of :data:`OWN_CLASSES`, upscaled to
    ``size`` pixels: even images JPEG, odd ones PNG, the first of each class in one of :data:`ODD_MODES`; the
    folder also holds ``cat/broken.jpg`` (not decodable) and ``bird/notes.txt``. Returns ``root``."""
    counts: dict[str, int] = {}
    for cls, name, data in fixture_images(fixture_tar):
        if cls not in OWN_CLASSES or counts.get(cls, 0) >= per_class:
            continue
        index = counts[cls] = counts.get(cls, 0) + 1
        image = Image.open(io.BytesIO(data)).convert("RGB").resize((size, size), Image.Resampling.BICUBIC)
        folder = root / cls
        folder.mkdir(parents=True, exist_ok=True)
        stem = Path(name).stem
        if index == 1:
            mode, form = ODD_MODES[OWN_CLASSES.index(cls)]
            _odd_image(image, mode).save(folder / f"{stem}.{'jpg' if form == 'JPEG' else 'png'}", format=form)
        elif index % 2:
            image.save(folder / f"{stem}.png", format="PNG")
        else:
            image.save(folder / f"{stem}.jpg", format="JPEG", quality=92)
    (root / "cat" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this file was cut off")
    (root / "bird" / "notes.txt").write_text("labelled by hand, batch 3\n")
    return root


def write_pairs_list(fixture_tar: str, root: Path, count: int = 40, separator: str = "|") -> Path:
    """A multi-label set of real photographs: ``count`` 64x64 images, each two CIFAR-10 images on the diagonal of a
    2x2 grid (the rest black), labelled with both their classes (one when both are of the same class); listed in
    ``root/labels.csv`` (``file,findings``) with the images in ``root/images/``. Returns the list's path."""
    images = fixture_images(fixture_tar)
    (root / "images").mkdir(parents=True, exist_ok=True)
    lines = ["file,findings"]
    for index in range(count):
        first, second = images[(7 * index) % len(images)], images[(13 * index + 5) % len(images)]
        grid = Image.new("RGB", (64, 64))
        grid.paste(Image.open(io.BytesIO(first[2])).convert("RGB"), (0, 0))
        grid.paste(Image.open(io.BytesIO(second[2])).convert("RGB"), (32, 32))
        grid.save(root / "images" / f"pair{index:03d}.png")
        lines.append(f"pair{index:03d}.png,{separator.join(sorted({first[0], second[0]}))}")
    (root / "labels.csv").write_text("\n".join(lines) + "\n")
    return root / "labels.csv"


# Where the i-th photograph of a class goes below its class folder, as people sort photographs by year and month.
# torchvision sorts the folders' paths as strings, so 2024-06 comes before 2024/05 (and the test checks that order).
NESTED_FOLDERS = ("", "2024", "2024/05", "2024-06")


def write_nested_classes(fixture_tar: str, root: Path, classes: list[str], per_class: int, start: int = 0) -> Path:
    """``root/<class>/[<folder>/]<name>``: the fixture's photographs ``start`` to ``start + per_class`` of each of
    ``classes``, byte for byte, the i-th in ``NESTED_FOLDERS[i % 4]`` below its class folder. Returns ``root``."""
    images = fixture_images(fixture_tar)
    for cls in classes:
        photographs = [(name, data) for found, name, data in images if found == cls]
        for index, (name, data) in enumerate(photographs[start : start + per_class]):
            folder = root / cls / NESTED_FOLDERS[index % len(NESTED_FOLDERS)]
            folder.mkdir(parents=True, exist_ok=True)
            (folder / name).write_bytes(data)
    return root
