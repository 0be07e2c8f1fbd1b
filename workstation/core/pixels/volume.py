"""Stack a series of single-frame slices into a 3D volume of modality values, with honest geometry warnings.

Headers are read without pixel data, the slices are sorted along the normal, the volume is
allocated once, and each uncompressed slice's bytes are read straight into a reusable buffer and
rescaled into its slot; compressed slices fall back to the decoding pipeline.
"""

from __future__ import annotations

import math
import struct
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset

from ..tasks import CancelToken, Progress, no_progress
from .errors import PixelDataError
from .geometry import ImagePlane, plane_from_dataset
from .image import ImageSource

ORIENTATION_TOLERANCE = 1e-3
"""Max difference of direction cosines for two slices to count as the same orientation."""
TILT_TOLERANCE_DEG = 0.5
"""A stack more than this many degrees off the normal is sheared (gantry tilt)."""


class VolumeError(Exception):
    """The slices cannot form one volume; ``str(e)`` says why."""


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


@dataclass
class SliceHeader:
    """What sorting and fast pixel reading need from one file, read without its pixel data."""

    path: Path
    dataset: Dataset
    plane: ImagePlane | None
    pixel_offset: int | None
    pixel_length: int


def _pixel_element_at(f, ds: Dataset) -> tuple[int | None, int]:
    """Offset and length of a native Pixel Data value at the reader's stop position (None if encapsulated)."""
    ts = ds.file_meta.get("TransferSyntaxUID") if getattr(ds, "file_meta", None) is not None else None
    if ts is not None:
        uid = pydicom.uid.UID(str(ts))
        if uid.is_compressed:
            return None, 0
        implicit, little = uid.is_implicit_VR, uid.is_little_endian
    else:
        implicit, little = ds.original_encoding
    if implicit is None or not little:
        return None, 0
    start = f.tell()
    head = f.read(12)
    if len(head) < 8 or struct.unpack("<HH", head[:4]) != (0x7FE0, 0x0010):
        return None, 0
    if implicit:
        (length,) = struct.unpack("<I", head[4:8])
        offset = start + 8
    else:
        if head[4:6] not in (b"OB", b"OW") or len(head) < 12:
            return None, 0
        (length,) = struct.unpack("<I", head[8:12])
        offset = start + 12
    if length == 0xFFFFFFFF:
        return None, 0
    return offset, length


def read_slice_header(path: str | Path) -> SliceHeader:
    """Header only (stop before Pixel Data), plus where the native pixel bytes start in the file."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            ds = pydicom.dcmread(f, stop_before_pixels=True, force=True)
            offset, length = _pixel_element_at(f, ds)
    except RecursionError:
        raise VolumeError(f"{path.name}: the file nests sequences too deeply to be read") from None
    except Exception as exc:
        raise VolumeError(f"{path.name}: cannot read the DICOM header ({exc})") from None
    return SliceHeader(path, ds, plane_from_dataset(ds, 0), offset, length)


def sort_slices(planes: Sequence[ImagePlane]) -> tuple[list[int], np.ndarray]:
    """Order of the planes along the first plane's normal, and their sorted positions on it (mm)."""
    if not planes:
        return [], np.zeros(0)
    normal = planes[0].normal
    positions = np.array([float(np.dot(p.position, normal)) for p in planes])
    order = sorted(range(len(planes)), key=lambda i: (positions[i], i))
    return order, positions[order]


def _is_localizer(ds: Dataset) -> bool:
    image_type = ds.get("ImageType") or []
    values = [str(v).upper() for v in (image_type if not isinstance(image_type, str) else [image_type])]
    return "LOCALIZER" in values


def _same_orientation(a: ImagePlane, b: ImagePlane) -> bool:
    return bool(
        np.allclose(a.row_direction, b.row_direction, atol=ORIENTATION_TOLERANCE)
        and np.allclose(a.column_direction, b.column_direction, atol=ORIENTATION_TOLERANCE)
    )


def _describe_iop(p: ImagePlane) -> str:
    return "(" + ", ".join(f"{v:.3g}" for v in (*p.row_direction, *p.column_direction)) + ")"


def _check_geometry(headers: list[SliceHeader], warnings: list[str]) -> list[SliceHeader]:
    missing = [h.path.name for h in headers if h.plane is None]
    if missing:
        raise VolumeError(
            f"{len(missing)} slice(s) have no usable Image Position/Orientation (Patient), e.g. {missing[0]}"
        )
    localizers = [h for h in headers if _is_localizer(h.dataset)]
    if localizers and len(localizers) < len(headers):
        headers = [h for h in headers if not _is_localizer(h.dataset)]
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


def _spacing_warnings(
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


class _SliceReader:
    """Reads one slice's modality values into a volume slot; a per-thread buffer avoids per-slice allocation."""

    def __init__(self, rows: int, columns: int) -> None:
        self.rows, self.columns = rows, columns
        self._local = threading.local()

    def _buffer(self, dtype: np.dtype) -> np.ndarray:
        buf = getattr(self._local, "buf", None)
        if buf is None or buf.dtype != dtype:
            buf = np.empty(self.rows * self.columns, dtype=dtype)
            self._local.buf = buf
        return buf

    def read(self, header: SliceHeader, slot: np.ndarray) -> bool:
        """Fill `slot`; False when the values do not fit its dtype (the caller then switches to float32)."""
        ds = header.dataset
        stored = self._native(header)
        if stored is None:
            source = ImageSource.from_dataset(pydicom.dcmread(header.path, force=True))
            if source.is_color:
                raise VolumeError(f"{header.path.name}: colour slices cannot form a greyscale volume")
            values = source.modality_frame(0).reshape(slot.shape)
        else:
            slope = float(ds.get("RescaleSlope", 1) or 1)
            intercept = float(ds.get("RescaleIntercept", 0) or 0)
            if slot.dtype.kind == "i" and slope.is_integer() and intercept.is_integer():
                lo, hi = (
                    int(stored.min()) * int(slope) + int(intercept),
                    int(stored.max()) * int(slope) + int(intercept),
                )
                info = np.iinfo(slot.dtype)
                if min(lo, hi) < info.min or max(lo, hi) > info.max:
                    return False
                if slope != 1:
                    values = stored.astype(np.int32) * np.int32(slope) + np.int32(intercept)
                else:
                    np.add(stored.reshape(slot.shape), np.int32(intercept), out=slot, casting="unsafe")
                    return True
            else:
                values = stored.astype(np.float32) * np.float32(slope) + np.float32(intercept)
            values = values.reshape(slot.shape)
        if slot.dtype.kind == "i":
            if values.dtype.kind == "f" and not np.all(np.equal(np.mod(values, 1), 0)):
                return False
            info = np.iinfo(slot.dtype)
            if values.size and (values.min() < info.min or values.max() > info.max):
                return False
        slot[...] = values
        return True

    def _native(self, header: SliceHeader) -> np.ndarray | None:
        """Stored values read straight from the file, or None when this slice needs the decoder."""
        ds = header.dataset
        if header.pixel_offset is None or "ModalityLUTSequence" in ds:
            return None
        bits = int(ds.get("BitsAllocated", 0) or 0)
        if bits not in (8, 16) or int(ds.get("SamplesPerPixel", 1) or 1) != 1:
            return None
        signed = int(ds.get("PixelRepresentation", 0) or 0) == 1
        dtype = np.dtype(f"{'i' if signed else 'u'}{bits // 8}")
        if header.pixel_length < self.rows * self.columns * dtype.itemsize:
            raise VolumeError(f"{header.path.name}: the pixel data is shorter than Rows x Columns")
        buf = self._buffer(dtype)
        with open(header.path, "rb") as f:
            f.seek(header.pixel_offset)
            if f.readinto(memoryview(buf).cast("B")) != buf.nbytes:
                raise VolumeError(f"{header.path.name}: the file ends inside its pixel data")
        stored_bits = int(ds.get("BitsStored", bits) or bits)
        if stored_bits < bits:
            shift = bits - stored_bits
            np.left_shift(buf, shift, out=buf)
            np.right_shift(buf, shift, out=buf)
        return buf


def assemble_volume(
    paths: Sequence[str | Path],
    progress: Progress | None = None,
    cancel: CancelToken | None = None,
    threads: int = 2,
) -> Volume:
    """Sort slices along the normal and stack them; refuse what cannot be one volume, warn about the rest."""
    progress = progress or no_progress
    total = 2 * len(paths)
    headers = []
    for i, path in enumerate(paths):
        if cancel is not None:
            cancel.raise_if_cancelled()
        headers.append(read_slice_header(path))
        progress(i + 1, total, "reading headers")
    warnings: list[str] = []
    headers = _check_geometry(headers, warnings)
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
    tilt = headers[0].dataset.get("GantryDetectorTilt")
    try:
        tilt_value = float(tilt) if tilt not in (None, "") else None
    except (TypeError, ValueError):
        tilt_value = None
    slice_spacing, more = _spacing_warnings(positions, stack, first.normal, tilt_value)
    warnings.extend(more)

    rows, columns = first.rows, first.columns
    array = np.empty((len(headers), rows, columns), dtype=np.int16)
    reader = _SliceReader(rows, columns)
    done = [len(paths)]
    lock = threading.Lock()

    def fill(k: int) -> bool:
        if cancel is not None:
            cancel.raise_if_cancelled()
        try:
            ok = reader.read(headers[k], array[k])
        except PixelDataError as exc:
            raise VolumeError(f"{headers[k].path.name}: {exc}") from None
        with lock:
            done[0] += 1
            progress(done[0], total, "reading pixels")
        return ok

    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        results = list(pool.map(fill, range(len(headers))))
    if not all(results):
        filled = array
        array = np.empty(filled.shape, dtype=np.float32)
        for k, ok in enumerate(results):
            if ok:
                array[k] = filled[k]
        del filled
        for k, ok in enumerate(results):
            if not ok:
                reader.read(headers[k], array[k])
    direction = np.column_stack([first.row_direction, first.column_direction, first.normal])
    return Volume(
        array=array,
        spacing=(slice_spacing, first.pixel_spacing[0], first.pixel_spacing[1]),
        origin=np.array(first.position, dtype=np.float64),
        direction=direction,
        warnings=warnings,
        source_uids=[str(h.dataset.get("SOPInstanceUID", "")) for h in headers],
    )
