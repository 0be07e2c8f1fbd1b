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


def frame_rate(ds) -> float | None:
    """Frames per second a multi-frame object is meant to be played at, from Frame Time (ms per frame),
    Frame Time Vector, Cine Rate or Recommended Display Frame Rate (PS3.3 C.7.6.5), else None.
    `ds` answers `get(keyword)` (a Dataset or a `Values`)."""
    def number(keyword: str) -> float | None:
        value = ds.get(keyword)
        if isinstance(value, list | tuple) or hasattr(value, "__iter__") and not isinstance(value, str | bytes):
            value = list(value)
            value = value[0] if len(value) == 1 else None
        try:
            value = float(value)
        except (TypeError, ValueError):
            return None
        return value if value > 0 else None

    frame_time = number("FrameTime")
    if frame_time:
        return 1000.0 / frame_time
    vector = ds.get("FrameTimeVector")
    try:
        times = [float(v) for v in vector][1:] if vector is not None and not isinstance(vector, str | bytes) else []
    except (TypeError, ValueError):
        times = []
    if times and all(t > 0 for t in times):
        return 1000.0 * len(times) / sum(times)
    return number("CineRate") or number("RecommendedDisplayFrameRate")


def frame_span(index: int, rows: int, columns: int, samples: int, bits_allocated: int,
               photometric: str = "") -> tuple[int, int]:
    """(offset from the start of the pixel data, length) of native frame `index`: frames follow one
    another without padding. 1-bit frames need not start on a byte, so they have no byte span."""
    if bits_allocated == 1:
        raise ValueError("1-bit frames are packed across byte boundaries")
    length = native_size(rows, columns, samples, bits_allocated, 1, photometric)
    return index * length, length
