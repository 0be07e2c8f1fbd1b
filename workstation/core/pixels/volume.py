"""Stack a series of single-frame slices into a 3D volume of modality values, with honest geometry warnings.

Each slice is described by a small record (geometry, pixel format, where the native pixel bytes
sit in its file). The cache stores that record at import, so opening a cached series reads no
header at all (`assemble_volume_from_headers`); `assemble_volume(paths)` builds the same records
by reading headers without pixel data. Either way the slices are sorted along the normal, the
volume is allocated once, and each uncompressed slice's bytes are read straight into its slot;
compressed or odd slices fall back to the decoding pipeline.
"""

from __future__ import annotations

import math
import mmap
import os
import struct
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import numpy as np
import pydicom
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.filereader import read_partial

from ..tasks import CancelToken, Progress, no_progress
from .errors import PixelDataError
from .geometry import ImagePlane, frame_attribute, pixel_spacing, plane_from_dataset
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


_TAG = b"\xe0\x7f\x10\x00"
_PER_FRAME = 0x52009230
_SHARED = 0x52009229
_MODALITY_LUT = 0x00283000
_PRINTABLE = bytes(range(0x20, 0x7F))
_NUMBER_VRS = {"DS": float, "IS": int}
_STRING_VRS = frozenset({"AE", "AS", "CS", "DA", "DT", "TM", "UI", "SH", "LO", "PN", "UC"})


@cache
def _tag(keyword: str) -> int:
    return tag_for_keyword(keyword)


@cache
def _dictionary_vr(tag: int) -> str | None:
    try:
        return dictionary_VR(tag)
    except KeyError:
        return None


def header_value(ds: Dataset, keyword: str):
    """An element's value, or None when absent or unreadable.

    Printable-ASCII strings, DS/IS numbers and single US values are decoded here from the raw bytes:
    pydicom's per-element conversion costs more than parsing the whole header (about 9 µs per
    value). They come back as pydicom would give them (padding stripped, numbers as float/int, a
    list when multi-valued); anything else (other VRs, non-ASCII text, deferred or odd values) goes
    through pydicom.
    """
    tag = _tag(keyword)
    elem = ds._dict.get(tag)
    if elem is None:
        return None
    if isinstance(elem, RawDataElement) and elem.value is not None:
        raw = elem.value
        vr = elem.VR or _dictionary_vr(tag)
        if (vr in _STRING_VRS or vr in _NUMBER_VRS) and not (raw := raw.rstrip(b" \x00")).translate(None, _PRINTABLE):
            items = raw.decode("ascii").split("\\")
            kind = _NUMBER_VRS.get(vr)
            if kind is None:
                return items[0] if len(items) == 1 else items
            try:
                values = [kind(v) for v in items]
            except ValueError:
                pass
            else:
                return values[0] if len(values) == 1 else values
        elif vr == "US" and len(raw) == 2:
            return int.from_bytes(raw, "little" if elem.is_little_endian else "big")
    try:
        return ds[tag].value
    except Exception:
        return None


class _Values:
    """A read-only Dataset stand-in for geometry's functions, answering `get` through `header_value`."""

    def __init__(self, ds: Dataset) -> None:
        self._ds = ds

    def get(self, keyword: str, default=None):
        value = header_value(self._ds, keyword)
        return default if value is None else value


class _RecordValues:
    """A Dataset stand-in over a stored slice record, so the plane comes from the same geometry code."""

    def __init__(self, record: dict) -> None:
        self._values = {
            "ImagePositionPatient": record.get("ipp"),
            "ImageOrientationPatient": record.get("iop"),
            "PixelSpacing": record.get("ps"),
        }
        self.Rows = record.get("rows")
        self.Columns = record.get("cols")

    def get(self, keyword: str, default=None):
        value = self._values.get(keyword)
        return default if value is None else value


def _float_list(value) -> list[float] | None:
    if value is None:
        return None
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        value = [value]
    try:
        return [float(v) for v in value]
    except (TypeError, ValueError):
        return None


def _integer(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def slice_record(ds: Dataset, offset: int | None, length: int, transfer_syntax: str = "") -> dict:
    """What volume assembly needs from one header, as plain JSON values; the cache stores it at import.

    `offset`/`length` locate the native (uncompressed little-endian) Pixel Data value in the file,
    or offset None when the slice must go through the decoder.
    """
    values = _Values(ds)

    def number(keyword: str, default, kind: type = int):
        value = header_value(ds, keyword)
        try:
            return kind(value) if value not in (None, "") else default
        except (TypeError, ValueError):
            return default

    ipp = frame_attribute(values, 0, "PlanePositionSequence", "ImagePositionPatient")
    iop = frame_attribute(values, 0, "PlaneOrientationSequence", "ImageOrientationPatient")
    spacing = pixel_spacing(values, 0)
    bits = number("BitsAllocated", 0)
    image_type = header_value(ds, "ImageType") or []
    image_type = [image_type] if isinstance(image_type, str) else list(image_type)
    if not transfer_syntax and getattr(ds, "file_meta", None) is not None:
        transfer_syntax = str(header_value(ds.file_meta, "TransferSyntaxUID") or "").rstrip("\x00 ")
    return {
        "ipp": _float_list(ipp if ipp is not None else header_value(ds, "ImagePositionPatient")),
        "iop": _float_list(iop if iop is not None else header_value(ds, "ImageOrientationPatient")),
        "ps": list(spacing) if spacing else None,
        "rows": _integer(header_value(ds, "Rows")),
        "cols": _integer(header_value(ds, "Columns")),
        "ba": bits,
        "bs": number("BitsStored", bits),
        "pr": number("PixelRepresentation", 0),
        "spp": number("SamplesPerPixel", 1),
        "pi": str(header_value(ds, "PhotometricInterpretation") or ""),
        "nf": number("NumberOfFrames", 1),
        "slope": float(number("RescaleSlope", 1.0, float)) or 1.0,
        "icpt": float(number("RescaleIntercept", 0.0, float)),
        "mlut": _MODALITY_LUT in ds._dict,
        "loc": "LOCALIZER" in (str(v).upper() for v in image_type),
        "st": number("SliceThickness", None, float),
        "tilt": number("GantryDetectorTilt", None, float),
        "ts": transfer_syntax,
        "off": offset,
        "len": length,
        "sop": str(header_value(ds, "SOPInstanceUID") or "").rstrip("\x00 "),
    }


@dataclass
class SliceHeader:
    """What sorting and fast pixel reading need from one slice: from its header, or from the cache's index."""

    path: Path
    plane: ImagePlane | None
    pixel_offset: int | None
    pixel_length: int
    bits_allocated: int = 0
    bits_stored: int = 0
    signed: bool = False
    samples: int = 1
    slope: float = 1.0
    intercept: float = 0.0
    modality_lut: bool = False
    localizer: bool = False
    sop_uid: str = ""
    tilt: float | None = None
    file_size: int | None = None

    @classmethod
    def from_record(cls, path: str | Path, record: dict, file_size: int | None = None) -> SliceHeader:
        """Build from a `slice_record`; `file_size` is what the file measured when the record was made."""
        tilt = record.get("tilt")
        return cls(
            path=Path(path),
            plane=plane_from_dataset(_RecordValues(record), 0),
            pixel_offset=record.get("off"),
            pixel_length=record.get("len") or 0,
            bits_allocated=record.get("ba", 0),
            bits_stored=record.get("bs", 0),
            signed=record.get("pr") == 1,
            samples=record.get("spp", 1),
            slope=record.get("slope", 1.0),
            intercept=record.get("icpt", 0.0),
            modality_lut=bool(record.get("mlut")),
            localizer=bool(record.get("loc")),
            sop_uid=record.get("sop", ""),
            tilt=tilt if tilt else None,
            file_size=file_size,
        )

    @classmethod
    def from_dataset(cls, path: Path, ds: Dataset, offset: int | None, length: int) -> SliceHeader:
        return cls.from_record(path, slice_record(ds, offset, length))


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


def _after_image_pixel_module(tag, vr, length) -> bool:
    """Everything a volume needs sits in groups 0008..0028; stopping there skips large private groups."""
    return tag.group > 0x0028


def _pixel_element_at_end(f, ds: Dataset) -> tuple[int | None, int]:
    """Native Pixel Data is normally the file's last element: verify its tag and length just before EOF."""
    ts = ds.file_meta.get("TransferSyntaxUID") if getattr(ds, "file_meta", None) is not None else None
    if ts is None:
        return None, 0
    uid = pydicom.uid.UID(str(ts))
    if uid.is_compressed or not uid.is_little_endian:
        return None, 0
    rows, columns = header_value(ds, "Rows"), header_value(ds, "Columns")
    bits, samples = header_value(ds, "BitsAllocated"), header_value(ds, "SamplesPerPixel") or 1
    frames = _integer(header_value(ds, "NumberOfFrames") or 1)
    if not all(isinstance(v, int) for v in (rows, columns, bits, samples, frames)):
        return None, 0
    length = rows * columns * samples * bits // 8 * frames
    length += length % 2
    head_size = 8 if uid.is_implicit_VR else 12
    size = os.fstat(f.fileno()).st_size
    offset = size - length
    if offset < head_size or bits not in (8, 16):
        return None, 0
    f.seek(offset - head_size)
    head = f.read(head_size)
    if head[:4] != _TAG:
        return None, 0
    if uid.is_implicit_VR:
        found = struct.unpack("<I", head[4:8])[0]
    else:
        found = struct.unpack("<I", head[8:12])[0] if head[4:6] in (b"OB", b"OW") else -1
    return (offset, length) if found == length else (None, 0)


def read_slice_record(path: str | Path) -> tuple[dict, int]:
    """A slice's record and its file's size, read from the header without its pixel data.

    The header is read up to the Image Pixel module when the native pixel element verifiably ends
    the file; otherwise (or for enhanced objects, whose geometry sits in functional groups) the
    whole header is read.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            ds = read_partial(f, stop_when=_after_image_pixel_module, force=True)
            offset, length = _pixel_element_at_end(f, ds)
            if offset is None or _tag("ImagePositionPatient") not in ds._dict:
                f.seek(0)
                ds = pydicom.dcmread(f, stop_before_pixels=True, force=True)
                offset, length = _pixel_element_at(f, ds)
            return slice_record(ds, offset, length), size
    except RecursionError:
        raise VolumeError(f"{path.name}: the file nests sequences too deeply to be read") from None
    except VolumeError:
        raise
    except Exception as exc:
        raise VolumeError(f"{path.name}: cannot read the DICOM header ({exc})") from None


def read_slice_header(path: str | Path) -> SliceHeader:
    """Header up to the Image Pixel module, plus where the native pixel bytes start in the file."""
    record, size = read_slice_record(path)
    return SliceHeader.from_record(path, record, size)


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


def _check_geometry(headers: list[SliceHeader], warnings: list[str]) -> list[SliceHeader]:
    missing = [h.path.name for h in headers if h.plane is None]
    if missing:
        raise VolumeError(
            f"{len(missing)} slice(s) have no usable Image Position/Orientation (Patient), e.g. {missing[0]}"
        )
    localizers = [h for h in headers if h.localizer]
    if localizers and len(localizers) < len(headers):
        headers = [h for h in headers if not h.localizer]
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

    @staticmethod
    def _open(header: SliceHeader):
        """The slice's file when its native pixel element is where the header says, else None (decode instead).

        Cheap checks that catch a file replaced since its record was made: the file size, and the
        Pixel Data tag and length just before the offset.
        """
        offset = header.pixel_offset
        if offset is None or offset < 8:
            return None
        f = open(header.path, "rb", buffering=0)
        try:
            if header.file_size is not None and os.fstat(f.fileno()).st_size != header.file_size:
                f.close()
                return None
            start = max(0, offset - 12)
            f.seek(start)
            head = f.read(offset - start)
            tag_ok = head[-8:-4] == _TAG or (len(head) == 12 and head[0:4] == _TAG and head[4:6] in (b"OB", b"OW"))
            if not tag_ok or struct.unpack("<I", head[-4:])[0] != header.pixel_length:
                f.close()
                return None
        except BaseException:
            f.close()
            raise
        return f

    @staticmethod
    def _read_into(header: SliceHeader, f, out: memoryview) -> None:
        got = 0
        while got < len(out):
            n = f.readinto(out[got:])
            if not n:
                raise VolumeError(f"{header.path.name}: the file ends inside its pixel data")
            got += n

    def read(self, header: SliceHeader, slot: np.ndarray) -> bool:
        """Fill `slot`; False when the values do not fit its dtype (the caller then switches to float32)."""
        f = self._open(header) if header.pixel_offset is not None else None
        try:
            if f is not None and self._direct(header, slot, f):
                return True
            stored = self._native(header, f) if f is not None else None
        finally:
            if f is not None:
                f.close()
        if stored is None:
            source = ImageSource.from_dataset(pydicom.dcmread(header.path, force=True))
            if source.is_color:
                raise VolumeError(f"{header.path.name}: colour slices cannot form a greyscale volume")
            values = source.modality_frame(0).reshape(slot.shape)
        else:
            slope, intercept = header.slope, header.intercept
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

    def _direct(self, header: SliceHeader, slot: np.ndarray, f) -> bool:
        """16-bit native slice whose BitsStored range, rescaled, provably fits int16: read into the slot and
        rescale in place (no temporary, three passes over the bytes)."""
        if slot.dtype != np.int16 or header.modality_lut:
            return False
        if header.bits_allocated != 16 or header.samples != 1:
            return False
        slope, intercept = header.slope, header.intercept
        if not (slope.is_integer() and intercept.is_integer()) or header.pixel_length < slot.nbytes:
            return False
        bits, signed = header.bits_stored, header.signed
        if not 0 < bits <= 16:
            return False
        lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
        ends = (lo * slope + intercept, hi * slope + intercept)
        if (not signed and bits == 16) or min(ends) < -32768 or max(ends) > 32767:
            return False
        self._read_into(header, f, memoryview(slot).cast("B"))
        if bits < 16:
            if signed:
                np.left_shift(slot, 16 - bits, out=slot)
                np.right_shift(slot, 16 - bits, out=slot)
            else:
                np.bitwise_and(slot, np.int16((1 << bits) - 1), out=slot)
        if slope != 1:
            np.multiply(slot, np.int16(slope), out=slot)
        if intercept != 0:
            np.add(slot, np.int16(intercept), out=slot)
        return True

    def _native(self, header: SliceHeader, f) -> np.ndarray | None:
        """Stored values read straight from the file, or None when this slice needs the decoder."""
        if header.modality_lut:
            return None
        bits = header.bits_allocated
        if bits not in (8, 16) or header.samples != 1:
            return None
        signed = header.signed
        dtype = np.dtype(f"{'i' if signed else 'u'}{bits // 8}")
        if header.pixel_length < self.rows * self.columns * dtype.itemsize:
            raise VolumeError(f"{header.path.name}: the pixel data is shorter than Rows x Columns")
        buf = self._buffer(dtype)
        self._read_into(header, f, memoryview(buf).cast("B"))
        stored_bits = header.bits_stored
        if stored_bits < bits:
            shift = bits - stored_bits
            np.left_shift(buf, shift, out=buf)
            np.right_shift(buf, shift, out=buf)
        return buf


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
    """One allocation, then each slice read straight into its slot.

    A single thread: pixel reads are cheap once pages are populated.
    """
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
    slice_spacing, more = _spacing_warnings(positions, stack, first.normal, headers[0].tilt)
    warnings.extend(more)

    array = _allocate((len(headers), first.rows, first.columns))
    reader = _SliceReader(first.rows, first.columns)
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
        source_uids=[h.sop_uid for h in headers],
    )
