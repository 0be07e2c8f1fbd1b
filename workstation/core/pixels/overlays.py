"""Overlay planes (PS3.3 C.9.2 Overlay Plane, C.9.3 Multi-frame Overlay): groups 6000-601E, each a 1-bit
picture over the image, in Overlay Data (60xx,3000) or, in older files, in a bit of Pixel Data that
Bits Stored leaves unused.

`frame_overlays` gives the planes that apply to one image frame as `Overlay` records in their own
size and place; the viewer paints them as a layer, `burn_overlays` burns them into an 8-bit buffer
for export and print.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydicom.overlays import get_overlay_array
from pydicom.pixels.utils import unpack_bits

log = logging.getLogger(__name__)

GROUPS = tuple(range(0x6000, 0x6020, 2))
"""The 16 overlay groups the standard allows (odd groups are private)."""

_ROWS, _COLUMNS, _FRAMES, _DESCRIPTION, _TYPE = 0x0010, 0x0011, 0x0015, 0x0022, 0x0040
_ORIGIN, _FRAME_ORIGIN, _BITS_ALLOCATED, _BIT_POSITION, _LABEL, _DATA = 0x0050, 0x0051, 0x0100, 0x0102, 0x1500, 0x3000


@dataclass(frozen=True, eq=False)
class Overlay:
    """One overlay plane as it applies to one image frame."""

    group: int
    """0x6000, 0x6002, ... 0x601E."""
    bitmap: np.ndarray
    """bool (Overlay Rows, Overlay Columns), read-only: True where the overlay is drawn."""
    row: int
    """Image row (0-based) of bitmap[0, 0]: Overlay Origin's row - 1; negative above the image."""
    column: int
    """Image column (0-based) of bitmap[0, 0]: Overlay Origin's column - 1; negative left of the image."""
    type: str
    """Overlay Type: "G" (graphics) or "R" (region of interest)."""
    label: str
    """Overlay Label (60xx,1500), "" when absent."""
    description: str
    """Overlay Description (60xx,0022), "" when absent."""

    @property
    def nbytes(self) -> int:
        return int(self.bitmap.nbytes)


def _value(ds: Any, group: int, element: int) -> Any:
    elem = ds.get((group, element))
    return None if elem is None else elem.value


def _number(ds: Any, group: int, element: int, default: int | None = None, index: int = 0) -> int | None:
    value = _value(ds, group, element)
    if value is not None and not isinstance(value, str | bytes) and hasattr(value, "__getitem__"):
        value = value[index] if len(value) > index else None
    try:
        return int(value) if value not in (None, "") else default
    except (TypeError, ValueError):
        return default


def _text(ds: Any, group: int, element: int) -> str:
    value = _value(ds, group, element)
    return "" if value is None else str(value).strip()


def overlay_groups(ds: Any) -> list[int]:
    """The overlay groups present (those with Overlay Rows, which every overlay plane must have)."""
    return [group for group in GROUPS if (group, _ROWS) in ds]


def in_pixel_data(ds: Any, group: int) -> bool:
    """True for a plane kept in an unused bit of Pixel Data (retired, but older files have them): no
    Overlay Data and Overlay Bits Allocated above 1."""
    return (group, _DATA) not in ds and (_number(ds, group, _BITS_ALLOCATED, 1) or 1) > 1


def embedded(ds: Any) -> bool:
    """Whether any overlay plane sits in Pixel Data (its bits must be read before Bits Stored masks them)."""
    return any(in_pixel_data(ds, group) for group in overlay_groups(ds))


def overlay_frame(ds: Any, group: int, frame: int) -> int | None:
    """Which frame of the overlay applies to image frame `frame` (0-based), or None: overlay frame k
    applies to image frame Image Frame Origin - 1 + k (C.9.3), Image Frame Origin 1 when absent."""
    frames = max(1, _number(ds, group, _FRAMES, 1) or 1)
    first = (_number(ds, group, _FRAME_ORIGIN, 1) or 1) - 1
    k = frame - first
    return k if 0 <= k < frames else None


def _bitmap_from_data(ds: Any, group: int, k: int, rows: int, columns: int) -> np.ndarray:
    frames = max(1, _number(ds, group, _FRAMES, 1) or 1)
    if frames == 1:
        return get_overlay_array(ds, group).reshape(rows, columns).astype(bool)
    # One frame of a multi-frame overlay: unpack only its bits (frame k starts at bit k x rows x columns).
    data = _value(ds, group, _DATA)
    per_frame = rows * columns
    first_bit = k * per_frame
    need = (first_bit + per_frame + 7) // 8
    if data is None or len(data) < need:
        raise ValueError(f"Overlay Data holds {0 if data is None else len(data)} bytes, {need} needed")
    start = first_bit // 8
    bits = unpack_bits(bytes(data[start:need]))
    offset = first_bit - start * 8
    return bits[offset:offset + per_frame].reshape(rows, columns).astype(bool)


def _bitmap_from_pixels(ds: Any, group: int, unmasked: np.ndarray | None, rows: int, columns: int) -> np.ndarray:
    if unmasked is None:
        raise ValueError("the frame's unmasked pixel values are needed")
    if unmasked.shape[:2] != (rows, columns):
        raise ValueError(f"{rows} x {columns} in Pixel Data of {unmasked.shape[0]} x {unmasked.shape[1]}")
    position = _number(ds, group, _BIT_POSITION, 0) or 0
    if not 0 <= position < unmasked.dtype.itemsize * 8:
        raise ValueError(f"Overlay Bit Position {position} is outside the pixel's {unmasked.dtype.itemsize * 8} bits")
    raw = unmasked.view(unmasked.dtype.str.replace("i", "u"))
    return ((raw >> position) & 1).astype(bool)


def frame_overlays(ds: Any, frame: int = 0, unmasked: np.ndarray | None = None) -> list[Overlay]:
    """The overlay planes that apply to image frame `frame` (0-based). `unmasked` is that frame's stored
    values before Bits Stored was applied, needed only when a plane sits in Pixel Data (`embedded`).
    A plane that cannot be read is left out (and logged): the image is still shown."""
    out = []
    for group in overlay_groups(ds):
        k = overlay_frame(ds, group, frame)
        if k is None:
            continue
        rows, columns = _number(ds, group, _ROWS), _number(ds, group, _COLUMNS)
        try:
            if not rows or not columns or rows < 0 or columns < 0:
                raise ValueError(f"Overlay Rows x Columns is {rows} x {columns}")
            if in_pixel_data(ds, group):
                bitmap = _bitmap_from_pixels(ds, group, unmasked, rows, columns)
            else:
                bitmap = _bitmap_from_data(ds, group, k, rows, columns)
        except Exception as exc:
            log.warning("overlay %04X left out: %s", group, exc)
            continue
        bitmap.flags.writeable = False
        kind = _text(ds, group, _TYPE).upper()
        out.append(Overlay(
            group=group,
            bitmap=bitmap,
            row=(_number(ds, group, _ORIGIN, 1, 0) or 1) - 1,
            column=(_number(ds, group, _ORIGIN, 1, 1) or 1) - 1,
            type=kind if kind in ("G", "R") else "G",
            label=_text(ds, group, _LABEL),
            description=_text(ds, group, _DESCRIPTION),
        ))
    return out


def overlay_mask(shape: tuple[int, int], overlays: list[Overlay]) -> np.ndarray:
    """bool (rows, columns) of the image: True where any of `overlays` is drawn (clipped to the image)."""
    mask = np.zeros(shape, dtype=bool)
    rows, columns = shape
    for overlay in overlays:
        r0, c0 = overlay.row, overlay.column
        r1, c1 = r0 + overlay.bitmap.shape[0], c0 + overlay.bitmap.shape[1]
        top, left, bottom, right = max(r0, 0), max(c0, 0), min(r1, rows), min(c1, columns)
        if top < bottom and left < right:
            mask[top:bottom, left:right] |= overlay.bitmap[top - r0:bottom - r0, left - c0:right - c0]
    return mask


def burn_overlays(buffer: np.ndarray, overlays: list[Overlay], value: int = 255) -> np.ndarray:
    """A copy of an 8-bit display buffer ((H, W) grey or (H, W, 3) RGB) with the overlays' pixels set to
    `value` (every channel of a colour buffer), as for export and print."""
    out = np.array(buffer, dtype=np.uint8, copy=True)
    if overlays:
        out[overlay_mask(out.shape[:2], overlays)] = value
    return out
