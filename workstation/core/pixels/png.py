"""Minimal PNG writer (stdlib zlib, no Pillow) and a PGM/PPM reader for comparing with DCMTK's output."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np


def _chunk(kind: bytes, data: bytes) -> bytes:
    return (
        struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    )


def write_png(path: str | Path, array: np.ndarray) -> None:
    """Write uint8 (H, W) greyscale or (H, W, 3) RGB exactly as given: no scaling, no resizing."""
    arr = np.asarray(array)
    if arr.dtype != np.uint8:
        raise ValueError(f"write_png needs uint8 pixels, got {arr.dtype}")
    if arr.ndim == 2:
        colour_type = 0
    elif arr.ndim == 3 and arr.shape[2] == 3:
        colour_type = 2
    else:
        raise ValueError(f"write_png needs (H, W) or (H, W, 3), got {arr.shape}")
    height, width = arr.shape[:2]
    if height == 0 or width == 0:
        raise ValueError("write_png cannot write an empty image")
    rows = np.ascontiguousarray(arr).reshape(height, -1)
    raw = np.zeros((height, rows.shape[1] + 1), dtype=np.uint8)
    raw[:, 1:] = rows
    header = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    data = (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(raw.tobytes(), 6))
        + _chunk(b"IEND", b"")
    )
    Path(path).write_bytes(data)


def _tokens(buf: bytes, count: int) -> tuple[list[int], int]:
    """Read `count` whitespace-separated header integers, skipping '#' comments; return them and the offset."""
    values: list[int] = []
    pos = 2
    while len(values) < count:
        while buf[pos : pos + 1].isspace():
            pos += 1
        if buf[pos : pos + 1] == b"#":
            pos = buf.index(b"\n", pos) + 1
            continue
        start = pos
        while pos < len(buf) and buf[pos : pos + 1].isdigit():
            pos += 1
        if start == pos:
            raise ValueError("malformed PNM header")
        values.append(int(buf[start:pos]))
    return values, pos + 1


def read_pnm(path: str | Path) -> np.ndarray:
    """Read binary PGM (P5) or PPM (P6), 8 or 16 bit (16-bit samples are big-endian by the Netpbm spec)."""
    buf = Path(path).read_bytes()
    magic = buf[:2]
    if magic not in (b"P5", b"P6"):
        raise ValueError(f"{path}: not a binary PGM/PPM (magic {magic!r})")
    (width, height, maxval), offset = _tokens(buf, 3)
    channels = 3 if magic == b"P6" else 1
    dtype = np.dtype(">u2") if maxval > 255 else np.dtype(np.uint8)
    count = width * height * channels
    arr = np.frombuffer(buf, dtype=dtype, count=count, offset=offset)
    arr = arr.astype(np.uint16 if maxval > 255 else np.uint8)
    return arr.reshape((height, width, 3) if channels == 3 else (height, width))
