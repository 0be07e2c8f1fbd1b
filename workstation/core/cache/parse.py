"""Read and check one DICOM instance before it enters the cache.

Only the header is interpreted (pixel data is deferred, never decoded, never hashed) so that import
stays close to the speed of a file copy; what can be checked cheaply is checked here so that the
viewer never meets a file the cache accepted but cannot show: missing or unsafe UIDs, truncation,
native pixel data shorter than its geometry needs, and compressed pixel data without an installed
decoder.

A file on disk whose native little-endian Pixel Data ends it exactly (the common case) is parsed
only up to group 0028 from its first 64 KiB: the Pixel Data element header is then verified where
the image geometry says it must sit, just before the end of the file, so the private groups between
are never parsed. When that does not hold (or functional groups may follow) the whole header in the
prefix is parsed; anything else is read whole and goes through the same checks as bytes received in
memory, so the reasons given do not depend on the path.
"""

from __future__ import annotations

import io
import json
import os
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import pydicom
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.filereader import read_dataset
from pydicom.filewriter import dcmwrite, write_file_meta_info
from pydicom.multival import MultiValue
from pydicom.tag import BaseTag
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from workstation.core.cache.reports import CacheError
from workstation.core.pixels.volume import header_value, slice_record

MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"
_UID_RE = re.compile(r"[A-Za-z0-9.]{1,64}")
_PATHLIKE_RE = re.compile(r"[/\\:]|\.\.|^~")
_PIXEL_DATA = 0x7FE00010
_DIRECTORY_RECORDS = 0x00041220
_PIXEL_REPRESENTATION = 0x00280103
_NUMBER_OF_FRAMES = 0x00280008
_PREFIX = 64 * 1024
_SEQ_DELIM_LE = b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"
_SEQ_DELIM_BE = b"\xff\xfe\xe0\xdd\x00\x00\x00\x00"
_DEFER = 1024
_LAST_HEADER_GROUP = 0x0028
_NATIVE_LE = frozenset({str(ExplicitVRLittleEndian), str(ImplicitVRLittleEndian)})
_PIXEL_TAG_LE = b"\xe0\x7f\x10\x00"
_FUNCTIONAL_GROUPS_LE = (b"\x00\x52\x29\x92", b"\x00\x52\x30\x92")
"""(5200,9229) and (5200,9230) as stored: where enhanced objects keep the geometry of their frames."""
_MAX_SKIPPED = 1 << 20


@dataclass
class Parsed:
    """A checked instance and the attributes the index keeps.

    `data` holds the bytes to store when they came from memory or had to be rewritten; it is empty
    when the file at `source` is to be copied as it is. `geometry` is the JSON slice record volume
    assembly reads instead of the header. `sha1` is not used by the cache (contents are compared
    only when a SOP Instance UID is already stored); it stays for callers that build records by hand.
    """

    data: bytes
    sop: str
    study: str
    series: str
    patient: dict = field(default_factory=dict)
    study_attrs: dict = field(default_factory=dict)
    series_attrs: dict = field(default_factory=dict)
    instance_attrs: dict = field(default_factory=dict)
    size: int = 0
    staged: str = ""
    source: str = ""
    geometry: str | None = None
    sha1: str = ""


def check_uid(value: str, keyword: str) -> str:
    """Return the UID if it is safe to index.

    Lenient where real files are (leading zeros, letters such as hex UIDs): files are named by a
    hash of the UID, so only characters that could steer a path or break a query are refused.
    """
    if _UID_RE.fullmatch(value) and ".." not in value:
        return value
    if _PATHLIKE_RE.search(value):
        raise CacheError(f"unsafe UID {value!r} in {keyword}")
    raise CacheError(f"invalid UID {value!r} in {keyword}: a UID is 1-64 letters, digits and dots")


def _text(ds: Dataset, keyword: str) -> str:
    value = header_value(ds, keyword)
    if value is None:
        return ""
    if type(value) is str:
        return value.strip()
    if isinstance(value, (list, tuple, MultiValue)):
        return "\\".join(str(v) for v in value).strip()
    return str(value).strip()


def _int(ds: Dataset, keyword: str) -> int | None:
    value = header_value(ds, keyword)
    if value is None or value == "":
        return None
    try:
        if isinstance(value, (list, tuple, MultiValue)):
            value = value[0]
        return int(value)
    except (TypeError, ValueError):
        return None


def _uid(ds: Dataset, keyword: str, meta: Dataset | None = None, meta_keyword: str = "") -> str:
    value = _text(ds, keyword)
    if not value and meta is not None:
        value = _text(meta, meta_keyword)
    return value.rstrip("\x00 ")


def _guessed_syntax(ds: Dataset) -> str:
    implicit, little = ds.original_encoding
    if implicit is None:
        raise CacheError("not a DICOM file: the encoding of the data set cannot be determined")
    if implicit:
        return ImplicitVRLittleEndian
    return ExplicitVRLittleEndian if little else ExplicitVRBigEndian


@lru_cache(maxsize=64)
def _syntax(ts: str) -> UID:
    """Transfer syntax UIDs are few: make each UID object (and its validation) once."""
    return UID(ts)


@lru_cache(maxsize=64)
def decoder_problem(ts: str) -> str | None:
    """Why pixel data in transfer syntax `ts` could not be decoded here, or None when it can."""
    from pydicom.pixels import get_decoder

    uid = UID(ts)
    try:
        decoder = get_decoder(uid)
    except NotImplementedError:
        return f"transfer syntax {uid.name} ({ts}) cannot be decoded: pydicom has no decoder for it"
    except Exception as exc:
        return f"transfer syntax {ts} cannot be decoded: {exc}"
    if decoder.is_available:
        return None
    needs = "; ".join(decoder.missing_dependencies) or "a decoder plugin"
    return f"transfer syntax {uid.name} ({ts}) needs a plugin which is not installed ({needs})"


def _sniff_dataset_start(data: bytes) -> bool:
    """True when bytes without a preamble plausibly start with a data set (group 0002 or 0008)."""
    if len(data) < 8:
        return False
    le = int.from_bytes(data[0:2], "little")
    be = int.from_bytes(data[0:2], "big")
    return le in (0x0002, 0x0008) or be in (0x0002, 0x0008)


def _native_size(ds: Dataset) -> tuple[int, str]:
    """Bytes native pixel data needs by the Image Pixel attributes, and the formula for a message."""
    rows, cols, bits = _int(ds, "Rows"), _int(ds, "Columns"), _int(ds, "BitsAllocated")
    missing = [k for k, v in (("Rows", rows), ("Columns", cols), ("BitsAllocated", bits)) if v is None]
    if missing:
        raise CacheError(f"pixel data present but {', '.join(missing)} missing or not a number")
    if _PIXEL_REPRESENTATION not in ds._dict:
        raise CacheError("pixel data present but PixelRepresentation is missing")
    samples = _int(ds, "SamplesPerPixel") or 1
    frames = 1
    if _NUMBER_OF_FRAMES in ds._dict:
        frames = _int(ds, "NumberOfFrames")
        if frames is None:
            raise CacheError(f"NumberOfFrames {_text(ds, 'NumberOfFrames')!r} is not a number")
        frames = max(frames, 1)
    if bits == 1:
        return (rows * cols * frames * samples + 7) // 8, f"{rows} x {cols} x {frames} frames x {samples} samples / 8"
    per_sample = (bits + 7) // 8
    if _text(ds, "PhotometricInterpretation") == "YBR_FULL_422" and samples == 3:
        formula = f"{rows} x {cols} x {frames} frames x 2 (YBR_FULL_422) x {per_sample} bytes"
        return rows * cols * 2 * per_sample * frames, formula
    formula = f"{rows} x {cols} x {frames} frames x {samples} samples x {per_sample} bytes"
    return rows * cols * samples * per_sample * frames, formula


def _check_pixels(ds: Dataset, data: bytes, size: int, ts: str, deflated: bool) -> None:
    """Reject pixel data the viewer could never display, without decoding it.

    `data` holds at least the file's first `size` bytes up to the pixel data; the end of an
    encapsulated value is only searched for when its length is undefined (then `data` is whole).
    """
    raw = ds._dict.get(_PIXEL_DATA)
    if raw is None:
        return
    length = getattr(raw, "length", None)
    value_tell = getattr(raw, "value_tell", None)
    undefined = length == 0xFFFFFFFF
    uid = _syntax(ts)
    if undefined or uid.is_encapsulated:
        if not deflated and undefined and value_tell is not None:
            delim = _SEQ_DELIM_LE if uid.is_little_endian or not uid.is_valid else _SEQ_DELIM_BE
            if data.find(delim, value_tell) < 0:
                raise CacheError("truncated: the encapsulated pixel data has no end (sequence delimiter missing)")
        problem = decoder_problem(ts) if uid.is_encapsulated else None
        if problem:
            raise CacheError(problem)
        return
    if length is None:
        value = getattr(raw, "value", None)
        length = len(value) if value is not None else 0
    available = length
    if not deflated and value_tell is not None:
        available = min(length, max(0, size - value_tell))
    needed, formula = _native_size(ds)
    if available < needed:
        raise CacheError(f"pixel data is {available} bytes but Rows x Columns x ... needs {needed} ({formula})")


def _check_complete(ds: Dataset, size: int, deflated: bool) -> None:
    """Detect a data set cut short: its last element must end inside the file."""
    if deflated or not ds._dict:
        return
    last = ds._dict[next(reversed(ds._dict))]
    length = getattr(last, "length", None)
    if length is None or length == 0xFFFFFFFF:
        return
    value = getattr(last, "value", None)
    if value is not None and isinstance(value, bytes) and len(value) < length:
        raise CacheError(f"truncated: element {last.tag} has {len(value)} of its {length} bytes")
    tell = getattr(last, "value_tell", None)
    if value is None and tell is not None and tell + length > size:
        raise CacheError(f"truncated: element {last.tag} needs {length} bytes, the file has {max(0, size - tell)}")


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


def _read(stream, has_preamble: bool) -> Dataset:
    try:
        return pydicom.dcmread(stream, force=not has_preamble, defer_size=_DEFER)
    except RecursionError:
        raise CacheError("cannot be read: sequences are nested too deeply") from None
    except (InvalidDicomError, EOFError) as exc:
        raise CacheError(f"truncated or not a DICOM file: {exc}") from None
    except Exception as exc:
        raise CacheError(f"cannot be read: {type(exc).__name__}: {exc}") from None


def _geometry(ds: Dataset, ts: str, deflated: bool) -> str | None:
    """The JSON slice record, locating native little-endian pixel bytes in the stored file."""
    raw = ds._dict.get(_PIXEL_DATA)
    offset, length = None, 0
    if raw is not None and not deflated:
        uid = _syntax(ts)
        tell, n = getattr(raw, "value_tell", None), getattr(raw, "length", None)
        if not uid.is_compressed and uid.is_little_endian and tell is not None and n not in (None, 0xFFFFFFFF):
            offset, length = tell, n
    try:
        return json.dumps(slice_record(ds, offset, length, ts), separators=(",", ":"))
    except (TypeError, ValueError):
        return None


def _checked(ds: Dataset, meta: Dataset, data: bytes, size: int, has_preamble: bool) -> tuple[Parsed, bool]:
    """Every check on a read header; returns the record (without bytes) and whether File Meta must be added."""
    if not ds._dict:
        if has_preamble:
            raise CacheError("truncated or corrupt: no data element could be read after the File Meta")
        raise CacheError("not a DICOM file: no data elements")
    if _text(meta, "MediaStorageSOPClassUID") == MEDIA_STORAGE_DIRECTORY or _DIRECTORY_RECORDS in ds._dict:
        raise CacheError("is a DICOMDIR (media directory), not an instance")
    uids = {
        "StudyInstanceUID": _uid(ds, "StudyInstanceUID"),
        "SeriesInstanceUID": _uid(ds, "SeriesInstanceUID"),
        "SOPInstanceUID": _uid(ds, "SOPInstanceUID", meta, "MediaStorageSOPInstanceUID"),
    }
    missing = [k for k, v in uids.items() if not v]
    if len(missing) == 3 and not has_preamble:
        raise CacheError("not a DICOM file: no Study, Series or SOP Instance UID")
    if missing:
        raise CacheError("missing " + ", ".join(missing))
    for keyword, value in uids.items():
        check_uid(value, keyword)
    sop_class = _uid(ds, "SOPClassUID", meta, "MediaStorageSOPClassUID")
    if not sop_class:
        raise CacheError("missing SOPClassUID")
    check_uid(sop_class, "SOPClassUID")

    ts = _text(meta, "TransferSyntaxUID").rstrip("\x00 ")
    needs_meta = not has_preamble or not ts
    if not ts:
        ts = _guessed_syntax(ds)
    else:
        check_uid(ts, "TransferSyntaxUID")
    deflated = ts == DeflatedExplicitVRLittleEndian
    try:
        _check_pixels(ds, data, size, ts, deflated)
        _check_complete(ds, size, deflated)
    except CacheError:
        raise
    except Exception as exc:
        raise CacheError(f"cannot be read: {type(exc).__name__}: {exc}") from None

    frames = _int(ds, "NumberOfFrames") or 1
    parsed = Parsed(
        data=b"",
        size=size,
        sop=uids["SOPInstanceUID"],
        study=uids["StudyInstanceUID"],
        series=uids["SeriesInstanceUID"],
        patient={
            "PatientID": _text(ds, "PatientID"),
            "PatientName": _text(ds, "PatientName"),
            "PatientBirthDate": _text(ds, "PatientBirthDate"),
            "PatientSex": _text(ds, "PatientSex"),
        },
        study_attrs={
            "StudyDate": _text(ds, "StudyDate"),
            "StudyTime": _text(ds, "StudyTime"),
            "StudyDescription": _text(ds, "StudyDescription"),
            "AccessionNumber": _text(ds, "AccessionNumber"),
            "ReferringPhysicianName": _text(ds, "ReferringPhysicianName"),
            "StudyID": _text(ds, "StudyID"),
        },
        series_attrs={
            "Modality": _text(ds, "Modality"),
            "SeriesNumber": _int(ds, "SeriesNumber"),
            "SeriesDescription": _text(ds, "SeriesDescription"),
            "BodyPartExamined": _text(ds, "BodyPartExamined"),
            "SeriesDate": _text(ds, "SeriesDate"),
            "SeriesTime": _text(ds, "SeriesTime"),
        },
        instance_attrs={
            "SOPClassUID": sop_class,
            "InstanceNumber": _int(ds, "InstanceNumber"),
            "NumberOfFrames": frames,
            "Rows": _int(ds, "Rows") or 0,
            "Columns": _int(ds, "Columns") or 0,
            "TransferSyntaxUID": ts,
        },
        geometry=None if needs_meta else _geometry(ds, ts, deflated),
    )
    return parsed, needs_meta


def parse_instance(data: bytes) -> Parsed:
    """Check one Part-10 file (or a bare data set) held in memory; raise CacheError(reason) if it is refused."""
    has_preamble = data[128:132] == b"DICM"
    if not has_preamble and not _sniff_dataset_start(data):
        raise CacheError("not a DICOM file")
    ds = _read(io.BytesIO(data), has_preamble)
    meta = getattr(ds, "file_meta", None) or FileMetaDataset()
    parsed, needs_meta = _checked(ds, meta, data, len(data), has_preamble)
    if needs_meta:
        ia = parsed.instance_attrs
        return parse_instance(_part10(ds, data, ia["TransferSyntaxUID"], ia["SOPClassUID"], parsed.sop))
    parsed.data = data
    return parsed


def _not_meta(tag, vr, length) -> bool:
    return tag.group != 2


def _after_header_groups(tag, vr, length) -> bool:
    return tag.group > _LAST_HEADER_GROUP


def _pixel_element_at_end(fd: int, head: bytes, stop: int, size: int, length: int, implicit: bool):
    """The Pixel Data element of `length` bytes ending the file, checked byte for byte, or None.

    Everything from `stop` (where the partial parse ended) to that element is looked through for
    the tags of functional groups: enhanced objects keep their frame geometry there, and the slice
    record must then come from a full parse.
    """
    header = 8 if implicit else 12
    start = size - length - header
    if start < stop or start - stop > _MAX_SKIPPED:
        return None
    end = start + header
    skipped = head[stop:end] if end <= len(head) else head[stop:] + os.pread(fd, end - len(head), len(head))
    element = skipped[start - stop :]
    if element[:4] != _PIXEL_TAG_LE:
        return None
    if implicit:
        vr, found = None, element[4:8]
    elif element[4:6] in (b"OB", b"OW") and element[6:8] == b"\x00\x00":
        vr, found = element[4:6].decode(), element[8:12]
    else:
        return None
    if int.from_bytes(found, "little") != length or any(tag in skipped for tag in _FUNCTIONAL_GROUPS_LE):
        return None
    return RawDataElement(BaseTag(_PIXEL_DATA), vr, length, None, end, implicit, True)


def _file_meta(head: bytes):
    """(stream positioned after the File Meta, the File Meta, its transfer syntax), or None."""
    if head[128:132] != b"DICM":
        return None
    fp = io.BytesIO(head)
    fp.seek(132)
    try:
        meta = read_dataset(fp, False, True, stop_when=_not_meta)
        return fp, meta, _text(meta, "TransferSyntaxUID").rstrip("\x00 ")
    except Exception:
        return None


def _parse_to_pixel_module(fd: int, head: bytes, size: int) -> Parsed | None:
    """The fast path: the data set up to group 0028, then native Pixel Data found at the end of the file.

    The private groups after 0028 (often most of a CT header) are never parsed. None unless every
    check passes here; the caller then parses more, so reasons always come from the full parse.
    """
    opened = _file_meta(head)
    if opened is None:
        return None
    fp, meta, ts = opened
    try:
        if ts not in _NATIVE_LE:
            return None
        implicit = ts == ImplicitVRLittleEndian
        ds = read_dataset(fp, implicit, True, defer_size=_DEFER, stop_when=_after_header_groups)
        stop = fp.tell()
        if stop + 8 > len(head) or int.from_bytes(head[stop : stop + 2], "little") <= _LAST_HEADER_GROUP:
            return None
        needed, _ = _native_size(ds)
        pixels = _pixel_element_at_end(fd, head, stop, size, needed + (needed & 1), implicit)
        if pixels is None:
            return None
        ds._dict[_PIXEL_DATA] = pixels
        parsed, needs_meta = _checked(ds, meta, head, size, True)
    except Exception:
        return None
    return None if needs_meta else parsed


def _parse_head(head: bytes, size: int) -> Parsed | None:
    """The fast path for a file larger than `head`: None unless its native Pixel Data ends the file exactly.

    File Meta and data set are read with pydicom's `read_dataset` directly, which skips the work
    `dcmread` does around it (a third of the time for a typical CT header).
    """
    opened = _file_meta(head)
    if opened is None:
        return None
    fp, meta, ts = opened
    try:
        if not ts or ts == DeflatedExplicitVRLittleEndian:
            return None
        uid = _syntax(ts)
        ds = read_dataset(fp, uid.is_implicit_VR, uid.is_little_endian, defer_size=_DEFER)
    except Exception:
        return None
    if not ds._dict or next(reversed(ds._dict)) != _PIXEL_DATA:
        return None
    raw = ds._dict[_PIXEL_DATA]
    length, tell = getattr(raw, "length", None), getattr(raw, "value_tell", None)
    if length in (None, 0xFFFFFFFF) or tell is None or tell > len(head) or tell + length != size:
        return None
    try:
        parsed, needs_meta = _checked(ds, meta, head, size, True)
    except CacheError:
        return None
    return None if needs_meta else parsed


def parse_fd(fd: int, size: int, label: str) -> Parsed:
    """Check the file open as `fd` (of `size` bytes) without reading its pixel data when it can.

    The result's `data` is empty when the file is to be stored as it is, and holds the bytes to
    store when the file had to be rewritten (no File Meta). The descriptor's offset is not moved.
    """
    head = os.pread(fd, min(size, _PREFIX), 0)
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
