"""Read and check one DICOM instance before it enters the cache.

Only the header is interpreted (pixel data is deferred, never decoded) so that import stays close
to the speed of a file copy; what can be checked cheaply is checked here so that the viewer never
meets a file the cache accepted but cannot show: missing or unsafe UIDs, truncation, native pixel
data shorter than its geometry needs, and compressed pixel data without an installed decoder.
"""

from __future__ import annotations

import hashlib
import io
import re
from dataclasses import dataclass, field
from functools import cache, lru_cache

import pydicom
from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.filewriter import dcmwrite, write_file_meta_info
from pydicom.multival import MultiValue
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from workstation.core.cache.reports import CacheError

MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"
_UID_RE = re.compile(r"[0-9]+(\.[0-9]+)*")
_PATHLIKE_RE = re.compile(r"[/\\:]|\.\.|^\.|^~")
_PIXEL_DATA = 0x7FE00010
_SEQ_DELIM_LE = b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"
_SEQ_DELIM_BE = b"\xff\xfe\xe0\xdd\x00\x00\x00\x00"
_DEFER = 1024


@dataclass
class Parsed:
    """A checked instance: the exact bytes to store and the attributes the index keeps."""

    data: bytes
    sha1: str
    sop: str
    study: str
    series: str
    patient: dict = field(default_factory=dict)
    study_attrs: dict = field(default_factory=dict)
    series_attrs: dict = field(default_factory=dict)
    instance_attrs: dict = field(default_factory=dict)
    size: int = 0
    staged: str = ""


def check_uid(value: str, keyword: str) -> str:
    """Return the UID if it is safe to index; lenient on leading zeros and length, strict on characters."""
    if _UID_RE.fullmatch(value) and len(value) <= 64:
        return value
    if _PATHLIKE_RE.search(value):
        raise CacheError(f"unsafe UID {value!r} in {keyword}")
    raise CacheError(f"invalid UID {value!r} in {keyword}: a UID is 1-64 digits and dots")


@cache
def _tag(keyword: str) -> int:
    return tag_for_keyword(keyword)


def _value(ds: Dataset, keyword: str):
    """An element's value, converted only when present (pydicom's keyword lookup is the slow part of import)."""
    tag = _tag(keyword)
    if tag not in ds._dict:
        return None
    try:
        return ds[tag].value
    except Exception:
        return None


def _text(ds: Dataset, keyword: str) -> str:
    value = _value(ds, keyword)
    if value is None:
        return ""
    if isinstance(value, (list, tuple, MultiValue)):
        return "\\".join(str(v) for v in value).strip()
    return str(value).strip()


def _int(ds: Dataset, keyword: str) -> int | None:
    value = _value(ds, keyword)
    if value is None or value == "":
        return None
    try:
        if isinstance(value, (list, tuple, MultiValue)):
            value = value[0]
        return int(value)
    except (TypeError, ValueError):
        return None


def _uid(ds: Dataset, keyword: str, meta_keyword: str | None = None) -> str:
    value = _text(ds, keyword)
    if not value and meta_keyword is not None:
        value = _text(ds.file_meta, meta_keyword) if hasattr(ds, "file_meta") else ""
    return value.rstrip("\x00 ")


def _guessed_syntax(ds: Dataset) -> str:
    implicit, little = ds.original_encoding
    if implicit is None:
        raise CacheError("not a DICOM file: the encoding of the data set cannot be determined")
    if implicit:
        return ImplicitVRLittleEndian
    return ExplicitVRLittleEndian if little else ExplicitVRBigEndian


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


def _check_pixels(ds: Dataset, data: bytes, ts: str, deflated: bool) -> None:
    """Reject pixel data the viewer could never display, without decoding it."""
    raw = ds._dict.get(_PIXEL_DATA)
    if raw is None:
        return
    length = getattr(raw, "length", None)
    value_tell = getattr(raw, "value_tell", None)
    undefined = length == 0xFFFFFFFF
    uid = UID(ts)
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
        available = min(length, max(0, len(data) - value_tell))
    missing = [k for k in ("Rows", "Columns", "BitsAllocated") if _int(ds, k) is None]
    if missing:
        raise CacheError(f"pixel data present but {', '.join(missing)} missing or not a number")
    if _tag("PixelRepresentation") not in ds._dict:
        raise CacheError("pixel data present but PixelRepresentation is missing")
    rows, cols, bits = _int(ds, "Rows"), _int(ds, "Columns"), _int(ds, "BitsAllocated")
    samples = _int(ds, "SamplesPerPixel") or 1
    frames = 1
    if _tag("NumberOfFrames") in ds._dict:
        frames = _int(ds, "NumberOfFrames")
        if frames is None:
            raise CacheError(f"NumberOfFrames {_text(ds, 'NumberOfFrames')!r} is not a number")
        frames = max(frames, 1)
    if bits == 1:
        needed = (rows * cols * frames * samples + 7) // 8
        formula = f"{rows} x {cols} x {frames} frames x {samples} samples / 8"
    else:
        per_sample = (bits + 7) // 8
        if _text(ds, "PhotometricInterpretation") == "YBR_FULL_422" and samples == 3:
            needed = rows * cols * 2 * per_sample * frames
            formula = f"{rows} x {cols} x {frames} frames x 2 (YBR_FULL_422) x {per_sample} bytes"
        else:
            needed = rows * cols * samples * per_sample * frames
            formula = f"{rows} x {cols} x {frames} frames x {samples} samples x {per_sample} bytes"
    if available < needed:
        raise CacheError(f"pixel data is {available} bytes but Rows x Columns x ... needs {needed} ({formula})")


def _check_complete(ds: Dataset, data: bytes, deflated: bool) -> None:
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
    if value is None and tell is not None and tell + length > len(data):
        raise CacheError(f"truncated: element {last.tag} needs {length} bytes, the file has {max(0, len(data) - tell)}")


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


def parse_instance(data: bytes) -> Parsed:
    """Check one Part-10 file (or a bare data set) held in memory; raise CacheError(reason) if it is refused."""
    has_preamble = data[128:132] == b"DICM"
    if not has_preamble and not _sniff_dataset_start(data):
        raise CacheError("not a DICOM file")
    try:
        ds = pydicom.dcmread(io.BytesIO(data), force=not has_preamble, defer_size=_DEFER)
    except RecursionError:
        raise CacheError("cannot be read: sequences are nested too deeply") from None
    except (InvalidDicomError, EOFError) as exc:
        raise CacheError(f"truncated or not a DICOM file: {exc}") from None
    except Exception as exc:
        raise CacheError(f"cannot be read: {type(exc).__name__}: {exc}") from None
    if not ds._dict:
        if has_preamble:
            raise CacheError("truncated or corrupt: no data element could be read after the File Meta")
        raise CacheError("not a DICOM file: no data elements")
    meta = getattr(ds, "file_meta", None) or FileMetaDataset()
    if _text(meta, "MediaStorageSOPClassUID") == MEDIA_STORAGE_DIRECTORY or _tag("DirectoryRecordSequence") in ds._dict:
        raise CacheError("is a DICOMDIR (media directory), not an instance")
    uids = {
        "StudyInstanceUID": _uid(ds, "StudyInstanceUID"),
        "SeriesInstanceUID": _uid(ds, "SeriesInstanceUID"),
        "SOPInstanceUID": _uid(ds, "SOPInstanceUID", "MediaStorageSOPInstanceUID"),
    }
    missing = [k for k, v in uids.items() if not v]
    if len(missing) == 3 and not has_preamble:
        raise CacheError("not a DICOM file: no Study, Series or SOP Instance UID")
    if missing:
        raise CacheError("missing " + ", ".join(missing))
    for keyword, value in uids.items():
        check_uid(value, keyword)
    sop_class = _uid(ds, "SOPClassUID", "MediaStorageSOPClassUID")
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
        _check_pixels(ds, data, ts, deflated)
        _check_complete(ds, data, deflated)
    except CacheError:
        raise
    except Exception as exc:
        raise CacheError(f"cannot be read: {type(exc).__name__}: {exc}") from None

    if needs_meta:
        data = _part10(ds, data, ts, sop_class, uids["SOPInstanceUID"])
    frames = _int(ds, "NumberOfFrames") or 1
    return Parsed(
        data=data,
        size=len(data),
        sha1=hashlib.sha1(data).hexdigest(),
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
    )
