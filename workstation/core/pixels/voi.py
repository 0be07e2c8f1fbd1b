"""VOI transformation (PS3.3 C.11.2): window centre/width and VOI LUT Sequence to 8-bit display values.

Everything here is a pure numpy function so the renderer can build a small lookup table once per
window and re-map a whole frame with one ``numpy.take``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FUNCTIONS = ("LINEAR", "LINEAR_EXACT", "SIGMOID")


@dataclass(frozen=True)
class Window:
    """One window centre/width pair with its VOI LUT Function (C.11.2.1.2)."""

    center: float
    width: float
    function: str = "LINEAR"
    explanation: str = ""

    def __post_init__(self) -> None:
        if self.function not in FUNCTIONS:
            raise ValueError(f"unknown VOI LUT Function {self.function!r}; expected one of {FUNCTIONS}")


@dataclass(frozen=True)
class VoiLut:
    """One item of the VOI LUT Sequence: LUT Descriptor (entries, first mapped, bits) and LUT Data."""

    first_mapped: int
    bits: int
    data: np.ndarray
    explanation: str = ""

    def to_uint8(self, values: np.ndarray) -> np.ndarray:
        """Values below/above the table take the first/last entry (C.11.2.1.1); output scaled by 2^bits."""
        idx = np.clip(
            np.rint(np.asarray(values, dtype=np.float64) - self.first_mapped), 0, len(self.data) - 1
        )
        out = self.data[idx.astype(np.intp)].astype(np.float64)
        top = float((1 << self.bits) - 1) if self.bits > 0 else float(self.data.max() or 1)
        return np.clip(np.rint(out * (255.0 / top)), 0, 255).astype(np.uint8)


def window_values(x: np.ndarray, window: Window, ymin: float = 0.0, ymax: float = 255.0) -> np.ndarray:
    """The exact float output of C.11.2.1.2.1 (LINEAR), C.11.2.1.3.2 (LINEAR_EXACT) or C.11.2.1.3.1 (SIGMOID)."""
    x = np.asarray(x, dtype=np.float64)
    c, w = float(window.center), float(window.width)
    if window.function == "SIGMOID":
        w = max(w, np.finfo(np.float64).tiny)
        with np.errstate(over="ignore"):
            return (ymax - ymin) / (1.0 + np.exp(-4.0 * (x - c) / w)) + ymin
    if window.function == "LINEAR_EXACT":
        w = max(w, np.finfo(np.float64).tiny)
        y = ((x - c) / w + 0.5) * (ymax - ymin) + ymin
        y = np.where(x <= c - w / 2, ymin, y)
        return np.where(x > c + w / 2, ymax, y)
    w = max(w, 1.0)
    lo = c - 0.5 - (w - 1) / 2
    hi = c - 0.5 + (w - 1) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        y = ((x - (c - 0.5)) / (w - 1) + 0.5) * (ymax - ymin) + ymin if w > 1 else np.full_like(x, ymax)
    y = np.where(x <= lo, ymin, y)
    return np.where(x > hi, ymax, y)


def window_to_uint8(x: np.ndarray, window: Window, invert: bool = False) -> np.ndarray:
    """Window any array of modality values to uint8 0..255 (rounded), optionally inverted for display."""
    y = np.clip(np.rint(window_values(x, window)), 0, 255).astype(np.uint8)
    if invert:
        np.subtract(255, y, out=y)
    return y


def window_to_bits(x: np.ndarray, window: Window, bits: int, invert: bool = False) -> np.ndarray:
    """Window modality values to 0..2^bits-1 (rounded) as uint16: a 12-bit P-value image for film."""
    top = float((1 << bits) - 1)
    y = np.clip(np.rint(window_values(x, window, 0.0, top)), 0, top).astype(np.uint16)
    if invert:
        np.subtract(np.uint16(top), y, out=y)
    return y


def voi_lut_uint8(values_min: int, values_max: int, window: Window, invert: bool) -> np.ndarray:
    """A uint8 table for the integer inputs values_min..values_max: entry i is input values_min + i."""
    if values_max < values_min:
        raise ValueError("values_max must not be below values_min")
    return window_to_uint8(np.arange(values_min, values_max + 1, dtype=np.float64), window, invert)


def full_range_window(vmin: float, vmax: float) -> Window:
    """The min-max window; for integers it is Suppl. 33's 'centre 2^n-1, width 2^n' that maps min..max to 0..255."""
    if float(vmin).is_integer() and float(vmax).is_integer():
        return Window((vmin + vmax + 1) / 2, vmax - vmin + 1, "LINEAR", "full range")
    width = max(vmax - vmin, 1e-6)
    return Window((vmin + vmax) / 2, width, "LINEAR_EXACT", "full range")
