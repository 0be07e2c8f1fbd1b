"""How many bytes native (uncompressed) pixel data takes, from the Image Pixel attributes (PS3.5 8.1.1)."""

from __future__ import annotations


def native_size(rows: int, columns: int, samples: int, bits_allocated: int, frames: int = 1,
                photometric: str = "") -> int:
    """Bytes of native pixel data for `frames` frames, before the pad byte to an even length.

    1-bit data is packed across frames; YBR_FULL_422 keeps two samples per pixel (two pixels share
    their chroma); other data takes whole bytes per sample.
    """
    if bits_allocated == 1:
        return (rows * columns * samples * frames + 7) // 8
    per_sample = (bits_allocated + 7) // 8
    if photometric == "YBR_FULL_422" and samples == 3:
        return rows * columns * 2 * per_sample * frames
    return rows * columns * samples * per_sample * frames


def native_size_formula(rows: int, columns: int, samples: int, bits_allocated: int, frames: int = 1,
                        photometric: str = "") -> str:
    """How `native_size` got its figure, for a message."""
    if bits_allocated == 1:
        return f"{rows} x {columns} x {frames} frames x {samples} samples / 8"
    per_sample = (bits_allocated + 7) // 8
    if photometric == "YBR_FULL_422" and samples == 3:
        return f"{rows} x {columns} x {frames} frames x 2 (YBR_FULL_422) x {per_sample} bytes"
    return f"{rows} x {columns} x {frames} frames x {samples} samples x {per_sample} bytes"


def padded(length: int) -> int:
    """A value's length on file: elements have even lengths."""
    return length + (length & 1)


def frame_span(index: int, rows: int, columns: int, samples: int, bits_allocated: int,
               photometric: str = "") -> tuple[int, int]:
    """(offset from the start of the pixel data, length) of native frame `index`: frames follow one
    another without padding. 1-bit frames need not start on a byte, so they have no byte span."""
    if bits_allocated == 1:
        raise ValueError("1-bit frames are packed across byte boundaries")
    length = native_size(rows, columns, samples, bits_allocated, 1, photometric)
    return index * length, length
