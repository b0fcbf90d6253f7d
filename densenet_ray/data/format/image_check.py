"""What the shard builder does with one source file: an RGB image is kept byte for byte, an image in another mode
(greyscale, palette, RGBA, CMYK, 16-bit) becomes RGB, and a file that is not an image or does not decode is
skipped. Every image is decoded once here, so a shard built from checked files holds no undecodable sample.

Modes become RGB as PIL's ``convert("RGB")`` does (what torchvision's ``ImageFolder`` loader does when it reads
them), except 16- and 32-bit integer greyscale, which PIL would clip at 255: those are scaled to 8 bits first.
Converted images are stored as PNG, so the conversion loses nothing more. An image whose header declares more
pixels than PIL allows (its decompression-bomb limit) does not decode, and neither does a file, as given or
converted, over the member limit every shard reader holds to
(:data:`~densenet_ray.data.format.tar_members.MAX_MEMBER_BYTES`).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import TYPE_CHECKING

from densenet_ray.data.format.tar_members import MAX_MEMBER_BYTES, size_problem

if TYPE_CHECKING:
    from PIL import Image

NOT_AN_IMAGE = "not an image"
UNREADABLE = "does not decode"
_WIDE_MODES = {"I", "I;16", "I;16B", "I;16L", "I;16N"}  # integer greyscale wider than 8 bits


@dataclass(frozen=True)
class CheckedImage:
    """An image ready for a shard: its bytes, their extension, its size and the mode it was converted from (empty
    when it was RGB already)."""

    data: bytes
    extension: str
    height: int
    width: int
    converted_from: str = ""


@dataclass(frozen=True)
class SkippedFile:
    """A source file left out of the shards, and why (:data:`NOT_AN_IMAGE` or :data:`UNREADABLE`, then PIL's words)."""

    name: str
    reason: str
    detail: str = ""

    def describe(self) -> str:
        return f"{self.name}: {self.reason}" + (f" ({self.detail})" if self.detail else "")


def check_image(data: bytes, extension: str) -> CheckedImage | tuple[str, str]:
    """The image as a shard stores it, or ``(reason, detail)`` when it is skipped. ``extension`` is empty for a
    file whose name is not an image's."""
    from PIL import Image, UnidentifiedImageError

    if not extension:
        return NOT_AN_IMAGE, ""
    if size_problem(len(data)):  # a shard member must stay within what every shard reader reads
        return UNREADABLE, _over_member_limit(len(data))
    try:
        with Image.open(io.BytesIO(data)) as opened:
            mode, size = opened.mode, opened.size
            if mode == "RGB" and opened.format == "JPEG":
                # DCT-domain scaling still decodes every coefficient (a cut-off file fails), for an eighth of the work.
                opened.draft("RGB", (max(1, size[0] // 8), max(1, size[1] // 8)))
            opened.load()
            converted = None if mode == "RGB" else _to_rgb(opened)
    except UnidentifiedImageError:
        return NOT_AN_IMAGE if data[:1] not in (b"\xff", b"\x89") else UNREADABLE, "no image format PIL knows"
    except Exception as error:  # PIL raises OSError, SyntaxError, ValueError... for damaged files
        return UNREADABLE, str(error).splitlines()[0][:120] if str(error) else type(error).__name__
    width, height = size
    if converted is None:
        return CheckedImage(data, extension, height, width)
    buffer = io.BytesIO()
    converted.save(buffer, format="PNG", compress_level=6)
    if size_problem(buffer.tell()):
        return UNREADABLE, _over_member_limit(buffer.tell()) + " as PNG"
    return CheckedImage(buffer.getvalue(), "png", height, width, mode)


def _over_member_limit(size: int) -> str:
    return f"{size:,} bytes, more than a shard member's {MAX_MEMBER_BYTES >> 20} MiB"


def over_pixel_limit(data: bytes) -> bool:
    """Whether the image's header declares more pixels than PIL allows (twice ``PIL.Image.MAX_IMAGE_PIXELS``, where
    ``Image.open`` raises ``DecompressionBombError``), read before any pixel is decoded. The one pixel limit for
    decoders without one (``torchvision.io``); bytes PIL cannot identify are left to the decoder."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)):
            return False
    except Image.DecompressionBombError:
        return True
    except Exception:  # not an image PIL knows, or a damaged header: the decoder judges it
        return False


def _to_rgb(image: Image.Image) -> Image.Image:
    import numpy as np
    from PIL import Image

    assert isinstance(image, Image.Image)
    if image.mode in _WIDE_MODES:
        wide = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or wide.max(initial=0) > 255 else 255.0
        image = Image.fromarray(np.clip(np.rint(wide * (255.0 / top)), 0, 255).astype(np.uint8))
    return image.convert("RGB")
