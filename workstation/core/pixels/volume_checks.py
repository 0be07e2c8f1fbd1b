"""Whether slices can form one volume, where its voxels lie, and what a reader must be told.

Refusals (no geometry, mixed orientations or sizes, too few slices, missing slices, spacing too
uneven to interpolate) are VolumeErrors in words, and `largest_consistent_part` finds what can
still be a volume. What makes a volume but deserves a word (localizers left out, resampled uneven
spacing, gantry tilt) comes back as sentences.

The stack's geometry is taken as the files give it: the slice step is the mean vector between
consecutive positions, so a sheared stack (gantry tilt) keeps its shear in the volume's affine and
reslicing through that affine unshears it without resampling a voxel. Slices are evenly spaced
when each lies within `GAP_TOLERANCE_MM` or `GAP_TOLERANCE_FRACTION` of the median gap (the larger)
of its place on an even grid; otherwise the stack is resampled along itself (`StackLayout.grid`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from workstation.core.dicom.geometry import ImagePlane

from .errors import VolumeError
from .slice_reader import SliceHeader

ORIENTATION_TOLERANCE = 1e-3
"""Max difference of direction cosines for two slices to count as the same orientation."""
TILT_TOLERANCE_DEG = 0.5
"""A stack more than this many degrees off the normal is sheared (gantry tilt)."""
GAP_TOLERANCE_MM = 0.01
GAP_TOLERANCE_FRACTION = 0.01
"""Slices off an even grid by no more than max(0.01 mm, 1 % of the median gap) count as evenly
spaced: positions are written to a few decimals, and 1 % of a gap is far below what a slice's
thickness blurs."""
MISSING_GAP_FACTOR = 1.5
"""A gap at least this many times the gaps on both sides of it is a hole: slices are missing there."""
MAX_INTERPOLATED_FACTOR = 4.0
"""Resampling may bridge a gap of at most this many resampled slices; wider, it would invent most of
what it shows."""
OFF_LINE_FRACTION = 0.5
"""A slice whose position is off the line through the first and last by more than this fraction of
a pixel does not belong to one volume."""
MIN_SLICES = 2


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


def _usable(headers: list[SliceHeader], warnings: list[str]) -> list[SliceHeader]:
    """Slices with geometry and one frame, localizers left out when there are others."""
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
    return headers


def _groups(headers: list[SliceHeader]) -> list[list[SliceHeader]]:
    """The slices by orientation and size, the largest group first."""
    groups: list[list[SliceHeader]] = []
    for h in headers:
        for group in groups:
            ref = group[0].plane
            if _same_orientation(ref, h.plane) and (ref.rows, ref.columns) == (h.plane.rows, h.plane.columns):
                group.append(h)
                break
        else:
            groups.append([h])
    return sorted(groups, key=len, reverse=True)


def check_slices(headers: list[SliceHeader], warnings: list[str]) -> list[SliceHeader]:
    """The slices that make the volume (localizers left out when there are others); VolumeError when
    they cannot make one."""
    headers = _usable(headers, warnings)
    if len(headers) < MIN_SLICES:
        raise VolumeError(f"a volume needs at least {MIN_SLICES} slices, got {len(headers)}")
    first = headers[0].plane
    orientations: list[tuple[ImagePlane, int]] = []
    for h in headers:
        for i, (ref, n) in enumerate(orientations):
            if _same_orientation(ref, h.plane):
                orientations[i] = (ref, n + 1)
                break
        else:
            orientations.append((h.plane, 1))
    if len(orientations) > 1:
        parts = ", ".join(f"{n} slice(s) with orientation {_describe_iop(p)}" for p, n in orientations)
        raise VolumeError(f"mixed orientations: {parts}")
    sizes = {(h.plane.rows, h.plane.columns) for h in headers}
    if len(sizes) > 1:
        listed = ", ".join(f"{r}x{c}" for r, c in sorted(sizes))
        raise VolumeError(f"slices have different sizes ({listed})")
    spacings = {h.plane.pixel_spacing for h in headers}
    if len(spacings) > 1 and not all(np.allclose(s, first.pixel_spacing, rtol=1e-3) for s in spacings):
        warnings.append(f"Pixel spacing differs between slices; using {first.pixel_spacing} mm.")
    return headers


def _distinct(headers: list[SliceHeader]) -> tuple[list[SliceHeader], np.ndarray, int]:
    """Sorted along the normal, one slice per position (the first); how many were dropped."""
    order, positions = sort_slices([h.plane for h in headers])
    headers = [headers[i] for i in order]
    keep = [0] if headers else []
    for i in range(1, len(headers)):
        if positions[i] - positions[keep[-1]] > 1e-3:
            keep.append(i)
    return [headers[i] for i in keep], positions[keep], len(headers) - len(keep)


def gap_tolerance(gaps: np.ndarray) -> float:
    return max(GAP_TOLERANCE_MM, GAP_TOLERANCE_FRACTION * float(np.median(gaps)))


def _runs(gaps: np.ndarray, tolerance: float) -> list[tuple[int, int]]:
    """[start, end) gap indices of the stretches of equal gaps."""
    runs, start = [], 0
    for i in range(1, len(gaps) + 1):
        if i == len(gaps) or abs(gaps[i] - gaps[start]) > tolerance:
            runs.append((start, i))
            start = i
    return runs


@dataclass(frozen=True)
class Break:
    """A gap the volume cannot bridge: between sorted slices `index` and `index + 1` (0-based)."""

    index: int
    reason: str


def resampling_spacing(positions: np.ndarray) -> tuple[float, float]:
    """(spacing, anchor) of the even grid an uneven stack is resampled onto, along the normal (mm).

    The spacing is that of the finest stretch of two or more equal gaps, and the grid passes through
    that stretch's slices, which are then kept as they are: the detail the finest part was acquired
    with survives, while a lone short gap (two acquisitions overlapping, as where a head CT changes
    from 4 to 7 mm) does not multiply the volume's memory for detail it does not have. Without such a
    stretch, the median gap from the first slice.
    """
    gaps = np.diff(positions)
    tolerance = gap_tolerance(gaps)
    regular = [(s, e) for s, e in _runs(gaps, tolerance) if e - s >= 2]
    if not regular:
        return float(np.median(gaps)), float(positions[0])
    start, end = min(regular, key=lambda r: (positions[r[1]] - positions[r[0]]) / (r[1] - r[0]))
    return float((positions[end] - positions[start]) / (end - start)), float(positions[start])


def breaks(positions: np.ndarray, thickness: np.ndarray | None = None, first: int = 1) -> list[Break]:
    """The gaps that stop the sorted slices from being one volume: holes (missing slices) and gaps too
    wide to resample across. `thickness` (SliceThickness, NaN where unknown) clears a gap the two
    slices around it cover between them. Slices are named by number from `first`."""
    gaps = np.diff(positions)
    if gaps.size < 2 or _evenly_spaced(positions):
        return []
    tolerance = gap_tolerance(gaps)
    found: dict[int, str] = {}
    for i, gap in enumerate(gaps):
        sides = [gaps[j] for j in (i - 1, i + 1) if 0 <= j < gaps.size]
        covered = thickness is not None and (thickness[i] + thickness[i + 1]) / 2 >= gap - tolerance
        if not covered and all(gap >= MISSING_GAP_FACTOR * side for side in sides):
            near = min(sides)
            found[i] = (f"missing slices: a {gap:.3g} mm gap between slices {first + i} and {first + i + 1} "
                        f"(at {positions[i]:.2f}..{positions[i + 1]:.2f} mm) where the spacing is {near:.3g} mm "
                        f"(about {max(1, round(gap / near) - 1)} slice(s) missing)")
    if not found:
        spacing, _ = resampling_spacing(positions)
        for i, gap in enumerate(gaps):
            if gap > MAX_INTERPOLATED_FACTOR * spacing + tolerance:
                found[i] = (f"spacing too uneven to resample: a {gap:.3g} mm gap between slices {first + i} and "
                            f"{first + i + 1} (at {positions[i]:.2f}..{positions[i + 1]:.2f} mm) against "
                            f"{spacing:.3g} mm elsewhere; interpolating across it would invent most of what it shows")
    return [Break(i, found[i]) for i in sorted(found)]


def _thickness(headers: Sequence[SliceHeader]) -> np.ndarray:
    return np.array([h.record.SliceThickness or np.nan for h in headers], dtype=np.float64)


def _evenly_spaced(positions: np.ndarray) -> bool:
    gaps = np.diff(positions)
    even = np.linspace(positions[0], positions[-1], len(positions))
    return float(np.abs(positions - even).max()) <= gap_tolerance(gaps)


@dataclass(frozen=True)
class StackLayout:
    """Where the volume's slices lie. `headers` are the slices sorted along the normal (one per
    position), `positions` their coordinates along it (mm). The volume's slice k sits at
    `origin + k * spacing * direction`; `direction` is the unit slice step, which is the normal
    unless the stack is sheared. `grid` is None when the slices are the volume's slices as they are,
    else the coordinates along the normal of the evenly spaced slices to interpolate."""

    headers: list[SliceHeader]
    positions: np.ndarray
    origin: np.ndarray
    direction: np.ndarray
    spacing: float
    grid: np.ndarray | None


def stack_layout(headers: list[SliceHeader], warnings: list[str]) -> StackLayout:
    """Sort and check checked slices (`check_slices`) along their normal: refuse holes, gaps too
    wide and slices off one line; find the slice step (with its shear) and whether to resample."""
    headers, positions, dropped = _distinct(headers)
    if dropped:
        warnings.append(f"Duplicate positions: {dropped} slice(s) share a position with another and were skipped.")
    if len(headers) < MIN_SLICES:
        raise VolumeError(f"a volume needs at least {MIN_SLICES} distinct slice positions")
    found = breaks(positions, _thickness(headers))
    if found:
        more = f" (and {len(found) - 1} more such gap(s))" if len(found) > 1 else ""
        raise VolumeError(found[0].reason + more)
    first = headers[0].plane
    stack = np.array([h.plane.position for h in headers], dtype=np.float64)
    extent = float(positions[-1] - positions[0])
    per_mm = (stack[-1] - stack[0]) / extent          # the stack's direction, per mm along the normal
    line = stack[0] + np.outer(positions - positions[0], per_mm)
    off = np.linalg.norm(stack - line, axis=1)
    worst = int(np.argmax(off))
    if off[worst] > OFF_LINE_FRACTION * min(first.pixel_spacing):
        raise VolumeError(
            f"the slices do not lie on one line: slice {worst + 1} is {off[worst]:.2f} mm off the line through "
            "the first and the last (more than half a pixel), so they are not one volume"
        )
    gaps = np.diff(positions)
    grid = None
    if _evenly_spaced(positions):
        gap = extent / (len(headers) - 1)
        origin = stack[0]
    else:
        gap, anchor = resampling_spacing(positions)
        tolerance = gap_tolerance(gaps)
        lo = math.ceil((positions[0] - anchor - tolerance) / gap)
        hi = math.floor((positions[-1] - anchor + tolerance) / gap)
        grid = anchor + gap * np.arange(lo, hi + 1, dtype=np.float64)
        grid = np.clip(grid, positions[0], positions[-1])
        origin = stack[0] + (grid[0] - positions[0]) * per_mm
        warnings.append(
            f"Non-uniform slice spacing: resampled to a uniform {gap:.2f} mm from gaps of {gaps.min():.2f}-"
            f"{gaps.max():.2f} mm ({len(grid)} slices from {len(headers)}, linear interpolation between "
            "neighbouring slices)."
        )
    step = per_mm * gap
    length = float(np.linalg.norm(step))
    cosine = min(1.0, float(np.dot(per_mm, first.normal)) / float(np.linalg.norm(per_mm)))
    angle = math.degrees(math.acos(cosine))
    if angle > TILT_TOLERANCE_DEG:
        tilt = headers[0].record.GantryDetectorTilt
        stated = f" (Gantry/Detector Tilt says {tilt:g}°)" if tilt else ""
        warnings.append(
            f"Gantry tilt: the slices are stacked {angle:.1f}° off their normal{stated}; the volume keeps "
            "them where they are, so planes resliced from it are not sheared."
        )
    return StackLayout(headers, positions, origin, step / length, length, grid)


@dataclass(frozen=True)
class VolumePart:
    """The largest part of a series that makes a volume: its slices (assemble them as any others),
    where they sit among the `total` slices of that orientation sorted along the stack (1-based,
    for "MPR of slices 12-140"), and what was left out and why ("" when nothing was)."""

    headers: tuple[SliceHeader, ...]
    first: int
    last: int
    total: int
    left_out: str

    @property
    def label(self) -> str:
        return f"slices {self.first}-{self.last}"


def largest_consistent_part(headers: Sequence[SliceHeader]) -> VolumePart | None:
    """What can still be a volume when the whole cannot: the slices of the largest orientation (and
    size), and within it the longest run between holes or gaps too wide; None when not even two
    slices can. The whole series when it is a volume."""
    notes: list[str] = []
    usable = [h for h in headers if h.plane is not None and h.record.NumberOfFrames == 1]
    if len(usable) < len(headers):
        notes.append(f"{len(headers) - len(usable)} image(s) without slice geometry or with several frames")
    if any(h.record.is_localizer for h in usable) and not all(h.record.is_localizer for h in usable):
        localizers = sum(h.record.is_localizer for h in usable)
        usable = [h for h in usable if not h.record.is_localizer]
        notes.append(f"{localizers} localizer(s)")
    groups = _groups(usable)
    if not groups:
        return None
    group = groups[0]
    if len(groups) > 1:
        notes.append(f"{len(usable) - len(group)} slice(s) of another orientation or size")
    group, positions, dropped = _distinct(group)
    if dropped:
        notes.append(f"{dropped} slice(s) at a position another already has")
    lo, hi = 0, len(group)
    while hi - lo >= MIN_SLICES:
        found = breaks(positions[lo:hi], _thickness(group[lo:hi]), lo + 1)
        if not found:
            break
        edges = [lo, *(lo + b.index + 1 for b in found), hi]
        runs = list(zip(edges[:-1], edges[1:], strict=True))
        lo, hi = max(runs, key=lambda r: (r[1] - r[0], positions[r[1] - 1] - positions[r[0]]))
        notes.append(found[0].reason if len(found) == 1 else f"{found[0].reason} (and {len(found) - 1} more)")
    if hi - lo < MIN_SLICES:
        return None
    if lo or hi < len(group):
        notes.append(f"slices outside {lo + 1}-{hi} of {len(group)}")
    left_out = "; ".join(notes)
    return VolumePart(tuple(group[lo:hi]), lo + 1, hi, len(group), f"left out: {left_out}" if left_out else "")
