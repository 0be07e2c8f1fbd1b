"""What the cache checks of an instance's header before accepting it, and the record it keeps of it.

Only what is cheap to check without decoding is checked, so that the viewer never meets a file the
cache accepted but cannot show: missing or unsafe UIDs, a DICOMDIR, truncation, native pixel data
shorter than its geometry needs, and compressed pixel data without an installed decoder.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from pydicom.dataset import Dataset
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from workstation.core.cache.reports import CacheError
from workstation.core.dicom.codecs import decoder_problem
from workstation.core.dicom.dates import dicom_date, dicom_time
from workstation.core.dicom.frames import native_size, native_size_formula
from workstation.core.dicom.header import PIXEL_DATA
from workstation.core.dicom.header import syntax as transfer_syntax
from workstation.core.dicom.slices import SliceRecord
from workstation.core.dicom.values import integer, text, uid

MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"
_UID_RE = re.compile(r"[A-Za-z0-9.]{1,64}")
_PATHLIKE_RE = re.compile(r"[/\\:]|\.\.|^~")
_DIRECTORY_RECORDS = 0x00041220
_PIXEL_REPRESENTATION = 0x00280103
_NUMBER_OF_FRAMES = 0x00280008
_SEQ_DELIM_LE = b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"
_SEQ_DELIM_BE = b"\xff\xfe\xe0\xdd\x00\x00\x00\x00"


@dataclass
class Parsed:
    """A checked instance and the attributes the index keeps.

    `data` holds the bytes to store when they came from memory or had to be rewritten; it is empty
    when the file at `source` (or `staged`, its temporary copy in the cache) is to be stored as it
    is. `geometry` is the slice record (JSON) volume assembly reads instead of the header.
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


def _guessed_syntax(ds: Dataset) -> str:
    implicit, little = ds.original_encoding
    if implicit is None:
        raise CacheError("not a DICOM file: the encoding of the data set cannot be determined")
    if implicit:
        return ImplicitVRLittleEndian
    return ExplicitVRLittleEndian if little else ExplicitVRBigEndian


def native_size_of(ds: Dataset) -> tuple[int, str]:
    """Bytes native pixel data needs by the Image Pixel attributes, and the formula for a message."""
    rows, cols, bits = integer(ds, "Rows"), integer(ds, "Columns"), integer(ds, "BitsAllocated")
    missing = [k for k, v in (("Rows", rows), ("Columns", cols), ("BitsAllocated", bits)) if v is None]
    if missing:
        raise CacheError(f"pixel data present but {', '.join(missing)} missing or not a number")
    if _PIXEL_REPRESENTATION not in ds._dict:
        raise CacheError("pixel data present but PixelRepresentation is missing")
    frames = 1
    if _NUMBER_OF_FRAMES in ds._dict:
        frames = integer(ds, "NumberOfFrames")
        if frames is None:
            raise CacheError(f"NumberOfFrames {text(ds, 'NumberOfFrames')!r} is not a number")
        frames = max(frames, 1)
    shape = (rows, cols, integer(ds, "SamplesPerPixel") or 1, bits, frames, text(ds, "PhotometricInterpretation"))
    return native_size(*shape), native_size_formula(*shape)


def _check_pixels(ds: Dataset, data: bytes, size: int, ts: str, deflated: bool) -> None:
    """Reject pixel data the viewer could never display, without decoding it.

    `data` holds at least the file's first `size` bytes up to the pixel data; the end of an
    encapsulated value is only searched for when its length is undefined (then `data` is whole).
    """
    raw = ds._dict.get(PIXEL_DATA)
    if raw is None:
        return
    length = getattr(raw, "length", None)
    value_tell = getattr(raw, "value_tell", None)
    undefined = length == 0xFFFFFFFF
    syntax = transfer_syntax(ts)
    if undefined or syntax.is_encapsulated:
        if not deflated and undefined and value_tell is not None:
            delim = _SEQ_DELIM_LE if syntax.is_little_endian or not syntax.is_valid else _SEQ_DELIM_BE
            if data.find(delim, value_tell) < 0:
                raise CacheError("truncated: the encapsulated pixel data has no end (sequence delimiter missing)")
        problem = decoder_problem(ts) if syntax.is_encapsulated else None
        if problem:
            raise CacheError(problem)
        return
    if length is None:
        value = getattr(raw, "value", None)
        length = len(value) if value is not None else 0
    available = length
    if not deflated and value_tell is not None:
        available = min(length, max(0, size - value_tell))
    needed, formula = native_size_of(ds)
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


def _geometry(ds: Dataset, ts: str) -> str | None:
    """The slice record as stored in the index, or None when the header has none to give."""
    try:
        return SliceRecord.from_dataset(ds, ts).to_json()
    except (TypeError, ValueError):
        return None


def checked(ds: Dataset, meta: Dataset, data: bytes, size: int, has_preamble: bool) -> tuple[Parsed, bool]:
    """Every check on a read header; returns the record (without bytes) and whether File Meta must be added.

    `data` holds at least the file's first bytes up to its pixel data, `size` is the whole file's.
    """
    if not ds._dict:
        if has_preamble:
            raise CacheError("truncated or corrupt: no data element could be read after the File Meta")
        raise CacheError("not a DICOM file: no data elements")
    if text(meta, "MediaStorageSOPClassUID") == MEDIA_STORAGE_DIRECTORY or _DIRECTORY_RECORDS in ds._dict:
        raise CacheError("is a DICOMDIR (media directory), not an instance")
    uids = {
        "StudyInstanceUID": uid(ds, "StudyInstanceUID"),
        "SeriesInstanceUID": uid(ds, "SeriesInstanceUID"),
        "SOPInstanceUID": uid(ds, "SOPInstanceUID") or uid(meta, "MediaStorageSOPInstanceUID"),
    }
    missing = [k for k, v in uids.items() if not v]
    if len(missing) == 3 and not has_preamble:
        raise CacheError("not a DICOM file: no Study, Series or SOP Instance UID")
    if missing:
        raise CacheError("missing " + ", ".join(missing))
    for keyword, value in uids.items():
        check_uid(value, keyword)
    sop_class = uid(ds, "SOPClassUID") or uid(meta, "MediaStorageSOPClassUID")
    if not sop_class:
        raise CacheError("missing SOPClassUID")
    check_uid(sop_class, "SOPClassUID")

    ts = uid(meta, "TransferSyntaxUID")
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

    parsed = Parsed(
        data=b"",
        size=size,
        sop=uids["SOPInstanceUID"],
        study=uids["StudyInstanceUID"],
        series=uids["SeriesInstanceUID"],
        patient={
            "PatientID": text(ds, "PatientID"),
            "PatientName": text(ds, "PatientName"),
            "PatientBirthDate": dicom_date(text(ds, "PatientBirthDate")),
            "PatientSex": text(ds, "PatientSex"),
        },
        study_attrs={
            "StudyDate": dicom_date(text(ds, "StudyDate")),
            "StudyTime": dicom_time(text(ds, "StudyTime")),
            "StudyDescription": text(ds, "StudyDescription"),
            "AccessionNumber": text(ds, "AccessionNumber"),
            "ReferringPhysicianName": text(ds, "ReferringPhysicianName"),
            "StudyID": text(ds, "StudyID"),
        },
        series_attrs={
            "Modality": text(ds, "Modality"),
            "SeriesNumber": integer(ds, "SeriesNumber"),
            "SeriesDescription": text(ds, "SeriesDescription"),
            "BodyPartExamined": text(ds, "BodyPartExamined"),
            "SeriesDate": dicom_date(text(ds, "SeriesDate")),
            "SeriesTime": dicom_time(text(ds, "SeriesTime")),
        },
        instance_attrs={
            "SOPClassUID": sop_class,
            "InstanceNumber": integer(ds, "InstanceNumber"),
            "NumberOfFrames": integer(ds, "NumberOfFrames") or 1,
            "Rows": integer(ds, "Rows") or 0,
            "Columns": integer(ds, "Columns") or 0,
            "TransferSyntaxUID": ts,
        },
        geometry=None if needs_meta else _geometry(ds, ts),
    )
    return parsed, needs_meta
