"""One DICOM image object's pixels: header checked once, frames decoded lazily, Modality LUT (PS3.3 C.11.1).

The header is validated before anything is decoded, so a crafted Rows x Columns cannot make us
allocate gigabytes; every failure is a PixelDataError with a one-line reason.

A native little-endian file whose Pixel Data ends it is opened through the header fast path (parsed up
to group 0028, `dicom.header.read_to_pixel_module`) and its frames are read from the file at their
offsets; everything else is read whole by pydicom and decoded by its plugins. The rest of a fast-path
header is read only when asked for (`header()`).
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.pixels import apply_color_lut, get_decoder
from pydicom.uid import UID

from workstation.core.dicom.codecs import decoder_problem, transfer_syntax_name
from workstation.core.dicom.frames import frame_span, native_size
from workstation.core.dicom.geometry import (
    ImagePlane,
    SpacingInfo,
    frame_attribute,
    plane_from_dataset,
    spacing_info,
)
from workstation.core.dicom.header import (
    DEFER,
    PREFIX,
    pixel_element_precedes,
    read_to_pixel_module,
    reader,
    syntax,
)
from workstation.core.dicom.values import Values, header_value, integer, text

from .errors import PixelDataError
from .native import as_stored_values, read_stored
from .overlays import Overlay, embedded, frame_overlays, overlay_groups
from .shutters import Shutter, read_shutter
from .voi import FUNCTIONS, VoiLut, Window

MAX_FRAME_BYTES = 1 << 30
"""No real frame is near 1 GiB decoded; refusing more stops crafted headers from exhausting memory."""

CACHE_FRAMES = 8
CACHE_BYTES = 256 << 20

_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
_PIXEL_TAGS = frozenset({0x7FE00010, 0x7FE00008, 0x7FE00009})
_PRESENTATION_LUT_SHAPE = 0x20500020
_LATE_TAGS = (_PRESENTATION_LUT_SHAPE,)
"""Tags beyond group 0028 the pipeline itself reads: a fast-path file that may have one reads its header."""
_FAST_PHOTOMETRIC = frozenset({"", "MONOCHROME1", "MONOCHROME2", "PALETTE COLOR"})


def _size(n: float) -> str:
    for unit, factor in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if n >= factor:
            return f"{n / factor:.1f} {unit}"
    return f"{int(n)} bytes"


def _one_line(exc: BaseException) -> str:
    """Compress pydicom's multi-line 'all plugins failed' report into "plugin says '...'" phrases."""
    text = str(exc).strip()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if len(lines) > 1 and lines[0].lower().startswith("unable to decode"):
        parts = []
        for ln in lines[1:]:
            plugin, _, msg = ln.partition(":")
            parts.append(f"{plugin.strip()} says '{msg.strip()}'")
        return "; ".join(parts)
    return " ".join(lines) or type(exc).__name__


def _int(ds: Values, keyword: str, default: int | None = None) -> int:
    value = ds.get(keyword, default)
    if value is None or value == "":
        if default is None:
            raise PixelDataError(f"the header has no {keyword}, so the pixels cannot be interpreted")
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        raise PixelDataError(f"{keyword} {str(value)!r} is not a number") from None


@dataclass(frozen=True)
class ModalityTransform:
    """Stored value -> modality value: a rescale (slope, intercept) or a Modality LUT (C.11.1)."""

    slope: float = 1.0
    intercept: float = 0.0
    lut: VoiLut | None = None

    @property
    def is_identity(self) -> bool:
        return self.lut is None and self.slope == 1.0 and self.intercept == 0.0

    @property
    def is_integral(self) -> bool:
        """True when integer inputs stay exact integers (so int32 suffices)."""
        if self.lut is not None:
            return True
        return float(self.slope).is_integer() and float(self.intercept).is_integer()

    def apply(self, stored: np.ndarray) -> np.ndarray:
        """int32 when exact in integers, float32 otherwise."""
        if self.lut is not None:
            idx = np.clip(stored.astype(np.int64) - self.lut.first_mapped, 0, len(self.lut.data) - 1)
            return self.lut.data[idx].astype(np.int32)
        if np.issubdtype(stored.dtype, np.floating):
            return (stored * self.slope + self.intercept).astype(np.float32)
        if self.is_integral:
            out = stored.astype(np.int32)
            if self.slope != 1.0:
                out *= int(self.slope)
            if self.intercept != 0.0:
                out += int(self.intercept)
            return out
        return (stored.astype(np.float32) * np.float32(self.slope) + np.float32(self.intercept)).astype(
            np.float32
        )

    def apply_values(self, values: np.ndarray) -> np.ndarray:
        """The same mapping in float64, for small tables over a stored-value range."""
        if self.lut is not None:
            idx = np.clip(
                np.asarray(values, dtype=np.int64) - self.lut.first_mapped, 0, len(self.lut.data) - 1
            )
            return self.lut.data[idx].astype(np.float64)
        return np.asarray(values, dtype=np.float64) * self.slope + self.intercept


def _lut_from_item(item: Dataset, signed_first: bool) -> VoiLut | None:
    """LUT Descriptor/Data per C.11.1.1.1: 0 entries means 65536; the first mapped value follows the pixel sign."""
    desc = item.get("LUTDescriptor")
    data = item.get("LUTData")
    if desc is None or data is None or len(desc) != 3:
        return None
    entries, first, bits = (int(v) for v in desc)
    entries = entries or 65536
    if signed_first and first > 32767:
        first -= 65536
    if isinstance(data, bytes | bytearray):
        dtype = "<u2" if bits > 8 or len(data) >= 2 * entries else "u1"
        arr = np.frombuffer(data, dtype=dtype)
    else:
        arr = np.asarray(data if not isinstance(data, int) else [data])
    arr = np.asarray(arr, dtype=np.int64)[:entries]
    if arr.size == 0:
        return None
    explanation = str(item.get("LUTExplanation", "") or "")
    return VoiLut(first, bits, arr, explanation)


def _fast_path_fits(ds: Dataset) -> bool:
    """Whether frames of a fast-path header are read here: whole-byte greyscale or palette samples, or
    8-bit RGB (YBR, 1-bit and others go through pydicom's decoders)."""
    bits, samples = integer(ds, "BitsAllocated"), integer(ds, "SamplesPerPixel") or 1
    photometric = text(ds, "PhotometricInterpretation").upper()
    if samples == 1:
        return bits in (8, 16, 32) and photometric in _FAST_PHOTOMETRIC
    return samples == 3 and bits == 8 and photometric == "RGB"


def _shallow_copy(ds: Dataset, skip: frozenset[int] = frozenset()) -> Dataset:
    """The same elements (shared, not copied) in a new Dataset with the same File Meta and encoding."""
    clone = Dataset({tag: ds.get_item(tag, keep_deferred=True) for tag in ds.keys() if tag not in skip})
    meta = getattr(ds, "file_meta", None)
    if meta is not None:
        clone.file_meta = FileMetaDataset({tag: meta.get_item(tag) for tag in meta.keys()})
    implicit, little = ds.original_encoding
    if implicit is not None:
        clone.set_original_encoding(implicit, little, ds.original_character_set)
    return clone


class ImageSource:
    """One instance: header read once, frames decoded lazily; a small LRU of decoded frames for
    multi-frame files (a single frame is decoded for whoever asks and not kept)."""

    def __init__(self, ds: Dataset, path: str | Path | None = None, *, pixel_offset: int | None = None,
                 file_size: int | None = None, mentioned: frozenset[int] | None = None,
                 transfer_syntax: str | None = None) -> None:
        self.dataset = ds
        """The header as read: for a file opened by the fast path only up to group 0028, without File
        Meta (its Pixel Data a raw element giving the offset); `header()` has the rest."""
        if transfer_syntax is not None:
            self.transfer_syntax = syntax(transfer_syntax)
        self.path = Path(path) if path is not None else None
        self._values = Values(ds)
        self._pixel_offset = pixel_offset
        self._file_size = file_size
        self._mentioned = mentioned
        self._header: Dataset | None = None
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self._validate()

    @classmethod
    def open(cls, path: str | Path) -> ImageSource:
        """Read and validate a file; unreadable or pixel-less files raise PixelDataError."""
        path = Path(path)
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError as exc:
            raise PixelDataError(f"{path.name}: cannot read the DICOM file: {exc.strerror or exc}") from None
        try:
            size = os.fstat(fd).st_size
            head = os.pread(fd, min(size, PREFIX), 0)
            found = read_to_pixel_module(reader(fd), head, size, _LATE_TAGS)
            if found is not None and _fast_path_fits(found.dataset):
                return cls._fast(found, path, size)
            with open(fd, "rb", closefd=False) as f:
                ds = pydicom.dcmread(f, force=True)
        except RecursionError:
            raise PixelDataError(f"{path.name}: the file nests sequences too deeply to be read") from None
        except PixelDataError:
            raise
        except Exception as exc:
            raise PixelDataError(f"{path.name}: cannot read the DICOM file: {_one_line(exc)}") from None
        finally:
            os.close(fd)
        return cls(ds, path)

    @classmethod
    def _fast(cls, found: Any, path: Path, size: int) -> ImageSource:
        ds = found.dataset
        # Values longer than DEFER were left in the file: pydicom reads one from there when it is asked for.
        ds.filename, ds.fileobj_type, ds.timestamp, ds.buffer = str(path), open, None, None
        offset = ds._dict[0x7FE00010].value_tell
        return cls(ds, path, pixel_offset=offset, file_size=size, mentioned=found.mentioned,
                   transfer_syntax=found.transfer_syntax)

    @classmethod
    def from_dataset(cls, ds: Dataset) -> ImageSource:
        """Wrap an already-read dataset; a shallow copy is taken because missing defaults get filled in."""
        return cls(_shallow_copy(ds))

    @property
    def is_native_file(self) -> bool:
        """True when frames are read from the file at their offsets (the fast path), not decoded by pydicom."""
        return self._pixel_offset is not None

    def _validate(self) -> None:
        ds, values = self.dataset, self._values
        keyword = next((k for k in _PIXEL_KEYWORDS if k in ds), None)
        if keyword is None:
            raise PixelDataError("the file has no pixel data")
        self.pixel_keyword = keyword
        if not self.is_native_file:
            self._ensure_transfer_syntax()
        self.rows = _int(values, "Rows")
        self.columns = _int(values, "Columns")
        self.bits_allocated = _int(values, "BitsAllocated")
        self.bits_stored = _int(values, "BitsStored", self.bits_allocated)
        self.samples_per_pixel = _int(values, "SamplesPerPixel", 1)
        self.pixel_representation = _int(values, "PixelRepresentation", 0)
        self.number_of_frames = _int(values, "NumberOfFrames", 1) if "NumberOfFrames" in ds else 1
        pi = str(values.get("PhotometricInterpretation", "") or "").strip().upper()
        if not pi:
            pi = "MONOCHROME2" if self.samples_per_pixel == 1 else "RGB"
        self.photometric = pi
        if self.rows <= 0 or self.columns <= 0:
            raise PixelDataError(f"Rows x Columns ({self.rows} x {self.columns}) is empty")
        if self.number_of_frames <= 0:
            raise PixelDataError(f"Number of Frames is {self.number_of_frames}")
        if self.bits_allocated not in (1, 8, 16, 32, 64):
            raise PixelDataError(f"Bits Allocated {self.bits_allocated} is not 1, 8, 16, 32 or 64")
        if not 0 < self.bits_stored <= self.bits_allocated:
            raise PixelDataError(
                f"Bits Stored {self.bits_stored} does not fit Bits Allocated {self.bits_allocated}"
            )
        if self.samples_per_pixel not in (1, 3):
            raise PixelDataError(f"Samples per Pixel {self.samples_per_pixel} is not 1 or 3")
        if self.pixel_representation not in (0, 1):
            raise PixelDataError(f"Pixel Representation {self.pixel_representation} is not 0 or 1")
        if self.samples_per_pixel == 3 and pi.startswith("MONOCHROME"):
            raise PixelDataError(f"{pi} with 3 samples per pixel is contradictory")
        self.planar_configuration = _int(values, "PlanarConfiguration", 0) if self.samples_per_pixel > 1 else 0
        if not self.is_native_file:
            # Fill in what pydicom's decoder insists on, with the defaults the standard implies.
            ds.BitsStored = self.bits_stored
            ds.SamplesPerPixel = self.samples_per_pixel
            ds.PixelRepresentation = self.pixel_representation
            ds.PhotometricInterpretation = pi
            if self.samples_per_pixel > 1 and "PlanarConfiguration" not in ds:
                ds.PlanarConfiguration = 0

        shape = (self.rows, self.columns, self.samples_per_pixel, self.bits_allocated)
        # Decoded, YBR_FULL_422 comes out with three samples per pixel; native, it keeps two.
        frame_bytes = native_size(*shape, 1, "" if self.transfer_syntax.is_encapsulated else pi)
        dims = f"Rows x Columns ({self.rows} x {self.columns})"
        if self.is_native_file:
            held = ds.get_item(0x7FE00010, keep_deferred=True).length   # checked against the image's size by the fast path
        else:
            value = ds[keyword].value
            held = len(value) if value is not None else 0
        if not self.transfer_syntax.is_encapsulated:
            needed = native_size(*shape, self.number_of_frames, pi)
            if held < needed:
                if self.number_of_frames > 1:
                    dims += f" x {self.number_of_frames} frames"
                raise PixelDataError(
                    f"{dims} needs {_size(needed)} but the file holds {_size(held)} of pixel data"
                )
        elif held == 0:
            raise PixelDataError("the encapsulated pixel data is empty")
        if frame_bytes > MAX_FRAME_BYTES:
            raise PixelDataError(
                f"{dims} needs {_size(frame_bytes)} per frame, more than the {_size(MAX_FRAME_BYTES)} limit"
            )

    def header(self) -> Dataset:
        """The whole header without pixel data, read once: for a file opened by the fast path the first
        call reads the file again in full (groups after 0028: overlays, PET's 0054, private groups...)."""
        with self._lock:
            if self._header is None:
                self._header = self._read_header()
            return self._header

    def _read_header(self) -> Dataset:
        if not self.is_native_file:
            return _shallow_copy(self.dataset, _PIXEL_TAGS)
        name = self.path.name if self.path is not None else "the file"
        try:
            return pydicom.dcmread(self.path, force=True, stop_before_pixels=True, defer_size=DEFER)
        except RecursionError:
            raise PixelDataError(f"{name}: the file nests sequences too deeply to be read") from None
        except Exception as exc:
            raise PixelDataError(f"{name}: cannot read the rest of the header: {_one_line(exc)}") from None

    def value(self, keyword: str) -> Any:
        """Any header attribute's value (None when absent): beyond group 0028 through `header()` on the
        fast path, which read only up to there."""
        tag = tag_for_keyword(keyword)
        if tag is None:
            return None
        if tag >> 16 <= 0x0028 or not self.is_native_file:
            return header_value(self.dataset, keyword)
        return header_value(self.header(), keyword)

    def _late(self, keyword: str, tag: int) -> Any:
        """An attribute beyond group 0028: from the dataset when it is whole, else from `header()` when
        the fast path saw its tag in the part it skipped, else None (it is certainly absent)."""
        if self._mentioned is None:
            return self._values.get(keyword)
        if tag in self._mentioned:
            return self.header().get(keyword)
        return None

    def _ensure_transfer_syntax(self) -> None:
        """Files without File Meta: use the encoding the reader detected (only native encodings are possible)."""
        ds = self.dataset
        meta = getattr(ds, "file_meta", None)
        ts = meta.get("TransferSyntaxUID") if meta is not None else None
        if not ts:
            implicit, little = getattr(ds, "original_encoding", (None, None))
            if implicit is None:
                implicit, little = ds.is_implicit_VR, ds.is_little_endian
            if implicit is None:
                raise PixelDataError("the transfer syntax is unknown (no File Meta) and cannot be guessed")
            ts = (
                "1.2.840.10008.1.2"
                if implicit
                else ("1.2.840.10008.1.2.1" if little else "1.2.840.10008.1.2.2")
            )
            if meta is None:
                ds.file_meta = FileMetaDataset()
            ds.file_meta.TransferSyntaxUID = UID(ts)
        uid = UID(str(ts))
        if not uid.is_transfer_syntax and not uid.is_private:
            raise PixelDataError(f"{uid} is not a transfer syntax")
        self.transfer_syntax = uid

    @property
    def is_color(self) -> bool:
        """True when frames come out as RGB uint8 (H, W, 3)."""
        return self.samples_per_pixel == 3 or self.photometric == "PALETTE COLOR"

    @property
    def invert(self) -> bool:
        """Display inversion: MONOCHROME1, or Presentation LUT Shape INVERSE on MONOCHROME2.

        For MONOCHROME1 the standard pairs INVERSE with it (e.g. DX), meaning the same single inversion.
        """
        if self.photometric == "MONOCHROME1":
            return True
        shape = self._late("PresentationLUTShape", _PRESENTATION_LUT_SHAPE)
        return str(shape or "").strip().upper() == "INVERSE"

    def _check_index(self, index: int) -> None:
        if not 0 <= index < self.number_of_frames:
            raise IndexError(f"frame {index} out of range 0..{self.number_of_frames - 1}")

    @property
    def nbytes(self) -> int:
        """Bytes of the decoded frames this source keeps (its LRU; nothing for a single-frame file)."""
        with self._lock:
            return sum(a.nbytes for a in self._cache.values())

    def decode_frame(self, index: int) -> np.ndarray:
        """Frame `index` decoded afresh into an array the caller owns (writable, kept by no one else):
        stored values as `stored_frame` gives them."""
        self._check_index(index)
        return self._decode(index)

    def stored_frame(self, index: int) -> np.ndarray:
        """Decoded stored values (BitsStored masked, signed handled); colour as RGB uint8 (H, W, 3).
        Read-only; a multi-frame file keeps the last few in an LRU, a single frame is not kept."""
        self._check_index(index)
        if self.number_of_frames == 1:
            arr = self._decode(index)
            arr.flags.writeable = False
            return arr
        with self._lock:
            hit = self._cache.get(index)
            if hit is not None:
                self._cache.move_to_end(index)
                return hit
        arr = self._decode(index)
        arr.flags.writeable = False
        with self._lock:
            self._cache[index] = arr
            total = sum(a.nbytes for a in self._cache.values())
            while len(self._cache) > 1 and (len(self._cache) > CACHE_FRAMES or total > CACHE_BYTES):
                _, old = self._cache.popitem(last=False)
                total -= old.nbytes
        return arr

    def _decode(self, index: int) -> np.ndarray:
        arr = self._read_native(index) if self.is_native_file else self._decoded(index, correct=True)
        if self.photometric == "PALETTE COLOR":
            return self._palette(arr)
        if self.samples_per_pixel == 3:
            return self._rgb8(arr)
        if not self.is_native_file:
            arr = as_stored_values(arr, self.bits_stored, self.pixel_representation == 1)
        return np.ascontiguousarray(arr)

    def _read_native(self, index: int) -> np.ndarray:
        """Frame `index` read from the file at its offset (the fast path's files), Bits Stored applied."""
        start, length = frame_span(index, self.rows, self.columns, self.samples_per_pixel, self.bits_allocated,
                                   self.photometric)
        offset = self._pixel_offset
        name = self.path.name
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except OSError as exc:
            raise PixelDataError(f"{name}: cannot read the pixel data: {exc.strerror or exc}") from None
        try:
            if os.fstat(fd).st_size != self._file_size or \
                    not pixel_element_precedes(reader(fd), offset, self.dataset.get_item(0x7FE00010, keep_deferred=True).length):
                raise PixelDataError("the file changed since its header was read")
            count = self.rows * self.columns * self.samples_per_pixel
            arr = read_stored(fd, offset + start, count, self.bits_allocated, self.bits_stored,
                              self.pixel_representation)
        except PixelDataError as exc:
            raise PixelDataError(f"{name}: {exc}") from None
        finally:
            os.close(fd)
        if self.samples_per_pixel == 1:
            return arr.reshape(self.rows, self.columns)
        if self.planar_configuration == 1:
            return np.ascontiguousarray(arr.reshape(3, self.rows, self.columns).transpose(1, 2, 0))
        return arr.reshape(self.rows, self.columns, 3)

    def _decoded(self, index: int, correct: bool) -> np.ndarray:
        """Frame `index` through pydicom's decoders, shaped (rows, columns[, samples]); `correct` False
        leaves the bits above Bits Stored as they are (overlays may be there)."""
        ts = self.transfer_syntax
        problem = decoder_problem(str(ts))
        if problem is not None:
            raise PixelDataError(problem)
        try:
            arr, props = get_decoder(ts).as_array(
                self.dataset,
                index=index if self.number_of_frames > 1 else None,
                correct_unused_bits=correct,
                number_of_frames=self.number_of_frames,
            )
        except Exception as exc:
            raise PixelDataError(f"cannot decode {transfer_syntax_name(ts)}: {_one_line(exc)}") from None
        shape = (self.rows, self.columns) + ((self.samples_per_pixel,) if self.samples_per_pixel > 1 else ())
        if arr.shape != shape:
            try:
                arr = arr.reshape(shape)
            except ValueError:
                raise PixelDataError(f"decoded frame has shape {arr.shape}, expected {shape}") from None
        return arr

    def _rgb8(self, arr: np.ndarray) -> np.ndarray:
        if arr.dtype == np.uint8:
            return np.ascontiguousarray(arr)
        shift = max(self.bits_stored - 8, 0)
        return np.ascontiguousarray((arr.astype(np.uint32) >> shift).clip(0, 255).astype(np.uint8))

    def _palette(self, arr: np.ndarray) -> np.ndarray:
        """PALETTE COLOR through the Red/Green/Blue Palette LUTs (C.7.6.3.1.5), scaled to 8 bits."""
        try:
            rgb = apply_color_lut(arr, self.dataset)
        except Exception as exc:
            raise PixelDataError(f"cannot apply the palette colour lookup tables: {_one_line(exc)}") from None
        if rgb.dtype != np.uint8:
            if int(rgb.max(initial=0)) > 255:
                rgb = rgb >> 8
            rgb = rgb.astype(np.uint8)
        return np.ascontiguousarray(rgb)

    def modality_transform(self, index: int = 0) -> ModalityTransform:
        """Per-frame Pixel Value Transformation first, then top-level Rescale, then Modality LUT Sequence."""
        ds = self._values
        slope = frame_attribute(ds, index, "PixelValueTransformationSequence", "RescaleSlope")
        intercept = frame_attribute(ds, index, "PixelValueTransformationSequence", "RescaleIntercept")
        if slope is None and intercept is None:
            slope, intercept = ds.get("RescaleSlope"), ds.get("RescaleIntercept")
        if slope is None and intercept is None:
            seq = ds.get("ModalityLUTSequence")
            if seq:
                lut = _lut_from_item(seq[0], self.pixel_representation == 1)
                if lut is not None:
                    return ModalityTransform(lut=lut)
            return ModalityTransform()
        try:
            s = float(slope) if slope not in (None, "") else 1.0
            b = float(intercept) if intercept not in (None, "") else 0.0
        except (TypeError, ValueError):
            raise PixelDataError(f"Rescale Slope/Intercept {slope!r}/{intercept!r} are not numbers") from None
        if not np.isfinite(s) or not np.isfinite(b) or s == 0:
            s, b = 1.0, 0.0
        return ModalityTransform(s, b)

    def modality_frame(self, index: int) -> np.ndarray:
        """Grey: modality values (int32 when exact, else float32). Colour: the RGB uint8 frame."""
        stored = self.stored_frame(index)
        if self.is_color:
            return stored
        return self.modality_transform(index).apply(stored)

    def windows(self, index: int = 0) -> list[Window]:
        """All window centre/width pairs for a frame (Frame VOI LUT macro first), with function and explanation."""
        for container in self._voi_containers(index):
            centers = container.get("WindowCenter")
            widths = container.get("WindowWidth")
            if centers is None or widths is None:
                continue
            found = self._parse_windows(container, centers, widths)
            if found:
                return found
        return []

    def _voi_containers(self, index: int) -> list[Any]:
        ds = self._values
        containers = []
        for keyword in ("PerFrameFunctionalGroupsSequence", "SharedFunctionalGroupsSequence"):
            groups = ds.get(keyword)
            i = index if keyword.startswith("Per") else 0
            if groups and 0 <= i < len(groups):
                seq = groups[i].get("FrameVOILUTSequence")
                if seq:
                    containers.append(seq[0])
        containers.append(ds)
        return containers

    @staticmethod
    def _parse_windows(container: Any, centers: Any, widths: Any) -> list[Window]:
        def as_list(v: Any) -> list[Any]:
            return (
                list(v)
                if isinstance(v, list | tuple) or hasattr(v, "__iter__") and not isinstance(v, str)
                else [v]
            )

        cs, ws = as_list(centers), as_list(widths)
        expl = container.get("WindowCenterWidthExplanation", "")
        es = as_list(expl) if expl else []
        function = str(container.get("VOILUTFunction", "LINEAR") or "LINEAR").strip().upper()
        if function not in FUNCTIONS:
            function = "LINEAR"
        out = []
        for i, (c, w) in enumerate(zip(cs, ws, strict=False)):
            try:
                c, w = float(c), float(w)
            except (TypeError, ValueError):
                continue
            if not (np.isfinite(c) and np.isfinite(w)) or w <= 0 or (function == "LINEAR" and w < 1):
                continue
            out.append(Window(c, w, function, str(es[i]).strip() if i < len(es) else ""))
        return out

    def voi_lut_sequence(self, index: int = 0) -> list[VoiLut]:
        """The VOI LUT Sequence items (C.11.2.1.1) for a frame; empty when there are none."""
        signed = self.pixel_representation == 1 and self.modality_transform(index).is_identity
        for container in self._voi_containers(index):
            seq = container.get("VOILUTSequence")
            if seq:
                luts = [lut for item in seq if (lut := _lut_from_item(item, signed)) is not None]
                if luts:
                    return luts
        return []

    def plane(self, index: int = 0) -> ImagePlane | None:
        """Geometry of a frame (per-frame functional groups for enhanced objects); None without IPP/IOP."""
        self._check_index(index)
        return plane_from_dataset(self._values, index)

    def spacing(self, index: int = 0) -> SpacingInfo:
        """What the frame's pixel spacing means (in the patient, at the detector, ultrasound regions, none)."""
        self._check_index(index)
        return spacing_info(self._values, index)

    def shutter(self, index: int = 0) -> Shutter | None:
        """The frame's display shutter (C.7.6.11, or its Frame Display Shutter functional group), or None."""
        self._check_index(index)
        return read_shutter(self._values, index)

    def overlays(self, index: int = 0) -> list[Overlay]:
        """The overlay planes that apply to frame `index` (empty for a fast-path file: the fast path
        declines files with overlay planes). A plane in the unused bits of Pixel Data is read from the
        frame decoded again without the Bits Stored mask."""
        self._check_index(index)
        if self._mentioned is not None or not overlay_groups(self.dataset):
            return []
        unmasked = None
        if embedded(self.dataset) and not self.is_color:
            unmasked = self._decoded(index, correct=False)
        return frame_overlays(self.dataset, index, unmasked)
