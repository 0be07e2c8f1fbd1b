"""Stack a series of single-frame slices into a 3D volume of modality values, with honest geometry warnings.

Each slice comes with its record (`SliceHeader`): from the cache's index (`assemble_volume_from_headers`,
no header read at all) or from its header (`assemble_volume(paths)`). The slices are checked and
sorted along the normal (`volume_checks`), the volume is allocated once, and each slice's values
are read straight into its slot (`slice_reader`).
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
from .volume_checks import check_slices, sort_slices, spacing_warnings


@dataclass
class Volume:
    """Modality values (slices, rows, columns) and where they sit in LPS."""

    array: np.ndarray
    spacing: tuple[float, float, float]
    origin: np.ndarray
    direction: np.ndarray
    warnings: list[str] = field(default_factory=list)
    source_uids: list[str] = field(default_factory=list)

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
    the pages are populated)."""
    warnings: list[str] = []
    headers = check_slices(headers, warnings)
    order, positions = sort_slices([h.plane for h in headers])
    headers = [headers[i] for i in order]
    keep = [0]
    for i in range(1, len(headers)):
        if positions[i] - positions[keep[-1]] > 1e-3:
            keep.append(i)
    if len(keep) < len(headers):
        warnings.append(
            f"Duplicate positions: {len(headers) - len(keep)} slice(s) share a position with another and were skipped."
        )
        headers = [headers[i] for i in keep]
        positions = positions[keep]
    if len(headers) < 2:
        raise VolumeError("a volume needs at least 2 distinct slice positions")
    first = headers[0].plane
    stack = np.array([h.plane.position for h in headers])
    slice_spacing, more = spacing_warnings(positions, stack, first.normal, headers[0].record.GantryDetectorTilt)
    warnings.extend(more)

    array = _allocate((len(headers), first.rows, first.columns))
    reader = SliceReader(first.rows, first.columns)
    failed = []
    for k, header in enumerate(headers):
        if cancel is not None:
            cancel.raise_if_cancelled()
        try:
            if not reader.read(header, array[k]):
                failed.append(k)
        except PixelDataError as exc:
            raise VolumeError(f"{header.path.name}: {exc}") from None
        progress(done + k + 1, total, "reading pixels")
    if failed:
        as_float = array.astype(np.float32)
        del array
        for k in failed:
            reader.read(headers[k], as_float[k])
        array = as_float
    progress(total, total, "done")
    direction = np.column_stack([first.row_direction, first.column_direction, first.normal])
    return Volume(
        array=array,
        spacing=(slice_spacing, first.pixel_spacing[0], first.pixel_spacing[1]),
        origin=np.array(first.position, dtype=np.float64),
        direction=direction,
        warnings=warnings,
        source_uids=[h.record.SOPInstanceUID for h in headers],
    )
