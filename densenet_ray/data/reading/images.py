"""Image files as users give them: files, directories, globs, and the images inside WebDataset ``.tar`` shards."""

from __future__ import annotations

import contextlib
import glob
import io
import os
import tarfile
from collections.abc import Callable, Iterator
from typing import Any

from densenet_ray.data.format.tar_members import check_member, refusal
from densenet_ray.errors import UserError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm")


def image_paths(arguments: list[str]) -> list[str]:
    """Files as given (a ``.tar`` shard as ``SHARD.tar/MEMBER`` for each image in it), a directory's image files
    (by suffix, sorted), a glob's matches; one line for what is none."""
    paths: list[str] = []
    for argument in arguments:
        if os.path.isdir(argument):
            found = sorted(entry.path for entry in os.scandir(argument) if entry.name.lower().endswith(IMAGE_SUFFIXES))
        elif os.path.isfile(argument) and argument.endswith(".tar"):
            with tarfile.open(argument) as shard:
                members = [m.name for m in shard.getmembers() if m.isfile() and m.name.lower().endswith(IMAGE_SUFFIXES)]
            found = [f"{argument}/{member}" for member in members]
        elif os.path.exists(argument) or os.path.isfile(argument.partition(".tar/")[0] + ".tar"):
            found = [argument]  # a file, or an image inside a shard as image_paths names it
        else:
            found = sorted(glob.glob(argument))
        if not found:
            raise UserError(f"{argument}: no such file, or a directory or glob without images")
        paths += found
    return paths


class RefusedMember(OSError):
    """An image inside a ``.tar`` left unread: a sparse member or one over the member limit; the message is one line
    naming the archive and the member."""


@contextlib.contextmanager
def image_opener() -> Iterator[Callable[[str], Any]]:
    """``open_image(path)``: an RGB ``PIL.Image`` of a file or of an image inside a ``.tar`` shard
    (``SHARD.tar/MEMBER``), each shard opened once and its member index read once; PIL's ``UnidentifiedImageError``
    (an ``OSError``) for a file that is not an image, its ``DecompressionBombError`` for one whose header declares
    more pixels than PIL's limit (before any pixel is decoded), :class:`RefusedMember` for a member not to read."""
    archives: dict[str, tarfile.TarFile] = {}
    with contextlib.ExitStack() as closing:

        def open_image(path: str) -> Any:
            shard, tar, member = path.partition(".tar/")
            source: Any = path
            if tar and not os.path.exists(path):
                if shard not in archives:
                    archives[shard] = closing.enter_context(tarfile.open(shard + ".tar"))  # noqa: SIM115
                info = archives[shard].getmember(member)
                check_member(info, shard + ".tar", RefusedMember)
                handle = archives[shard].extractfile(info)
                if handle is None:  # a directory or link of that name
                    raise RefusedMember(refusal(shard + ".tar", member, "is not a plain file"))
                source = io.BytesIO(handle.read())
            return decode_image(source)

        yield open_image


def decode_image(source: Any) -> Any:
    """An RGB ``PIL.Image`` of a file path or a binary stream (``io.BytesIO`` of an image's bytes); PIL's
    ``UnidentifiedImageError`` (an ``OSError``) for what is not an image, its ``DecompressionBombError`` from the
    header alone for an image of more pixels than its limit (``Image.open`` checks the size it reads)."""
    from PIL import Image

    with Image.open(source) as image:
        return image.convert("RGB")
