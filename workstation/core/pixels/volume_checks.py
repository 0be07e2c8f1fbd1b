"""Whether slices can form one volume, and what a reader must be told about the ones that can.

Refusals (no geometry, mixed orientations or sizes, too few slices) are VolumeErrors in words;
what still makes a volume but deserves a warning (localizers left out, missing slices, uneven
spacing, gantry tilt) comes back as sentences.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from workstation.core.dicom.geometry import ImagePlane

from .errors import VolumeError
from .slice_reader import SliceHeader

ORIENTATION_TOLERANCE = 1e-3
"""Max difference of direction cosines for two slices to count as the same orientation."""
TILT_TOLERANCE_DEG = 0.5
"""A stack more than this many degrees off the normal is sheared (gantry tilt)."""


def sort_slices(planes: Sequence[ImagePlane]) -> tuple[list[int], np.ndarray]:
    """Order of the planes along the first plane's normal, and their sorted positions on it (mm)."""
    if not planes:
        return [], np.zeros(0)
    normal = planes[0].normal
    positions = np.array([float(np.dot(p.position, normal)) for p in planes])
    order = sorted(range(len(planes)), key=lambda i: (positions[i], i))
    return order, positions[order]


def _same_orientation(a: ImagePlane, b: ImagePlane) -> bool:
    return bool(
        np.allclose(a.row_direction, b.row_direction, atol=ORIENTATION_TOLERANCE)
        and np.allclose(a.column_direction, b.column_direction, atol=ORIENTATION_TOLERANCE)
    )


def _describe_iop(p: ImagePlane) -> str:
    return "(" + ", ".join(f"{v:.3g}" for v in (*p.row_direction, *p.column_direction)) + ")"


def check_slices(headers: list[SliceHeader], warnings: list[str]) -> list[SliceHeader]:
    """The slices that make the volume (localizers left out when there are others); VolumeError when
    they cannot make one."""
    missing = [h.path.name for h in headers if h.plane is None]
    if missing:
        raise VolumeError(
            f"{len(missing)} slice(s) have no usable Image Position/Orientation (Patient), e.g. {missing[0]}"
        )
    multiframe = [h.path.name for h in headers if h.record.NumberOfFrames > 1]
    if multiframe:
        raise VolumeError(f"{len(multiframe)} image(s) have several frames (e.g. {multiframe[0]}); a volume is "
                          "built from single-frame slices here")
    localizers = [h for h in headers if h.record.is_localizer]
    if localizers and len(localizers) < len(headers):
        headers = [h for h in headers if not h.record.is_localizer]
        warnings.append(f"Excluded {len(localizers)} localizer image(s) from the volume.")
    if len(headers) < 2:
        raise VolumeError(f"a volume needs at least 2 slices, got {len(headers)}")
    first = headers[0].plane
    groups: list[tuple[ImagePlane, int]] = []
    for h in headers:
        for i, (ref, n) in enumerate(groups):
            if _same_orientation(ref, h.plane):
                groups[i] = (ref, n + 1)
                break
        else:
            groups.append((h.plane, 1))
    if len(groups) > 1:
        parts = ", ".join(f"{n} slice(s) with orientation {_describe_iop(p)}" for p, n in groups)
        raise VolumeError(f"mixed orientations: {parts}")
    sizes = {(h.plane.rows, h.plane.columns) for h in headers}
    if len(sizes) > 1:
        listed = ", ".join(f"{r}x{c}" for r, c in sorted(sizes))
        raise VolumeError(f"slices have different sizes ({listed})")
    spacings = {h.plane.pixel_spacing for h in headers}
    if len(spacings) > 1 and not all(np.allclose(s, first.pixel_spacing, rtol=1e-3) for s in spacings):
        warnings.append(f"Pixel spacing differs between slices; using {first.pixel_spacing} mm.")
    return headers


def spacing_warnings(
    positions: np.ndarray, stack: np.ndarray, normal: np.ndarray, tilt: float | None
) -> tuple[float, list[str]]:
    """Slice spacing (median gap) and warnings for missing slices, non-uniform gaps and a sheared stack."""
    warnings: list[str] = []
    gaps = np.diff(positions)
    spacing = float(np.median(gaps))
    if spacing <= 0:
        raise VolumeError("all slices are at the same position")
    big = np.nonzero(gaps > 1.5 * spacing)[0]
    if big.size:
        missing = int(sum(round(gaps[i] / spacing) - 1 for i in big))
        where = ", ".join(f"{positions[i]:.2f}..{positions[i + 1]:.2f} mm" for i in big[:3])
        warnings.append(
            f"Missing slices: {big.size} gap(s) wider than 1.5x the {spacing:.3g} mm spacing "
            f"(about {max(missing, 1)} slice(s) missing, at {where})."
        )
    tolerance = max(0.01, 0.01 * spacing)
    if float(gaps.max() - gaps.min()) > tolerance:
        warnings.append(
            f"Non-uniform slice spacing: gaps range from {gaps.min():.3g} to {gaps.max():.3g} mm "
            f"(median {spacing:.3g} mm); the volume assumes the median."
        )
    along = stack[-1] - stack[0]
    length = float(np.linalg.norm(along))
    if length > 0:
        angle = math.degrees(math.acos(min(1.0, abs(float(np.dot(along, normal))) / length)))
        if angle > TILT_TOLERANCE_DEG:
            stated = f"; Gantry/Detector Tilt says {tilt:g}°" if tilt else ""
            warnings.append(
                f"Gantry tilt: the slices are stacked {angle:.1f}° off their normal (sheared){stated}; "
                "the volume is not resampled, so 3D geometry is skewed."
            )
    return spacing, warnings
