"""Display shutters (PS3.3 C.7.6.11 Display Shutter Module; the Frame Display Shutter functional group of
enhanced objects): up to three shapes, RECTANGULAR, CIRCULAR and POLYGONAL, combined so that the least
of the image stays visible; outside it the image shows the Shutter Presentation Value's grey.

Coordinates are the standard's: rows and columns from 1\\1 at the centre of the upper left pixel; the
left and right vertical edges are columns, the upper and lower horizontal edges rows. A pixel shows
when its centre lies inside (or on the border of) every shape. The Bitmap Display Shutter (an overlay
used as a shutter) belongs to presentation states and is not read here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from workstation.core.dicom.geometry import frame_item

SHAPES = ("RECTANGULAR", "CIRCULAR", "POLYGONAL")


@dataclass(frozen=True)
class Shutter:
    """A frame's display shutter, in the standard's 1-based row/column coordinates."""

    shapes: tuple[str, ...]
    """Those of RECTANGULAR, CIRCULAR, POLYGONAL that are given with valid coordinates."""
    rectangle: tuple[int, int, int, int] | None = None
    """(left column, right column, upper row, lower row), edges included."""
    circle: tuple[int, int, int] | None = None
    """(centre row, centre column, radius in pixels)."""
    polygon: tuple[tuple[int, int], ...] | None = None
    """Vertices as (row, column); the polygon closes from the last back to the first."""
    presentation_value: int | None = None
    """Shutter Presentation Value, a P-value 0..65535 (0 black, 65535 white); None when absent."""

    @property
    def grey(self) -> int:
        """The 8-bit grey of the shuttered area: the P-value scaled to 0..255, black without one."""
        if self.presentation_value is None:
            return 0
        return int(round(self.presentation_value * 255 / 65535))


def _ints(value: Any) -> list[int] | None:
    if value is None:
        return None
    if isinstance(value, str | bytes) or not hasattr(value, "__iter__"):
        value = [value]
    try:
        return [int(v) for v in value]
    except (TypeError, ValueError):
        return None


def _container(ds: Any, frame: int) -> Any:
    """Where the frame's shutter attributes are: its Frame Display Shutter item, else the top level."""
    item = frame_item(ds, frame, "FrameDisplayShutterSequence")
    return item if item is not None and item.get("ShutterShape") is not None else ds


def read_shutter(ds: Any, frame: int = 0) -> Shutter | None:
    """The display shutter of frame `frame`, or None when there is none (or none with usable coordinates)."""
    source = _container(ds, frame)
    shape = source.get("ShutterShape")
    if shape is None:
        return None
    named = {str(s).strip().upper() for s in ([shape] if isinstance(shape, str) else shape)}
    rectangle = circle = polygon = None
    if "RECTANGULAR" in named:
        edges = [_ints(source.get(k)) for k in ("ShutterLeftVerticalEdge", "ShutterRightVerticalEdge",
                                                "ShutterUpperHorizontalEdge", "ShutterLowerHorizontalEdge")]
        if all(e is not None and len(e) == 1 for e in edges):
            rectangle = tuple(e[0] for e in edges)
    if "CIRCULAR" in named:
        centre, radius = _ints(source.get("CenterOfCircularShutter")), _ints(source.get("RadiusOfCircularShutter"))
        if centre is not None and len(centre) == 2 and radius is not None and len(radius) == 1 and radius[0] >= 0:
            circle = (centre[0], centre[1], radius[0])
    if "POLYGONAL" in named:
        vertices = _ints(source.get("VerticesOfThePolygonalShutter"))
        if vertices is not None and len(vertices) >= 6 and len(vertices) % 2 == 0:
            polygon = tuple(zip(vertices[0::2], vertices[1::2], strict=True))
    shapes = tuple(name for name, given in zip(SHAPES, (rectangle, circle, polygon), strict=True) if given)
    if not shapes:
        return None
    value = _ints(source.get("ShutterPresentationValue"))
    if value is None or len(value) != 1:   # the functional group item may leave it to the top level
        value = _ints(ds.get("ShutterPresentationValue"))
    presentation = value[0] if value is not None and len(value) == 1 and 0 <= value[0] <= 0xFFFF else None
    return Shutter(shapes, rectangle, circle, polygon, presentation)


def _polygon_mask(rows: np.ndarray, columns: np.ndarray, vertices: tuple[tuple[int, int], ...]) -> np.ndarray:
    """Pixel centres inside the polygon by the even-odd rule, or on its border."""
    inside = np.zeros(np.broadcast(rows, columns).shape, dtype=bool)
    border = np.zeros_like(inside)
    count = len(vertices)
    for i in range(count):
        (r0, c0), (r1, c1) = vertices[i], vertices[(i + 1) % count]
        # A horizontal ray to the right from each centre crosses edge i when the centre's row lies
        # in [min, max) of the edge's rows and the crossing column is right of the centre.
        if r0 != r1:
            spans = (rows >= min(r0, r1)) & (rows < max(r0, r1))
            crossing = c0 + (rows - r0) * (c1 - c0) / (r1 - r0)
            inside ^= spans & (columns < crossing)
        cross = (r1 - r0) * (columns - c0) - (c1 - c0) * (rows - r0)
        within = (np.minimum(r0, r1) <= rows) & (rows <= np.maximum(r0, r1)) & \
                 (np.minimum(c0, c1) <= columns) & (columns <= np.maximum(c0, c1))
        border |= (cross == 0) & within
    return inside | border


def shutter_mask(shape: tuple[int, int], shutter: Shutter | None) -> np.ndarray:
    """bool (rows, columns): True where the image shows through the shutter (everywhere without one)."""
    visible = np.ones(shape, dtype=bool)
    if shutter is None:
        return visible
    rows = np.arange(1, shape[0] + 1, dtype=np.int64)[:, None]      # 1-based pixel centres
    columns = np.arange(1, shape[1] + 1, dtype=np.int64)[None, :]
    if shutter.rectangle is not None:
        left, right, upper, lower = shutter.rectangle
        visible &= (columns >= left) & (columns <= right) & (rows >= upper) & (rows <= lower)
    if shutter.circle is not None:
        r, c, radius = shutter.circle
        visible &= (rows - r) ** 2 + (columns - c) ** 2 <= radius * radius
    if shutter.polygon is not None:
        # Only the polygon's bounding box can show; the crossing test runs there alone.
        r_lo, r_hi = (min(v[0] for v in shutter.polygon), max(v[0] for v in shutter.polygon))
        c_lo, c_hi = (min(v[1] for v in shutter.polygon), max(v[1] for v in shutter.polygon))
        top, bottom = max(r_lo, 1), min(r_hi, shape[0])
        left, right = max(c_lo, 1), min(c_hi, shape[1])
        inside = np.zeros(shape, dtype=bool)
        if top <= bottom and left <= right:
            inside[top - 1:bottom, left - 1:right] = _polygon_mask(
                rows[top - 1:bottom], columns[:, left - 1:right], shutter.polygon)
        visible &= inside
    return visible
