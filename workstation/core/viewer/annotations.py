"""Measurements and marks drawn on images, and what they measure. Qt-free.

An annotation belongs to the frame it was drawn on (SOP Instance UID and frame number). Its points
are kept in that image's pixel coordinates (column, row; pixel centres at whole numbers) and, when
the frame has a plane, in patient coordinates (LPS mm) with its Frame of Reference, so that other
views of the same patient space (MPR planes) can show it too. Lengths and areas use the frame's
pixel spacing; ROI statistics are over the pixels whose centres lie inside the shape, in modality
units (HU for CT), with the population standard deviation (numpy's default, ddof=0).
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from workstation.core.dicom.geometry import ImagePlane
from workstation.core.events import Event

KINDS = ("length", "angle", "cobb", "rectangle", "ellipse", "freehand", "arrow", "text")
POINTS = {"length": 2, "angle": 3, "cobb": 4, "rectangle": 2, "ellipse": 2, "arrow": 2, "text": 1}
"""Points each kind is made of; a freehand outline has three or more."""
ROI_KINDS = frozenset({"rectangle", "ellipse", "freehand"})

Point = tuple[float, float]


@dataclass(frozen=True)
class Annotation:
    uid: str
    kind: str
    StudyInstanceUID: str
    SeriesInstanceUID: str
    SOPInstanceUID: str
    frame: int
    points: tuple[Point, ...]
    patient_points: tuple[tuple[float, float, float], ...] | None = None
    FrameOfReferenceUID: str = ""
    text: str = ""
    created: float = field(default=0.0, compare=False)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown annotation kind {self.kind!r}")

    def with_points(self, points: Sequence[Point], plane: ImagePlane | None) -> Annotation:
        points = tuple((float(c), float(r)) for c, r in points)
        return replace(self, points=points, patient_points=_patient(points, plane))

    def moved(self, dc: float, dr: float, plane: ImagePlane | None) -> Annotation:
        return self.with_points([(c + dc, r + dr) for c, r in self.points], plane)

    def to_json(self) -> dict:
        return {"uid": self.uid, "kind": self.kind, "StudyInstanceUID": self.StudyInstanceUID,
                "SeriesInstanceUID": self.SeriesInstanceUID, "SOPInstanceUID": self.SOPInstanceUID,
                "frame": self.frame, "points": [list(p) for p in self.points],
                "patient_points": [list(p) for p in self.patient_points] if self.patient_points else None,
                "FrameOfReferenceUID": self.FrameOfReferenceUID, "text": self.text, "created": self.created}

    @classmethod
    def from_json(cls, doc: dict) -> Annotation:
        patient = doc.get("patient_points")
        return cls(str(doc["uid"]), str(doc["kind"]), str(doc.get("StudyInstanceUID", "")),
                   str(doc.get("SeriesInstanceUID", "")), str(doc["SOPInstanceUID"]), int(doc.get("frame", 0)),
                   tuple((float(c), float(r)) for c, r in doc["points"]),
                   tuple(tuple(float(v) for v in p) for p in patient) if patient else None,
                   str(doc.get("FrameOfReferenceUID", "")), str(doc.get("text", "")), float(doc.get("created", 0.0)))


def new_annotation(kind: str, points: Sequence[Point], *, study_uid: str, series_uid: str, sop_uid: str,
                   frame: int, plane: ImagePlane | None, frame_of_reference: str = "", text: str = "") -> Annotation:
    points = tuple((float(c), float(r)) for c, r in points)
    return Annotation(uuid.uuid4().hex, kind, study_uid, series_uid, sop_uid, frame, points,
                      _patient(points, plane), frame_of_reference, text, time.time())


def _patient(points: Sequence[Point], plane: ImagePlane | None):
    if plane is None:
        return None
    return tuple(tuple(float(v) for v in plane.pixel_to_patient(r, c)) for c, r in points)


# --- what they measure ------------------------------------------------------------------------


@dataclass(frozen=True)
class RoiStats:
    pixels: int
    mean: float
    std: float
    min: float
    max: float


@dataclass(frozen=True)
class Measurement:
    value: float | None = None          # length (mm or px), angle (degrees) or area (mm² or px²)
    unit: str = ""
    stats: RoiStats | None = None
    lines: tuple[str, ...] = ()         # what is written beside the drawing


def length(p: Point, q: Point, spacing: tuple[float, float] | None) -> float:
    """Distance between two image points: mm with (row, column) spacing, pixels without."""
    sr, sc = spacing or (1.0, 1.0)
    return math.hypot((q[0] - p[0]) * sc, (q[1] - p[1]) * sr)


def angle(a: Point, vertex: Point, b: Point, spacing: tuple[float, float] | None = None) -> float:
    """The angle at `vertex` between the rays to a and b, in degrees (0..180), in millimetre space."""
    sr, sc = spacing or (1.0, 1.0)
    u = np.array([(a[0] - vertex[0]) * sc, (a[1] - vertex[1]) * sr])
    v = np.array([(b[0] - vertex[0]) * sc, (b[1] - vertex[1]) * sr])
    nu, nv = np.linalg.norm(u), np.linalg.norm(v)
    if nu == 0 or nv == 0:
        return 0.0
    return float(np.degrees(np.arccos(np.clip(u @ v / (nu * nv), -1.0, 1.0))))


def cobb(p1: Point, p2: Point, p3: Point, p4: Point, spacing: tuple[float, float] | None = None) -> float:
    """Cobb angle between line p1-p2 and line p3-p4: the acute angle between the lines (0..90)."""
    sr, sc = spacing or (1.0, 1.0)
    u = np.array([(p2[0] - p1[0]) * sc, (p2[1] - p1[1]) * sr])
    v = np.array([(p4[0] - p3[0]) * sc, (p4[1] - p3[1]) * sr])
    nu, nv = np.linalg.norm(u), np.linalg.norm(v)
    if nu == 0 or nv == 0:
        return 0.0
    a = float(np.degrees(np.arccos(np.clip(abs(u @ v) / (nu * nv), 0.0, 1.0))))
    return a


def roi_mask(kind: str, points: Sequence[Point], shape: tuple[int, int]) -> np.ndarray:
    """True for the pixels (rows x columns) whose centres lie inside the shape (edges included)."""
    rows, columns = shape
    if kind == "freehand":
        return _polygon_mask(points, shape)
    (c0, r0), (c1, r1) = points[0], points[1]
    lo_c, hi_c, lo_r, hi_r = min(c0, c1), max(c0, c1), min(r0, r1), max(r0, r1)
    cs = np.arange(columns)[None, :]
    rs = np.arange(rows)[:, None]
    if kind == "rectangle":
        return (cs >= lo_c) & (cs <= hi_c) & (rs >= lo_r) & (rs <= hi_r)
    if kind == "ellipse":
        cc, rc = (lo_c + hi_c) / 2, (lo_r + hi_r) / 2
        a, b = (hi_c - lo_c) / 2, (hi_r - lo_r) / 2
        if a <= 0 or b <= 0:
            return np.zeros(shape, bool)
        return ((cs - cc) / a) ** 2 + ((rs - rc) / b) ** 2 <= 1.0
    raise ValueError(f"{kind} is not a region")


def _polygon_mask(points: Sequence[Point], shape: tuple[int, int]) -> np.ndarray:
    """Even-odd rule over pixel centres, computed row by row (scanline crossings)."""
    rows, columns = shape
    mask = np.zeros(shape, bool)
    if len(points) < 3:
        return mask
    pts = np.asarray(points, float)
    xs, ys = pts[:, 0], pts[:, 1]
    x2, y2 = np.roll(xs, -1), np.roll(ys, -1)
    top, bottom = max(0, int(math.ceil(ys.min()))), min(rows - 1, int(math.floor(ys.max())))
    cs = np.arange(columns)
    for r in range(top, bottom + 1):
        crosses = (ys <= r) != (y2 <= r)
        if not crosses.any():
            continue
        x_at = xs[crosses] + (r - ys[crosses]) * (x2[crosses] - xs[crosses]) / (y2[crosses] - ys[crosses])
        inside = (cs[:, None] > x_at[None, :]).sum(axis=1) % 2 == 1
        mask[r] = inside
    return mask


def area(kind: str, points: Sequence[Point], spacing: tuple[float, float] | None) -> float:
    """The shape's geometric area: mm² with spacing, pixels² without."""
    sr, sc = spacing or (1.0, 1.0)
    if kind == "freehand":
        pts = np.asarray(points, float)
        x, y = pts[:, 0] * sc, pts[:, 1] * sr
        return float(abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) / 2)
    (c0, r0), (c1, r1) = points[0], points[1]
    w, h = abs(c1 - c0) * sc, abs(r1 - r0) * sr
    return w * h if kind == "rectangle" else math.pi * w * h / 4


def roi_stats(values: np.ndarray) -> RoiStats | None:
    values = np.asarray(values, float)
    if values.size == 0:
        return None
    return RoiStats(int(values.size), float(values.mean()), float(values.std()), float(values.min()), float(values.max()))


def measure(annotation: Annotation, spacing: tuple[float, float] | None, renderer=None, unit: str = "",
            distance_unit: str | None = None) -> Measurement:
    """What an annotation measures on its frame: `spacing` (row, column) in mm or None (pixels);
    `renderer` (the frame's FrameRenderer) for ROI statistics; `unit` of the modality values;
    `distance_unit` names lengths when "mm" would not say enough (e.g. "mm at the detector")."""
    pts, kind = annotation.points, annotation.kind
    distance_unit = distance_unit or ("mm" if spacing else "px")
    if kind == "length" and len(pts) >= 2:
        value = length(pts[0], pts[1], spacing)
        return Measurement(value, distance_unit, lines=(f"{value:.1f} {distance_unit}",))
    if kind == "angle" and len(pts) >= 3:
        value = angle(pts[0], pts[1], pts[2], spacing)
        return Measurement(value, "°", lines=(f"{value:.1f}°",))
    if kind == "cobb" and len(pts) >= 4:
        value = cobb(*pts[:4], spacing)
        return Measurement(value, "°", lines=(f"Cobb {value:.1f}°",))
    if kind in ROI_KINDS and len(pts) >= (3 if kind == "freehand" else 2):
        value = area(kind, pts, spacing)
        lines = [f"Area {value / 100:.2f} cm²{distance_unit[2:]}" if spacing else f"Area {value:.0f} px²"]
        stats = None
        if renderer is not None and not renderer.is_color:
            stats = roi_stats(renderer.modality_values(roi_mask(kind, pts, renderer.shape)))
            if stats is not None:
                u = f" {unit}" if unit else ""
                lines.append(f"Mean {stats.mean:.1f}{u}  SD {stats.std:.1f}")
                lines.append(f"Min {stats.min:.0f}  Max {stats.max:.0f}  ({stats.pixels} px)")
        return Measurement(value, "mm²" if spacing else "px²", stats, tuple(lines))
    if kind == "text":
        return Measurement(lines=(annotation.text,) if annotation.text else ())
    return Measurement()


# --- picking ----------------------------------------------------------------------------------


def hit(annotation: Annotation, point: Point, tolerance: float) -> int | str | None:
    """What of an annotation lies under an image point: a handle's index, "body" for its outline or
    inside, else None. `tolerance` is in image pixels (a few screen pixels at the current zoom)."""
    pts = annotation.points
    for i, p in enumerate(pts):
        if math.hypot(point[0] - p[0], point[1] - p[1]) <= tolerance:
            return i
    kind = annotation.kind
    if kind in ("rectangle", "ellipse") and len(pts) >= 2:
        (c0, r0), (c1, r1) = pts[0], pts[1]
        if min(c0, c1) - tolerance <= point[0] <= max(c0, c1) + tolerance and \
                min(r0, r1) - tolerance <= point[1] <= max(r0, r1) + tolerance:
            return "body"
        return None
    segments = list(zip(pts, pts[1:], strict=False))
    if kind == "freehand" and len(pts) > 2:
        segments.append((pts[-1], pts[0]))
    if kind == "angle":
        segments = [(pts[0], pts[1]), (pts[1], pts[2])] if len(pts) >= 3 else segments
    if kind == "cobb" and len(pts) >= 4:
        segments = [(pts[0], pts[1]), (pts[2], pts[3])]
    for a, b in segments:
        if _distance_to_segment(point, a, b) <= tolerance:
            return "body"
    return None


def _distance_to_segment(p: Point, a: Point, b: Point) -> float:
    ax, ay = a
    dx, dy = b[0] - ax, b[1] - ay
    if dx == dy == 0:
        return math.hypot(p[0] - ax, p[1] - ay)
    t = max(0.0, min(1.0, ((p[0] - ax) * dx + (p[1] - ay) * dy) / (dx * dx + dy * dy)))
    return math.hypot(p[0] - ax - t * dx, p[1] - ay - t * dy)


# --- the set of a session's annotations, with undo ---------------------------------------------


class AnnotationStore:
    """Every annotation of the studies open, with undo and redo. `changed(study_uid)` after each change;
    `dirty` holds the studies whose annotations must be saved."""

    def __init__(self) -> None:
        self.changed = Event()
        self._items: dict[str, Annotation] = {}
        self._undo: list[tuple[Annotation | None, Annotation | None]] = []
        self._redo: list[tuple[Annotation | None, Annotation | None]] = []
        self.dirty: set[str] = set()

    def load(self, study_uid: str, documents: Sequence[dict]) -> int:
        """Put a study's saved annotations in (not undoable); documents that cannot be read are skipped."""
        count = 0
        for doc in documents:
            try:
                a = Annotation.from_json(doc)
            except (KeyError, TypeError, ValueError):
                continue
            self._items[a.uid] = a
            count += 1
        self.changed.emit(study_uid)
        return count

    def get(self, uid: str) -> Annotation | None:
        return self._items.get(uid)

    def for_frame(self, sop_uid: str, frame: int) -> list[Annotation]:
        return [a for a in self._items.values() if a.SOPInstanceUID == sop_uid and a.frame == frame]

    def for_study(self, study_uid: str) -> list[Annotation]:
        return sorted((a for a in self._items.values() if a.StudyInstanceUID == study_uid), key=lambda a: a.created)

    def documents(self, study_uid: str) -> list[dict]:
        return [a.to_json() for a in self.for_study(study_uid)]

    def add(self, annotation: Annotation) -> None:
        self._apply(None, annotation)

    def remove(self, uid: str) -> None:
        old = self._items.get(uid)
        if old is not None:
            self._apply(old, None)

    def replace(self, annotation: Annotation) -> None:
        old = self._items.get(annotation.uid)
        if old != annotation:
            self._apply(old, annotation)

    def _apply(self, before: Annotation | None, after: Annotation | None, record: bool = True) -> None:
        if before is not None:
            self._items.pop(before.uid, None)
        if after is not None:
            self._items[after.uid] = after
        if record:
            self._undo.append((before, after))
            self._redo.clear()
        study = (after or before).StudyInstanceUID
        self.dirty.add(study)
        self.changed.emit(study)

    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    @property
    def can_redo(self) -> bool:
        return bool(self._redo)

    def undo(self) -> bool:
        if not self._undo:
            return False
        before, after = self._undo.pop()
        self._redo.append((before, after))
        self._apply(after, before, record=False)
        return True

    def redo(self) -> bool:
        if not self._redo:
            return False
        before, after = self._redo.pop()
        self._undo.append((before, after))
        self._apply(before, after, record=False)
        return True
