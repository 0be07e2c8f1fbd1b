"""Image plane geometry (PS3.3 C.7.6.2) in the patient LPS frame, and the orientation labels shown at screen edges."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
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

    @cached_property
    def normal(self) -> np.ndarray:
        """Row x column: the slice normal, pointing the way increasing positions stack a volume."""
        n = np.cross(self.row_direction, self.column_direction)
        norm = np.linalg.norm(n)
        return n / norm if norm > 0 else n

    def patient_to_pixel(self, point) -> tuple[float, float, float]:
        """(row, column) of a patient point projected on the plane, and its distance from the plane (mm,
        along the normal): the inverse of `pixel_to_patient`."""
        d = np.asarray(point, float) - self.position
        return (float(d @ self.column_direction) / self.pixel_spacing[0],
                float(d @ self.row_direction) / self.pixel_spacing[1], float(d @ self.normal))

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


_PROJECTION_SOP_CLASSES = frozenset({
    "1.2.840.10008.5.1.4.1.1.1",                                  # CR
    "1.2.840.10008.5.1.4.1.1.1.1", "1.2.840.10008.5.1.4.1.1.1.1.1",   # DX for presentation / processing
    "1.2.840.10008.5.1.4.1.1.1.2", "1.2.840.10008.5.1.4.1.1.1.2.1",   # MG
    "1.2.840.10008.5.1.4.1.1.1.3", "1.2.840.10008.5.1.4.1.1.1.3.1",   # intra-oral
    "1.2.840.10008.5.1.4.1.1.12.1", "1.2.840.10008.5.1.4.1.1.12.1.1",  # XA, enhanced XA
    "1.2.840.10008.5.1.4.1.1.12.2", "1.2.840.10008.5.1.4.1.1.12.2.1",  # RF, enhanced XRF
    "1.2.840.10008.5.1.4.1.1.12.3",                               # XA bi-plane (retired)
})
"""Projection radiographs: Pixel Spacing there may or may not be corrected for geometric magnification."""
_DX_FAMILY = frozenset(uid for uid in _PROJECTION_SOP_CLASSES if uid.startswith("1.2.840.10008.5.1.4.1.1.1."))
_PROJECTION_MODALITIES = frozenset({"CR", "DX", "MG", "IO", "PX", "XA", "RF", "RG"})
_CENTIMETRES = 3
"""Physical Units X/Y Direction 0003H: cm (C.8.5.5.1.15)."""

SPACING_KINDS = ("patient", "detector", "ultrasound", "unknown")


@dataclass(frozen=True)
class UltrasoundRegion:
    """One region of Sequence of Ultrasound Regions calibrated in cm both ways (C.8.5.5): its bounds in
    image pixels (0-based, edges included: Region Location Min/Max X0/Y0/X1/Y1, x being the column)
    and its spacing in mm (Physical Delta Y, X x 10)."""

    min_row: int
    min_column: int
    max_row: int
    max_column: int
    row_mm: float
    column_mm: float
    spatial_format: int
    """Region Spatial Format: 1 2D (tissue or flow), 2 M-mode, 3 spectral, 4 waveform, 5 graphics..."""
    data_type: int
    """Region Data Type: 1 tissue, 2 colour flow, 3 PW spectral Doppler... (C.8.5.5.1.2)."""

    def contains(self, row: float, column: float) -> bool:
        """Whether an image point (0-based row, column of pixel centres) lies in the region."""
        return self.min_row <= row <= self.max_row and self.min_column <= column <= self.max_column


@dataclass(frozen=True)
class SpacingInfo:
    """What a frame's pixel spacing means (PS3.3 10.7.1): `kind` is one of SPACING_KINDS, `note` the
    one-line caution a viewer shows beside measurements ("" when none is needed).

    patient: distances in the patient (cross-sectional images, or a projection calibrated or
    corrected for magnification); detector: at the detector plane, magnified; ultrasound: valid only
    inside `regions` (row_mm/column_mm are the first region's); unknown: no spacing, measure in pixels.
    """

    row_mm: float | None
    """Between the centres of adjacent rows (vertical); None for unknown."""
    column_mm: float | None
    """Between the centres of adjacent columns (horizontal); None for unknown."""
    kind: str
    note: str
    regions: tuple[UltrasoundRegion, ...] = ()

    def region_at(self, row: float, column: float) -> UltrasoundRegion | None:
        """The ultrasound region holding an image point, None outside them all."""
        return next((r for r in self.regions if r.contains(row, column)), None)

    def spacing_at(self, row: float, column: float) -> tuple[float, float] | None:
        """(row_mm, column_mm) that hold at an image point: an ultrasound region's own there, None
        outside every region or without spacing."""
        if self.kind == "ultrasound":
            region = self.region_at(row, column)
            return None if region is None else (region.row_mm, region.column_mm)
        if self.row_mm is None or self.column_mm is None:
            return None
        return self.row_mm, self.column_mm


def _pair(value: Any) -> tuple[float, float] | None:
    if value is None:
        return None
    arr = _floats(value, 2)
    if arr is None or not np.all(arr > 0):
        return None
    return float(arr[0]), float(arr[1])


def _same(a: tuple[float, float], b: tuple[float, float]) -> bool:
    return all(abs(x - y) <= 1e-6 * max(abs(x), abs(y)) for x, y in zip(a, b, strict=True))


def _word(ds: Any, keyword: str) -> str:
    value = ds.get(keyword)
    return "" if value is None else str(value).strip()


def _ultrasound_regions(ds: Any) -> tuple[UltrasoundRegion, ...]:
    regions = []
    for item in ds.get("SequenceOfUltrasoundRegions") or ():
        try:
            units = int(item.get("PhysicalUnitsXDirection")), int(item.get("PhysicalUnitsYDirection"))
            dx, dy = abs(float(item.get("PhysicalDeltaX"))), abs(float(item.get("PhysicalDeltaY")))
            bounds = [int(item.get(k)) for k in ("RegionLocationMinY0", "RegionLocationMinX0",
                                                  "RegionLocationMaxY1", "RegionLocationMaxX1")]
        except (TypeError, ValueError):
            continue
        if units != (_CENTIMETRES, _CENTIMETRES) or not (np.isfinite(dx) and np.isfinite(dy)) or dx <= 0 or dy <= 0:
            continue
        regions.append(UltrasoundRegion(*bounds, row_mm=dy * 10, column_mm=dx * 10,
                                        spatial_format=int(item.get("RegionSpatialFormat") or 0),
                                        data_type=int(item.get("RegionDataType") or 0)))
    return tuple(regions)


def spacing_info(ds: Any, index: int = 0) -> SpacingInfo:
    """What the spacing of frame `index` means, after PS3.3 10.7.1.1 (Pixel Spacing equal to Imager or
    Nominal Scanned Pixel Spacing: not corrected for magnification; different: corrected or calibrated;
    a Pixel Spacing Calibration Type or Description: calibrated), the DX family's Estimated
    Radiographic Magnification Factor (applied to Imager Pixel Spacing when Pixel Spacing is absent, as
    the IHE Mammography Image profile has displays do), and C.8.5.5 for ultrasound regions."""
    pixel = _pair(frame_attribute(ds, index, "PixelMeasuresSequence", "PixelSpacing")) or _pair(ds.get("PixelSpacing"))
    imager = _pair(ds.get("ImagerPixelSpacing"))
    scanned = _pair(ds.get("NominalScannedPixelSpacing"))
    sop_class = _word(ds, "SOPClassUID")
    projection = sop_class in _PROJECTION_SOP_CLASSES or _word(ds, "Modality").upper() in _PROJECTION_MODALITIES
    at_detector = "Spacing at the detector: distances are not corrected for magnification"
    if pixel is not None:
        calibration = _word(ds, "PixelSpacingCalibrationType").upper()
        description = " ".join(_word(ds, "PixelSpacingCalibrationDescription").split())
        if calibration or description:
            how = {"GEOMETRY": "corrected for geometric magnification",
                   "FIDUCIAL": "calibrated against an object of known size"}.get(calibration, "calibrated")
            detail = f" ({description[:60]})" if description else ""
            return SpacingInfo(*pixel, "patient", f"Spacing {how}{detail}: exact only at the depth it assumes")
        if imager is not None and _same(pixel, imager):
            return SpacingInfo(*pixel, "detector", at_detector)
        if scanned is not None and _same(pixel, scanned):
            return SpacingInfo(*pixel, "detector", "Spacing on the scanned film: distances are not corrected "
                                                   "for magnification")
        if imager is not None or scanned is not None:
            return SpacingInfo(*pixel, "patient", "Spacing corrected for magnification by the modality: exact "
                                                  "only at the depth it assumes")
        if projection:
            return SpacingInfo(*pixel, "patient", "Pixel Spacing without Imager Pixel Spacing: whether it is "
                                                  "corrected for magnification is not known")
        return SpacingInfo(*pixel, "patient", "")
    if imager is not None:
        try:
            factor = float(ds.get("EstimatedRadiographicMagnificationFactor"))
        except (TypeError, ValueError):
            factor = 0.0
        dx_family = sop_class in _DX_FAMILY or _word(ds, "Modality").upper() in ("DX", "MG", "IO")
        if dx_family and np.isfinite(factor) and factor > 0 and factor != 1.0:
            return SpacingInfo(imager[0] / factor, imager[1] / factor, "patient",
                               f"Spacing at the detector divided by the estimated magnification {factor:g}: "
                               "exact only at the estimated depth")
        return SpacingInfo(*imager, "detector", at_detector)
    if scanned is not None:
        return SpacingInfo(*scanned, "detector", "Spacing on the scanned film: distances are not corrected "
                                                 "for magnification")
    regions = _ultrasound_regions(ds)
    if regions:
        first = regions[0]
        where = "the ultrasound region" if len(regions) == 1 else f"the {len(regions)} ultrasound regions"
        return SpacingInfo(first.row_mm, first.column_mm, "ultrasound",
                           f"Spacing holds only inside {where}", regions)
    return SpacingInfo(None, None, "unknown", "No pixel spacing: measurements are in pixels")


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
