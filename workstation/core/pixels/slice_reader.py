"""Reading slices for a volume: each one's record (from the cache's index or its header) and its modality
values straight into the volume's slot.

An uncompressed little-endian slice is read from its file into the slot and rescaled in place; a
compressed or odd one goes through the decoding pipeline.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom

from workstation.core.dicom.geometry import ImagePlane
from workstation.core.dicom.header import DEFER, PREFIX, pixel_element_precedes, read_to_pixel_module, reader
from workstation.core.dicom.slices import SliceRecord

from .errors import PixelDataError, VolumeError
from .image import ImageSource
from .native import keep_stored_bits, read_native, read_stored, stored_dtype


@dataclass
class SliceHeader:
    """One slice of a series to assemble: its file, its record, and the size the file had when the
    record was made (a file replaced since then is decoded instead of read at a stale offset)."""

    path: Path
    record: SliceRecord
    file_size: int | None = None
    plane: ImagePlane | None = field(init=False)

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        self.plane = self.record.plane()


def read_slice_record(path: str | Path) -> tuple[SliceRecord, int]:
    """A slice's record and its file's size, read from the header without its pixel data (up to the
    Image Pixel module when native pixel data verifiably ends the file, else the whole header)."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY)
        try:
            size = os.fstat(fd).st_size
            head = os.pread(fd, min(size, PREFIX), 0)
            found = read_to_pixel_module(reader(fd), head, size)
            if found is not None:
                return SliceRecord.from_dataset(found.dataset, found.transfer_syntax), size
            with open(fd, "rb", closefd=False) as f:
                ds = pydicom.dcmread(f, force=True, defer_size=DEFER)
            return SliceRecord.from_dataset(ds), size
        finally:
            os.close(fd)
    except RecursionError:
        raise VolumeError(f"{path.name}: the file nests sequences too deeply to be read") from None
    except Exception as exc:
        raise VolumeError(f"{path.name}: cannot read the DICOM header ({exc})") from None


def read_slice_header(path: str | Path) -> SliceHeader:
    record, size = read_slice_record(path)
    return SliceHeader(Path(path), record, size)


class SliceReader:
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
    def _open(header: SliceHeader) -> int | None:
        """The slice file's descriptor when its native pixel element is where the record says, else None
        (decode instead): the file size and the element before the offset must match."""
        record = header.record
        offset = record.pixel_offset
        if offset is None or offset < 8 or record.has_modality_lut or not record.is_monochrome:
            return None
        fd = os.open(header.path, os.O_RDONLY)
        try:
            if (header.file_size is not None and os.fstat(fd).st_size != header.file_size) or \
                    not pixel_element_precedes(reader(fd), offset, record.pixel_length):
                os.close(fd)
                return None
        except BaseException:
            os.close(fd)
            raise
        return fd

    def read(self, header: SliceHeader, slot: np.ndarray) -> bool:
        """Fill `slot`; False when the values do not fit its dtype (the caller then switches to float32)."""
        fd = self._open(header)
        try:
            if fd is not None and self._direct(header, slot, fd):
                return True
            stored = self._native(header, fd) if fd is not None else None
        except PixelDataError as exc:
            raise VolumeError(f"{header.path.name}: {exc}") from None
        finally:
            if fd is not None:
                os.close(fd)
        record = header.record
        if stored is None:
            source = ImageSource.from_dataset(pydicom.dcmread(header.path, force=True))
            if source.is_color:
                raise VolumeError(f"{header.path.name}: colour slices cannot form a greyscale volume")
            values = source.modality_frame(0).reshape(slot.shape)
        else:
            slope, intercept = record.RescaleSlope, record.RescaleIntercept
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

    def _direct(self, header: SliceHeader, slot: np.ndarray, fd: int) -> bool:
        """16-bit slice whose BitsStored range, rescaled, provably fits int16: read into the slot and
        rescale in place (no temporary, three passes over the bytes)."""
        record = header.record
        if slot.dtype != np.int16 or record.BitsAllocated != 16:
            return False
        slope, intercept = record.RescaleSlope, record.RescaleIntercept
        if not (slope.is_integer() and intercept.is_integer()) or record.pixel_length < slot.nbytes:
            return False
        bits, signed = record.BitsStored, record.PixelRepresentation == 1
        if not 0 < bits <= 16:
            return False
        lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
        ends = (lo * slope + intercept, hi * slope + intercept)
        if (not signed and bits == 16) or min(ends) < -32768 or max(ends) > 32767:
            return False
        read_native(fd, record.pixel_offset, slot)
        keep_stored_bits(slot, bits, signed)
        if slope != 1:
            np.multiply(slot, np.int16(slope), out=slot)
        if intercept != 0:
            np.add(slot, np.int16(intercept), out=slot)
        return True

    def _native(self, header: SliceHeader, fd: int) -> np.ndarray | None:
        """Stored values read straight from the file, or None when this slice needs the decoder."""
        record = header.record
        bits = record.BitsAllocated
        dtype = stored_dtype(bits, record.PixelRepresentation)
        if bits not in (8, 16) or dtype is None:
            return None
        if record.pixel_length < self.rows * self.columns * dtype.itemsize:
            raise VolumeError(f"{header.path.name}: the pixel data is shorter than Rows x Columns")
        return read_stored(fd, record.pixel_offset, self.rows * self.columns, bits, record.BitsStored,
                           record.PixelRepresentation, out=self._buffer(dtype))
