"""Hostile bytes, made in the test: a tar member whose header declares far more than the archive holds (GNU sparse,
or a plain header over the member limit) and a PNG whose header declares 30000x30000 pixels, beside real
photographs from the committed CIFAR-10 slice."""

from __future__ import annotations

import io
import struct
import tarfile
import zlib

SPARSE_BYTES = 256 << 20  # what the sparse member declares: 256 MiB from a 1 KB member


def sparse_member(name: str, declared: int = SPARSE_BYTES) -> bytes:
    """A GNU sparse member (type ``S``) declaring ``declared`` bytes, one 512-byte block of them stored (the rest
    are holes, which :mod:`tarfile` hands out as zeros); its header and that block."""
    info = tarfile.TarInfo(name)
    info.size, info.type = tarfile.BLOCKSIZE, tarfile.GNUTYPE_SPARSE
    header = bytearray(info.tobuf(tarfile.GNU_FORMAT))
    header[386:398] = b"%011o\0" % (declared - tarfile.BLOCKSIZE)  # the stored block is the member's last
    header[398:410] = b"%011o\0" % tarfile.BLOCKSIZE
    header[483:495] = b"%011o\0" % declared  # the member's real size
    header[148:156] = b" " * 8  # the checksum counts its own field as spaces
    header[148:156] = b"%06o\0 " % sum(header)
    return bytes(header) + b"\xff" * tarfile.BLOCKSIZE


def oversized_member(name: str, declared: int) -> bytes:
    """A plain member header declaring ``declared`` bytes, followed by one block of them (the archive ends there)."""
    info = tarfile.TarInfo(name)
    info.size = declared
    return info.tobuf(tarfile.GNU_FORMAT) + b"\xff" * tarfile.BLOCKSIZE


def tar_of(members: list[tuple[str, bytes]], tail: bytes = b"") -> bytes:
    """A tar of ``members`` (name, bytes), then ``tail`` (raw member blocks) and the end-of-archive blocks."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.GNU_FORMAT) as archive:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    body = out.getvalue().rstrip(b"\0")
    body += b"\0" * (-len(body) % tarfile.BLOCKSIZE)
    return body + tail + b"\0" * (2 * tarfile.BLOCKSIZE)


def png_bomb(width: int = 30000, height: int = 30000) -> bytes:
    """A 69-byte PNG whose header declares ``width`` x ``height`` RGB pixels (2.7 GB decoded)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    )


def photos(fixture_tar: str, count: int) -> list[tuple[str, bytes]]:
    """``count`` photographs of the committed slice, each of another class: ``(class/file name, JPEG bytes)``."""
    found: dict[str, tuple[str, bytes]] = {}
    with tarfile.open(fixture_tar) as archive:
        for member in archive.getmembers():
            _, cls, name = (member.name.split("/") + ["", ""])[:3]
            if member.isfile() and cls not in found and len(found) < count:
                found[cls] = (f"{cls}/{name}", archive.extractfile(member).read())
    return list(found.values())
