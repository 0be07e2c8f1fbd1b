"""MPR plane geometry: which plane to cut through a volume and where its pixels lie (no Qt, no VTK).

Planes are shown as radiologists read them: axial seen from the feet (rows run towards +x, the
patient's left, so the patient's right is on the screen's left; columns towards +y, posterior),
coronal seen from the front (rows +x, columns -z: head up), sagittal seen from the patient's left
(rows +y: anterior on the left; columns -z). A plane's `normal`, for its position and scrolling,
is its patient axis (+z axial, +y coronal, +x sagittal) turned with the plane, and `position` is
the coordinate along it in LPS mm, as the command line's --position: z for axial, y for coronal,
x for sagittal. (For the sagittal, row x column points the other way, -x: it is seen from +x.)

The reslicing itself is VTK's (workstation.vtk3d.reslice); this module only says where.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from workstation.core.dicom.geometry import ImagePlane

from .volume import Volume

_BASES = {
    #            row direction   column direction  normal (position axis)
    "axial": ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)),
    "coronal": ((1.0, 0.0, 0.0), (0.0, 0.0, -1.0), (0.0, 1.0, 0.0)),
    "sagittal": ((0.0, 1.0, 0.0), (0.0, 0.0, -1.0), (1.0, 0.0, 0.0)),
}
ORIENTATIONS = tuple(_BASES)
PATIENT_AXES = {"x": (1.0, 0.0, 0.0), "y": (0.0, 1.0, 0.0), "z": (0.0, 0.0, 1.0)}
PLANE_AXES = ("row", "column")
_IDENTITY = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)


def rotation_matrix(axis: np.ndarray, degrees: float) -> np.ndarray:
    """Right-handed rotation about a unit axis (Rodrigues)."""
    x, y, z = axis / np.linalg.norm(axis)
    a = math.radians(degrees)
    c, s = math.cos(a), math.sin(a)
    k = np.array([[0.0, -z, y], [z, 0.0, -x], [-y, x, 0.0]])
    return np.eye(3) + s * k + (1 - c) * (k @ k)


@dataclass(frozen=True)
class PlaneSpec:
    """A plane through `point` (LPS mm): one of ORIENTATIONS turned by `rotation` (row-major 3x3).

    Obliques (`rotated`) turn the plane about an axis through its point, right-handed (positive
    degrees counter-clockwise seen from the axis's tip): `x`, `y`, `z` are the patient's axes (L,
    P, H), fixed whatever came before, so a script or a check can state an angle anatomically and
    anyone can repeat the composition; `row` and `column` are the plane's own screen axes as they
    are now, so a second rotation follows the first, as a reader tilts the plane seen on screen
    (`row` tips its top towards or away from the reader, `column` turns it left or right).
    Several rotations compose in the order given (double oblique).
    """

    orientation: str
    point: tuple[float, float, float]
    rotation: tuple[float, ...] = _IDENTITY

    def __post_init__(self) -> None:
        if self.orientation not in _BASES:
            raise ValueError(f"unknown plane {self.orientation!r}: use one of {', '.join(ORIENTATIONS)}")

    @classmethod
    def through(cls, orientation: str, point) -> PlaneSpec:
        return cls(orientation, tuple(float(v) for v in point))

    @property
    def _matrix(self) -> np.ndarray:
        return np.array(self.rotation, dtype=np.float64).reshape(3, 3)

    @property
    def row_direction(self) -> np.ndarray:
        return self._matrix @ np.array(_BASES[self.orientation][0])

    @property
    def column_direction(self) -> np.ndarray:
        return self._matrix @ np.array(_BASES[self.orientation][1])

    @property
    def normal(self) -> np.ndarray:
        """The plane's position axis: +z, +y or +x turned with the plane."""
        return self._matrix @ np.array(_BASES[self.orientation][2])

    @property
    def position(self) -> float:
        """The plane's coordinate along its normal (LPS mm)."""
        return float(np.dot(self.point, self.normal))

    @property
    def oblique(self) -> bool:
        return not np.allclose(self._matrix, np.eye(3), atol=1e-12)

    def rotated(self, axis: str, degrees: float) -> PlaneSpec:
        """This plane turned about `axis` (x, y, z, row or column) through its point."""
        if axis in PATIENT_AXES:
            vector = np.array(PATIENT_AXES[axis])
        elif axis == "row":
            vector = self.row_direction
        elif axis == "column":
            vector = self.column_direction
        else:
            raise ValueError(f"unknown oblique axis {axis!r}: use x, y, z (the patient's axes) or row, column "
                             "(the plane's own)")
        turned = rotation_matrix(vector, float(degrees)) @ self._matrix
        return PlaneSpec(self.orientation, self.point, tuple(float(v) for v in turned.reshape(-1)))

    def moved(self, mm: float) -> PlaneSpec:
        """This plane moved along its normal."""
        return PlaneSpec(self.orientation, tuple(float(v) for v in np.add(self.point, mm * self.normal)),
                         self.rotation)

    def at(self, position: float) -> PlaneSpec:
        """This plane at a position along its normal (LPS mm), its point moved straight there."""
        return self.moved(position - self.position)

    def with_point(self, point) -> PlaneSpec:
        """The same orientation through another point (a crosshair moved)."""
        return PlaneSpec(self.orientation, tuple(float(v) for v in point), self.rotation)


def parse_oblique(text: str) -> tuple[str, float]:
    """'row:20' or 'z:-15' (the command line's --oblique AXIS:DEGREES) -> (axis, degrees)."""
    axis, sep, degrees = text.partition(":")
    axis = axis.strip().lower()
    if not sep or (axis not in PATIENT_AXES and axis not in PLANE_AXES):
        raise ValueError(f"--oblique takes AXIS:DEGREES with AXIS one of x, y, z, row, column (got {text!r})")
    try:
        value = float(degrees)
    except ValueError:
        raise ValueError(f"--oblique: {degrees!r} is not a number of degrees") from None
    if not math.isfinite(value):
        raise ValueError(f"--oblique: {degrees!r} is not a number of degrees")
    return axis, value


def volume_centre(volume: Volume) -> np.ndarray:
    """The LPS centre of the volume's voxel centres."""
    return volume.corners().mean(axis=0)


def orthogonal_planes(point) -> tuple[PlaneSpec, PlaneSpec, PlaneSpec]:
    """Axial, coronal and sagittal through one point (a crosshair)."""
    return tuple(PlaneSpec.through(o, point) for o in ORIENTATIONS)


def pixel_size(volume: Volume) -> float:
    """An MPR plane's square pixel: the volume's finest in-plane spacing."""
    return float(min(volume.spacing[1], volume.spacing[2]))


def plane_geometry(volume: Volume, spec: PlaneSpec) -> ImagePlane:
    """Where the plane's pixels lie: square pixels of `pixel_size`, covering the volume's bounding box
    (its corner voxel centres) projected on the plane, so the size stays put while scrolling and an
    orthogonal plane's pixels fall on the voxels."""
    row, column, normal = spec.row_direction, spec.column_direction, spec.normal
    corners = volume.corners()
    along_row, along_column = corners @ row, corners @ column
    size = pixel_size(volume)
    columns = int(math.floor((along_row.max() - along_row.min()) / size + 1e-6)) + 1
    rows = int(math.floor((along_column.max() - along_column.min()) / size + 1e-6)) + 1
    origin = spec.position * normal + along_row.min() * row + along_column.min() * column
    return ImagePlane(origin, row, column, (size, size), rows, columns)


def scroll_step(volume: Volume, spec: PlaneSpec) -> float:
    """How far one scroll step moves the plane along its normal: the volume's spacing that way."""
    return volume.spacing_along(spec.normal)


def position_range(volume: Volume, spec: PlaneSpec) -> tuple[float, float]:
    """The first and last positions along the plane's normal that cut the volume (voxel centres)."""
    along = volume.corners() @ spec.normal
    return float(along.min()), float(along.max())


def scroll_positions(volume: Volume, spec: PlaneSpec) -> np.ndarray:
    """The positions a plane scrolls through: one `scroll_step` apart over `position_range` (for an
    orthogonal plane of an axis-aligned volume, its slices' positions)."""
    lo, hi = position_range(volume, spec)
    step = scroll_step(volume, spec)
    return lo + step * np.arange(int(math.floor((hi - lo) / step + 1e-6)) + 1)


SLAB_MODES = ("mip", "minip", "avg")


@dataclass(frozen=True)
class Slab:
    """A thick slab centred on the plane: `mode` mip (maximum), minip (minimum) or avg, over
    `thickness` mm along the normal."""

    mode: str
    thickness: float

    def __post_init__(self) -> None:
        if self.mode not in SLAB_MODES:
            raise ValueError(f"unknown slab mode {self.mode!r}: use mip, minip or avg")
        if not (math.isfinite(self.thickness) and self.thickness >= 0):
            raise ValueError(f"a slab's thickness is a number of mm, 0 or more (got {self.thickness})")

    def samples(self, step: float) -> tuple[int, float]:
        """(count, spacing): planes about `step` apart (the volume's spacing along the normal) from
        -thickness/2 to +thickness/2, both ends included, so they span exactly the thickness; avg
        weighs the two end planes half (the trapezoid rule: the mean over the slab)."""
        count = int(round(self.thickness / step)) + 1
        return (1, 0.0) if count < 2 else (count, self.thickness / (count - 1))

    def offsets(self, step: float) -> np.ndarray:
        """The samples' distances from the plane along its normal (mm)."""
        count, spacing = self.samples(step)
        return (np.arange(count) - (count - 1) / 2) * spacing


def parse_slab(text: str) -> Slab:
    """'mip:10' (the command line's --slab MODE:MM) -> Slab."""
    mode, sep, mm = text.partition(":")
    if not sep:
        raise ValueError(f"--slab takes MODE:MM with MODE one of mip, minip, avg (got {text!r})")
    try:
        return Slab(mode.strip().lower(), float(mm))
    except ValueError as exc:
        raise ValueError(f"--slab {text!r}: {exc}") from None
