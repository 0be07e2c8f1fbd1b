"""Image plane geometry (PS3.3 C.7.6.2) in the patient LPS frame, and the orientation labels shown at screen edges."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class ImagePlane:
    """Where one frame sits in the patient: first pixel centre, direction cosines and spacing."""

    position: np.ndarray
    row_direction: np.ndarray
    column_direction: np.ndarray
    pixel_spacing: tuple[float, float]
    rows: int
    columns: int

    @property
    def normal(self) -> np.ndarray:
        """Row x column: the slice normal, pointing the way increasing positions stack a volume."""
        n = np.cross(self.row_direction, self.column_direction)
        norm = np.linalg.norm(n)
        return n / norm if norm > 0 else n

    def pixel_to_patient(self, row: float, column: float) -> np.ndarray:
        """LPS position of a (row, column) pixel centre (C.7.6.2.1.1)."""
        return (
            self.position
            + column * self.pixel_spacing[1] * self.row_direction
            + row * self.pixel_spacing[0] * self.column_direction
        )


def _floats(value: Any, n: int) -> np.ndarray | None:
    try:
        arr = np.array([float(v) for v in value], dtype=np.float64)
    except (TypeError, ValueError):
        return None
    if arr.shape != (n,) or not np.all(np.isfinite(arr)):
        return None
    return arr


def _groups(ds: Any, index: int) -> list[Any]:
    """The functional group items that apply to one frame: its per-frame item first, then the shared one."""
    items = []
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    if per_frame is not None and 0 <= index < len(per_frame):
        items.append(per_frame[index])
    shared = ds.get("SharedFunctionalGroupsSequence")
    if shared:
        items.append(shared[0])
    return items


def frame_item(ds: Any, index: int, sequence: str) -> Any:
    """The item of a functional group macro's sequence that applies to one frame (per-frame wins over
    shared), else None."""
    for item in _groups(ds, index):
        seq = item.get(sequence)
        if seq:
            return seq[0]
    return None


def frame_attribute(ds: Any, index: int, sequence: str, keyword: str) -> Any:
    """An attribute from a functional group macro (per-frame wins over shared), else None."""
    for item in _groups(ds, index):
        seq = item.get(sequence)
        if seq:
            value = seq[0].get(keyword)
            if value is not None:
                return value
    return None


def pixel_spacing_with_source(ds: Any, index: int = 0) -> tuple[tuple[float, float], str] | None:
    """Spacing and which attribute gave it: PixelSpacing is in the patient, ImagerPixelSpacing at the detector."""
    candidates = [
        ("PixelSpacing", frame_attribute(ds, index, "PixelMeasuresSequence", "PixelSpacing")),
        ("PixelSpacing", ds.get("PixelSpacing")),
        ("ImagerPixelSpacing", ds.get("ImagerPixelSpacing")),
    ]
    for name, value in candidates:
        if value is None:
            continue
        arr = _floats(value, 2)
        if arr is not None and np.all(arr > 0):
            return (float(arr[0]), float(arr[1])), name
    return None


def pixel_spacing(ds: Any, index: int = 0) -> tuple[float, float] | None:
    """(between rows, between columns) in mm from PixelSpacing, else ImagerPixelSpacing, else None."""
    found = pixel_spacing_with_source(ds, index)
    return found[0] if found else None


def plane_from_dataset(ds: Any, index: int = 0) -> ImagePlane | None:
    """The plane of frame `index`, from per-frame/shared groups for enhanced objects, else the top level."""
    ipp = frame_attribute(ds, index, "PlanePositionSequence", "ImagePositionPatient")
    if ipp is None:
        ipp = ds.get("ImagePositionPatient")
    iop = frame_attribute(ds, index, "PlaneOrientationSequence", "ImageOrientationPatient")
    if iop is None:
        iop = ds.get("ImageOrientationPatient")
    if ipp is None or iop is None:
        return None
    pos = _floats(ipp, 3)
    cos = _floats(iop, 6)
    if pos is None or cos is None:
        return None
    row, col = cos[:3], cos[3:]
    (rx, ry, rz), (cx, cy, cz) = row.tolist(), col.tolist()   # plain floats: numpy is slow on 3-vectors
    rn, cn = math.sqrt(rx * rx + ry * ry + rz * rz), math.sqrt(cx * cx + cy * cy + cz * cz)
    nx, ny, nz = ry * cz - rz * cy, rz * cx - rx * cz, rx * cy - ry * cx
    if rn < 1e-6 or cn < 1e-6 or math.sqrt(nx * nx + ny * ny + nz * nz) < 1e-3:
        return None
    spacing = pixel_spacing(ds, index) or (1.0, 1.0)
    try:
        rows, columns = int(ds.get("Rows")), int(ds.get("Columns"))
    except (AttributeError, TypeError, ValueError):
        return None
    return ImagePlane(pos, row / rn, col / cn, spacing, rows, columns)


_AXIS_LETTERS = (("R", "L"), ("A", "P"), ("F", "H"))


def direction_label(vector: np.ndarray, threshold: float = 1e-3, max_letters: int = 3) -> str:
    """Patient direction a vector points to: 'L', 'P', 'H' for +x, +y, +z (LPS), compound when oblique."""
    v = np.asarray(vector, dtype=np.float64)
    order = np.argsort(-np.abs(v), kind="stable")
    letters = []
    for axis in order[:max_letters]:
        if abs(v[axis]) <= threshold:
            break
        letters.append(_AXIS_LETTERS[axis][1 if v[axis] > 0 else 0])
    return "".join(letters)


def orientation_labels(plane: ImagePlane, threshold: float = 1e-3) -> dict[str, str]:
    """Label at each screen edge: rows run left to right along row_direction, columns top to bottom."""
    return {
        "left": direction_label(-plane.row_direction, threshold),
        "right": direction_label(plane.row_direction, threshold),
        "top": direction_label(-plane.column_direction, threshold),
        "bottom": direction_label(plane.column_direction, threshold),
    }


_OPPOSITE = {"L": "R", "R": "L", "A": "P", "P": "A", "H": "F", "F": "H"}


def opposite_direction(label: str) -> str:
    """'R' -> 'L', 'AH' -> 'PF'; letters it does not know are kept."""
    return "".join(_OPPOSITE.get(c, c) for c in label)


def patient_orientation(ds: Any) -> tuple[str, str] | None:
    """Patient Orientation (0020,0020): the directions of the rows and of the columns, e.g. ('L', 'F'),
    which projection images (CR, DX, MG) carry instead of Image Orientation (Patient)."""
    value = ds.get("PatientOrientation")
    if value is None or isinstance(value, str | bytes):
        return None
    parts = [str(v).strip().upper() for v in value]
    if len(parts) != 2 or not all(parts) or not all(set(p) <= set(_OPPOSITE) for p in parts):
        return None
    return parts[0], parts[1]
