"""Stack a series of single-frame slices into a 3D volume of modality values, with honest geometry warnings.

Each slice comes with its record (`SliceHeader`): from the cache's index (`assemble_volume_from_headers`,
no header read at all) or from its header (`assemble_volume(paths)`). The slices are checked and
sorted along the normal (`volume_checks`), the volume is allocated once, and each slice's values
are read straight into its slot (`slice_reader`); unevenly spaced slices are interpolated onto an
even grid along the stack as they are read.
"""

from __future__ import annotations

import mmap
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..tasks import CancelToken, Progress, no_progress
from .errors import PixelDataError, VolumeError
from .slice_reader import SliceHeader, SliceReader, read_slice_header
from .volume_checks import StackLayout, check_slices, gap_tolerance, stack_layout


@dataclass
class Volume:
    """Modality values (slices, rows, columns) and where they sit in LPS.

    `direction`'s columns are the row direction, the column direction and the unit slice step;
    the step is the normal unless the stack is sheared (gantry tilt), and `spacing` is (length of
    the slice step, between rows, between columns) in mm, so `affine()` puts every voxel where its
    file says it is. `source_uids` are the slices the volume was made from, in stack order: one per
    volume slice unless `resampled` (uneven spacing interpolated onto an even grid).
    """

    array: np.ndarray
    spacing: tuple[float, float, float]
    origin: np.ndarray
    direction: np.ndarray
    warnings: list[str] = field(default_factory=list)
    source_uids: list[str] = field(default_factory=list)
    resampled: bool = False

    def index_to_patient(self, k: float, i: float, j: float) -> np.ndarray:
        """LPS position of voxel (slice k, row i, column j)."""
        return self.origin + self.direction @ (np.array([j, i, k]) * np.array(self.spacing[::-1]))

    def affine(self) -> np.ndarray:
        """4x4: (column, row, slice, 1) -> LPS mm; the direction's columns are the row, column and
        slice directions, each scaled by its spacing."""
        out = np.eye(4)
        out[:3, :3] = self.direction * np.array(self.spacing[::-1])
        out[:3, 3] = self.origin
        return out

    @property
    def normal(self) -> np.ndarray:
        """The slices' normal (row x column direction), which the slice step leaves when sheared."""
        n = np.cross(self.direction[:, 0], self.direction[:, 1])
        return n / np.linalg.norm(n)

    @property
    def slice_gap(self) -> float:
        """Distance between consecutive slice planes along their normal (mm)."""
        return self.spacing[0] * float(np.dot(self.direction[:, 2], self.normal))

    def corners(self) -> np.ndarray:
        """(8, 3): the LPS centres of the corner voxels."""
        slices, rows, columns = self.array.shape
        index = np.array([[j, i, k, 1.0] for k in (0, slices - 1) for i in (0, rows - 1) for j in (0, columns - 1)])
        return (index @ self.affine().T)[:, :3]

    def spacing_along(self, direction) -> float:
        """How far to step along a unit direction (LPS) to move by one voxel: 1 / |index change per mm|.
        The slice spacing along the slice normal, the pixel spacing along a row, in between otherwise."""
        per_mm = np.linalg.solve(self.affine()[:3, :3], np.asarray(direction, dtype=np.float64))
        return 1.0 / float(np.linalg.norm(per_mm))


def _allocate(shape: tuple[int, int, int]) -> np.ndarray:
    """A zeroed int16 volume whose pages the kernel maps in one call (MAP_POPULATE) where available.

    Faulting ~40k fresh pages one by one costs more than reading the slices; a populated
    anonymous mapping is the same memory, freed with the array.
    """
    nbytes = int(np.prod(shape)) * 2
    populate = getattr(mmap, "MAP_POPULATE", 0)
    if populate and nbytes >= 1 << 24 and hasattr(mmap, "MAP_ANONYMOUS"):
        try:
            buf = mmap.mmap(-1, nbytes, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | populate)
            return np.frombuffer(buf, dtype=np.int16).reshape(shape)
        except (OSError, ValueError):
            pass
    return np.empty(shape, dtype=np.int16)


def assemble_volume(
    paths: Sequence[str | Path],
    progress: Progress | None = None,
    cancel: CancelToken | None = None,
) -> Volume:
    """Sort slices along the normal and stack them; refuse what cannot be one volume, warn about the rest.

    Headers first (no pixel data), then the same assembly as `assemble_volume_from_headers`.
    """
    progress = progress or no_progress
    total = 2 * len(paths)
    headers = []
    for i, path in enumerate(paths):
        if cancel is not None:
            cancel.raise_if_cancelled()
        headers.append(read_slice_header(path))
        progress(i + 1, total, "reading headers")
    return _assemble(headers, progress, cancel, len(paths), total)


def assemble_volume_from_headers(
    headers: Sequence[SliceHeader],
    progress: Progress | None = None,
    cancel: CancelToken | None = None,
) -> Volume:
    """Assemble slices already described (e.g. by `Cache.volume_slices`), reading no header at all."""
    return _assemble(list(headers), progress or no_progress, cancel, 0, len(headers))


def _assemble(
    headers: list[SliceHeader], progress: Progress, cancel: CancelToken | None, done: int, total: int
) -> Volume:
    """One allocation, then each slice read straight into its slot (one thread: reads are cheap once
    the pages are populated), or, for uneven spacing, interpolated from its two neighbours."""
    warnings: list[str] = []
    headers = check_slices(headers, warnings)
    layout = stack_layout(headers, warnings)
    headers = layout.headers
    first = headers[0].plane
    if layout.grid is None:
        array = _read_slices(headers, first, progress, cancel, done, total)
    else:
        array = _resample(layout, np.int16, progress, cancel, done, total)
        if array is None:
            array = _resample(layout, np.float32, progress, cancel, done, total)
    progress(total, total, "done")
    direction = np.column_stack([first.row_direction, first.column_direction, layout.direction])
    return Volume(
        array=array,
        spacing=(layout.spacing, first.pixel_spacing[0], first.pixel_spacing[1]),
        origin=np.array(layout.origin, dtype=np.float64),
        direction=direction,
        warnings=warnings,
        source_uids=[h.record.SOPInstanceUID for h in headers],
        resampled=layout.grid is not None,
    )


def _read(reader: SliceReader, header: SliceHeader, slot: np.ndarray) -> bool:
    try:
        return reader.read(header, slot)
    except PixelDataError as exc:
        raise VolumeError(f"{header.path.name}: {exc}") from None


def _read_slices(headers: list[SliceHeader], first, progress: Progress, cancel: CancelToken | None,
                 done: int, total: int) -> np.ndarray:
    array = _allocate((len(headers), first.rows, first.columns))
    reader = SliceReader(first.rows, first.columns)
    failed = []
    for k, header in enumerate(headers):
        if cancel is not None:
            cancel.raise_if_cancelled()
        if not _read(reader, header, array[k]):
            failed.append(k)
        progress(done + k + 1, total, "reading pixels")
    if failed:
        as_float = array.astype(np.float32)
        del array
        for k in failed:
            reader.read(headers[k], as_float[k])
        array = as_float
    return array


def _resample(layout: StackLayout, dtype, progress: Progress, cancel: CancelToken | None,
              done: int, total: int) -> np.ndarray | None:
    """The volume on `layout.grid`: each slice interpolated linearly between the two source slices
    around it (at the same row and column: along the stack's own direction, so a sheared stack stays
    right) and rounded to whole values for int16; a grid slice within the gap tolerance of a source
    slice is that slice. Only the output and two source slices are held (no second full-size
    array). None when int16 cannot hold a source slice's values (the caller asks for float32)."""
    headers, positions, grid = layout.headers, layout.positions, layout.grid
    plane = headers[0].plane
    shape = (plane.rows, plane.columns)
    array = _allocate((len(grid), *shape)) if dtype == np.int16 else np.empty((len(grid), *shape), dtype)
    reader = SliceReader(*shape)
    held: dict[int, np.ndarray] = {}
    tolerance = gap_tolerance(np.diff(positions))
    blend = np.empty(shape, dtype=np.float32)

    def source(k: int) -> np.ndarray | None:
        if k not in held:
            for old in [o for o in held if o < k - 1]:
                del held[old]
            slot = np.empty(shape, dtype)
            if not _read(reader, headers[k], slot):
                return None
            held[k] = slot
        return held[k]

    for m, t in enumerate(grid):
        if cancel is not None:
            cancel.raise_if_cancelled()
        k = min(max(int(np.searchsorted(positions, t, side="right")) - 1, 0), len(positions) - 2)
        below, above = t - positions[k], positions[k + 1] - t
        if below <= tolerance or above <= tolerance:
            near = source(k if below <= above else k + 1)
            if near is None:
                return None
            array[m] = near
        else:
            a, b = source(k), source(k + 1)
            if a is None or b is None:
                return None
            w = np.float32(below / (below + above))
            np.subtract(b, a, out=blend, dtype=np.float32)
            blend *= w
            blend += a
            if dtype == np.int16:
                np.rint(blend, out=blend)
            array[m] = blend
        progress(done + round((m + 1) * len(headers) / len(grid)), total, "resampling")
    return array
