"""Reading one DICOM instance for the cache, as fast as its layout allows, then the checks of `checks`.

Pixel data is never decoded, read or hashed, so that import stays close to the speed of a file copy.
A file on disk whose native little-endian Pixel Data ends it (the common case) is read only up to
group 0028 from its first bytes (`dicom.header.read_to_pixel_module`); otherwise the whole header in
that prefix is tried; anything else is read whole and goes through the same checks as bytes
received in memory, so the reasons given do not depend on the path.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.filereader import read_dataset
from pydicom.filewriter import dcmwrite, write_file_meta_info
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, DeflatedExplicitVRLittleEndian

from workstation.core.cache.checks import Parsed, checked
from workstation.core.cache.reports import CacheError
from workstation.core.dicom.deflated import InflateError, read_deflated
from workstation.core.dicom.header import (
    DEFER,
    PIXEL_DATA,
    PREFIX,
    read_file_meta,
    read_to_pixel_module,
    reader,
    syntax,
)

__all__ = ["Parsed", "parse_fd", "parse_file", "parse_instance"]


def _sniff_dataset_start(data: bytes) -> bool:
    """True when bytes without a preamble plausibly start with a data set (group 0002 or 0008)."""
    if len(data) < 8:
        return False
    le = int.from_bytes(data[0:2], "little")
    be = int.from_bytes(data[0:2], "big")
    return le in (0x0002, 0x0008) or be in (0x0002, 0x0008)


def _part10(ds: Dataset, data: bytes, ts: str, sop_class: str, sop: str) -> bytes:
    """Give a file without File Meta a proper Part-10 header; its data set bytes stay untouched when possible."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop
    meta.TransferSyntaxUID = ts
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = "WORKSTATION"
    starts_with_meta = int.from_bytes(data[0:2], "little") == 0x0002
    if data[128:132] != b"DICM" and not starts_with_meta:
        buf = io.BytesIO()
        buf.write(b"\x00" * 128 + b"DICM")
        write_file_meta_info(buf, meta, enforce_standard=True)
        buf.write(data)
        return buf.getvalue()
    full = pydicom.dcmread(io.BytesIO(data), force=True)
    full.file_meta = meta
    buf = io.BytesIO()
    dcmwrite(buf, full, enforce_file_format=True)
    return buf.getvalue()


def _read(data: bytes, has_preamble: bool) -> Dataset:
    try:
        # pydicom would inflate a deflated data set whatever size it declares: ours is bounded
        return read_deflated(data, DEFER) or pydicom.dcmread(io.BytesIO(data), force=not has_preamble, defer_size=DEFER)
    except InflateError as exc:
        raise CacheError(str(exc)) from None
    except RecursionError:
        raise CacheError("cannot be read: sequences are nested too deeply") from None
    except (InvalidDicomError, EOFError) as exc:
        raise CacheError(f"truncated or not a DICOM file: {exc}") from None
    except Exception as exc:
        raise CacheError(f"cannot be read: {type(exc).__name__}: {exc}") from None


def parse_instance(data: bytes) -> Parsed:
    """Check one Part-10 file (or a bare data set) held in memory; raise CacheError(reason) if it is refused."""
    has_preamble = data[128:132] == b"DICM"
    if not has_preamble and not _sniff_dataset_start(data):
        raise CacheError("not a DICOM file")
    ds = _read(data, has_preamble)
    meta = getattr(ds, "file_meta", None) or FileMetaDataset()
    parsed, needs_meta = checked(ds, meta, data, len(data), has_preamble)
    if needs_meta:
        ia = parsed.instance_attrs
        return parse_instance(_part10(ds, data, ia["TransferSyntaxUID"], ia["SOPClassUID"], parsed.sop))
    parsed.data = data
    return parsed


def _parse_to_pixel_module(fd: int, head: bytes, size: int) -> Parsed | None:
    """The fast path: the header up to group 0028 and native Pixel Data found at the end of the file.

    None unless every check passes here; the caller then parses more, so reasons always come from
    the full parse.
    """
    header = read_to_pixel_module(reader(fd), head, size)
    if header is None:
        return None
    try:
        parsed, needs_meta = checked(header.dataset, header.meta, head, size, True)
    except Exception:
        return None
    return None if needs_meta else parsed


def _parse_head(head: bytes, size: int) -> Parsed | None:
    """The fast path for a file larger than `head`: None unless its native Pixel Data ends the file exactly.

    File Meta and data set are read with pydicom's `read_dataset` directly, which skips the work
    `dcmread` does around it (a third of the time for a typical CT header).
    """
    opened = read_file_meta(head)
    if opened is None:
        return None
    fp, meta, ts = opened
    try:
        if not ts or ts == DeflatedExplicitVRLittleEndian:
            return None
        uid = syntax(ts)
        ds = read_dataset(fp, uid.is_implicit_VR, uid.is_little_endian, defer_size=DEFER)
    except Exception:
        return None
    if not ds._dict or next(reversed(ds._dict)) != PIXEL_DATA:
        return None
    raw = ds._dict[PIXEL_DATA]
    length, tell = getattr(raw, "length", None), getattr(raw, "value_tell", None)
    if length in (None, 0xFFFFFFFF) or tell is None or tell > len(head) or tell + length != size:
        return None
    try:
        parsed, needs_meta = checked(ds, meta, head, size, True)
    except CacheError:
        return None
    return None if needs_meta else parsed


def parse_fd(fd: int, size: int, label: str) -> Parsed:
    """Check the file open as `fd` (of `size` bytes) without reading its pixel data when it can.

    The result's `data` is empty when the file is to be stored as it is, and holds the bytes to
    store when the file had to be rewritten (no File Meta). The descriptor's offset is not moved.
    """
    head = os.pread(fd, min(size, PREFIX), 0)
    if len(head) < size:
        parsed = _parse_to_pixel_module(fd, head, size) or _parse_head(head, size)
        if parsed is not None:
            parsed.source = label
            return parsed
        head = os.pread(fd, size, 0)
    parsed = parse_instance(head)
    if parsed.data is head:
        parsed.data = b""
    parsed.source = label
    return parsed


def parse_file(path: str | os.PathLike[str]) -> Parsed:
    """Check one file on disk (see `parse_fd`); raise CacheError(reason) if it is refused."""
    fd = os.open(path, os.O_RDONLY)
    try:
        return parse_fd(fd, os.fstat(fd).st_size, str(Path(path)))
    finally:
        os.close(fd)
