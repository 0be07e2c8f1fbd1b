"""Linking viewports through the patient: the frame nearest a position, reference lines where one
image plane cuts another, and the 3D cursor. Pure geometry on image planes (LPS mm)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence

import numpy as np

from workstation.core.dicom.geometry import ImagePlane
from workstation.core.model.display_set import FrameRef

PARALLEL = float(np.cos(np.radians(10.0)))
"""Planes within 10 degrees of each other are parallel enough to scroll together, and draw no line."""


def centre(plane: ImagePlane) -> np.ndarray:
    """The patient position of the image's centre."""
    return plane.pixel_to_patient((plane.rows - 1) / 2, (plane.columns - 1) / 2)


_GEOMETRY: OrderedDict[int, tuple[Sequence[FrameRef], np.ndarray, np.ndarray, np.ndarray]] = OrderedDict()
_LOCK = threading.Lock()


def _geometry(frames: Sequence[FrameRef]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(indices of the frames with a plane, their positions (n, 3), their normals (n, 3)), made once per
    frames tuple: linked scrolling asks of every viewport at every step."""
    key = id(frames)
    with _LOCK:
        hit = _GEOMETRY.get(key)
        if hit is not None and hit[0] is frames:
            _GEOMETRY.move_to_end(key)
            return hit[1:]
    indices = [i for i, f in enumerate(frames) if f.plane is not None]
    positions = np.array([frames[i].plane.position for i in indices], float).reshape(-1, 3)
    normals = np.array([frames[i].plane.normal for i in indices], float).reshape(-1, 3)
    made = (np.array(indices, int), positions, normals)
    with _LOCK:
        _GEOMETRY[key] = (frames, *made)   # the tuple is kept, so its id names it while cached
        while len(_GEOMETRY) > 64:
            _GEOMETRY.popitem(last=False)
    return made


def spacing_along(frames: Sequence[FrameRef]) -> float:
    """The median distance between neighbouring frames along their normal (mm), 0 for one frame."""
    _, positions, normals = _geometry(frames)
    if len(positions) < 2:
        return 0.0
    along = np.sort(positions @ normals[0])
    steps = np.diff(along)
    steps = steps[steps > 1e-6]
    return float(np.median(steps)) if steps.size else 0.0


def nearest_frame(frames: Sequence[FrameRef], point: np.ndarray, normal: np.ndarray | None = None,
                  tolerance: float | None = None) -> int | None:
    """The index of the frame whose plane lies nearest `point` (LPS mm), for frames parallel to `normal`
    (any orientation when None). None when no frame has a parallel plane, or when the nearest is
    farther than `tolerance` mm (default: one slice spacing or thickness, whichever is larger, so a
    point beyond either end of the stack does not drag it to its last image)."""
    indices, positions, normals = _geometry(frames)
    if not len(indices):
        return None
    distances = np.abs(np.einsum("ij,ij->i", np.asarray(point, float) - positions, normals))
    if normal is not None:
        distances[np.abs(normals @ np.asarray(normal, float)) < PARALLEL] = np.inf
    k = int(np.argmin(distances))
    if not np.isfinite(distances[k]):
        return None
    best = int(indices[k])
    if tolerance is None:
        thickness = frames[best].SliceThickness or 0.0
        tolerance = max(spacing_along(frames), thickness, 1e-3)
    return best if distances[k] <= tolerance else None


def reference_line(source: ImagePlane, target: ImagePlane) -> tuple[tuple[float, float], tuple[float, float]] | None:
    """Where the `source` image cuts the `target` plane, as a segment in the target's image coordinates
    ((column, row) pixel units, pixel centres at whole numbers), clipped to both images; None when
    the planes are (nearly) parallel or the source image does not reach the target plane."""
    if abs(float(source.normal @ target.normal)) >= PARALLEL:
        return None
    corners = _corners(source)
    signed = [float((c - target.position) @ target.normal) for c in corners]
    points = []
    for i in range(4):
        a, b = corners[i], corners[(i + 1) % 4]
        da, db = signed[i], signed[(i + 1) % 4]
        if da == 0.0:
            points.append(a)
        if (da < 0 < db) or (db < 0 < da):
            points.append(a + (b - a) * (da / (da - db)))
    if len(points) < 2:
        return None
    # the two points farthest apart (a corner on the plane can be counted twice)
    p, q = max(((p, q) for i, p in enumerate(points) for q in points[i + 1:]),
               key=lambda pq: float(np.linalg.norm(pq[0] - pq[1])))
    a, b = to_image(target, p), to_image(target, q)
    return _clip(a, b, target.columns, target.rows)


def _corners(plane: ImagePlane) -> list[np.ndarray]:
    """The image's outer corners (pixel edges, not centres) in patient coordinates, in order round."""
    r0, c0, r1, c1 = -0.5, -0.5, plane.rows - 0.5, plane.columns - 0.5
    return [plane.pixel_to_patient(r, c) for r, c in ((r0, c0), (r0, c1), (r1, c1), (r1, c0))]


def to_image(plane: ImagePlane, point: np.ndarray) -> tuple[float, float]:
    """(column, row) of a patient point projected on the plane."""
    row, column, _ = plane.patient_to_pixel(point)
    return column, row


def _clip(a: tuple[float, float], b: tuple[float, float], columns: int, rows: int):
    """Liang-Barsky clipping of segment a-b to the image's extent [-0.5, n - 0.5]."""
    (x0, y0), (x1, y1) = a, b
    dx, dy = x1 - x0, y1 - y0
    t0, t1 = 0.0, 1.0
    for p, q in ((-dx, x0 + 0.5), (dx, columns - 0.5 - x0), (-dy, y0 + 0.5), (dy, rows - 0.5 - y0)):
        if p == 0:
            if q < 0:
                return None
            continue
        t = q / p
        if p < 0:
            t0 = max(t0, t)
        else:
            t1 = min(t1, t)
        if t0 > t1:
            return None
    return (x0 + t0 * dx, y0 + t0 * dy), (x0 + t1 * dx, y0 + t1 * dy)
