"""Real PNG files for the image fakes (zlib and struct only): small, valid, and distinct per
request, so a test can tell which upstream call produced which image."""

import hashlib
import struct
import zlib

SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png(width: int, height: int, seed: str = "") -> bytes:
    """A width x height RGB PNG filled with a colour derived from `seed`."""
    r, g, b = hashlib.sha256(seed.encode()).digest()[:3]
    row = b"\x00" + bytes((r, g, b)) * width  # filter type 0, then the pixels
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (SIGNATURE + _chunk(b"IHDR", header)
            + _chunk(b"IDAT", zlib.compress(row * height)) + _chunk(b"IEND", b""))


def size_of(data: bytes) -> tuple[int, int]:
    """(width, height) of a PNG; raises ValueError for anything that is not one."""
    if data[:8] != SIGNATURE or data[12:16] != b"IHDR":
        raise ValueError("not a PNG")
    return struct.unpack(">II", data[16:24])


def ratio_size(aspect_ratio: str, unit: int = 8) -> tuple[int, int]:
    """A small width x height with the proportions of "W:H" ("16:9" -> 128 x 72)."""
    w, h = (int(x) for x in aspect_ratio.split(":"))
    return w * unit, h * unit


def _chunk(kind: bytes, data: bytes) -> bytes:
    return (struct.pack(">I", len(data)) + kind + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
