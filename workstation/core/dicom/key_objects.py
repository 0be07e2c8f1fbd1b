"""Key images as a DICOM Key Object Selection document (KOS, PS3.3 A.35.4, content by TID 2010).

`build_key_object` writes one: a CONTAINER titled from CID 7010 holding an IMAGE item per referenced
instance (with its frame numbers when only some frames of a multi-frame image are meant), the
Current Requested Procedure Evidence listing every referenced instance by study and series, and the
Key Object Document Series (Modality KO). `read_key_object` reads ours and other systems' alike,
leniently where nothing is lost, and raises ValueError naming the problem where something would be.
A KOS is never edited: a changed selection is a new instance (`with_key`/`without_key` make its list).
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import NamedTuple

import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.sequence import Sequence
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian, generate_uid

KEY_OBJECT_SELECTION = "1.2.840.10008.5.1.4.1.1.88.59"
MANUFACTURER = "workstation"
"""Our Manufacturer (0008,0070): which key-image documents are ours to replace."""
KEY_SERIES_NUMBER = 999
"""Series Number of a key-image series when the caller chooses none: after the images."""
MAX_DEPTH = 8
"""Content items nested deeper than this are not searched (TID 2010 puts them all at the top)."""
_UID_MAX = 64


class Code(NamedTuple):
    """A coded concept: (CodeValue, CodingSchemeDesignator, CodeMeaning)."""

    value: str
    scheme: str
    meaning: str


OF_INTEREST = Code("113000", "DCM", "Of Interest")
KEY_OBJECT_DESCRIPTION = Code("113012", "DCM", "Key Object Description")
OBSERVER_TYPE = Code("121005", "DCM", "Observer Type")
PERSON = Code("121006", "DCM", "Person")
PERSON_OBSERVER_NAME = Code("121008", "DCM", "Person Observer Name")
REJECTION_TITLES = frozenset({"113001", "113037", "113038", "113039"})
"""CID 7011 titles (IHE IOCM rejection notes): such a KOS lists rejected instances, not key images."""
_WAVEFORM_PREFIX = "1.2.840.10008.5.1.4.1.1.9."
_IMAGE_EXCEPTIONS_PREFIXES = ("1.2.840.10008.5.1.4.1.1.88.", "1.2.840.10008.5.1.4.1.1.11.",
                              "1.2.840.10008.5.1.4.1.1.66", "1.2.840.10008.5.1.4.1.1.104.",
                              "1.2.840.10008.5.1.4.1.1.481.")
"""SR, presentation states, registrations, encapsulated documents, RT objects: COMPOSITE, not IMAGE."""


class KeyReference(NamedTuple):
    """One referenced instance as `build_key_object` takes it; `frames` None means the whole instance."""

    SOPClassUID: str
    SOPInstanceUID: str
    SeriesInstanceUID: str
    frames: tuple[int, ...] | None = None


@dataclass(frozen=True)
class KeyImage:
    """One key image: an instance, or one frame of it (`frame` from 1; None: the whole instance)."""

    SOPInstanceUID: str
    frame: int | None
    SOPClassUID: str
    SeriesInstanceUID: str
    StudyInstanceUID: str = ""

    def to_json(self) -> dict:
        return {"SOPInstanceUID": self.SOPInstanceUID, "frame": self.frame, "SOPClassUID": self.SOPClassUID,
                "SeriesInstanceUID": self.SeriesInstanceUID, "StudyInstanceUID": self.StudyInstanceUID}


@dataclass(frozen=True)
class KeyObject:
    """What a Key Object Selection document says, whoever made it."""

    SOPInstanceUID: str
    SeriesInstanceUID: str
    StudyInstanceUID: str
    title: str
    """The document title's Code Meaning, e.g. "Of Interest"."""
    title_code: Code | None
    description: str
    images: tuple[KeyImage, ...]
    """In document order, one per (instance, frame)."""
    observer: str = ""
    """The Person Observer Name of its observer context (who chose the images), if it names one."""
    Manufacturer: str = ""
    ContentDate: str = ""
    ContentTime: str = ""
    InstanceNumber: int | None = None
    SeriesNumber: int | None = None
    warnings: tuple[str, ...] = ()
    """What is wrong with the document without losing any reference (e.g. evidence missing)."""

    @property
    def keys(self) -> list[tuple[str, int | None]]:
        """The (SOPInstanceUID, frame or None) pairs, in document order."""
        return [(i.SOPInstanceUID, i.frame) for i in self.images]

    @property
    def ours(self) -> bool:
        return self.Manufacturer == MANUFACTURER

    @property
    def is_rejection_note(self) -> bool:
        """A rejection note (IHE IOCM) lists instances rejected, not images of interest."""
        return self.title_code is not None and self.title_code.scheme == "DCM" and self.title_code.value in REJECTION_TITLES

    def references(self) -> list[KeyReference]:
        """The referenced instances grouped as `build_key_object` takes them (a new document's start)."""
        return merge_references(
            KeyReference(i.SOPClassUID, i.SOPInstanceUID, i.SeriesInstanceUID, None if i.frame is None else (i.frame,))
            for i in self.images
        )


# ---------------------------------------------------------------------------------------------- editing


def merge_references(references: Iterable[KeyReference | tuple]) -> list[KeyReference]:
    """One entry per instance, in first-seen order; frames are united, and a whole instance wins over frames."""
    merged: dict[str, KeyReference] = {}
    for raw in references:
        ref = KeyReference(*raw)
        frames = None if ref.frames is None else tuple(int(f) for f in ref.frames)
        old = merged.get(ref.SOPInstanceUID)
        if old is not None:
            if old.frames is None or frames is None:
                frames = None
            else:
                frames = tuple(sorted(set(old.frames) | set(frames)))
            ref = old._replace(frames=frames)
        else:
            ref = ref._replace(frames=None if frames is None else tuple(sorted(set(frames))))
        merged[ref.SOPInstanceUID] = ref
    return list(merged.values())


def with_key(references: Iterable[KeyReference | tuple], reference: KeyReference | tuple) -> list[KeyReference]:
    """The selection with one more instance or frame (already there: unchanged)."""
    return merge_references([*references, reference])


def without_key(references: Iterable[KeyReference | tuple], sop_uid: str, frame: int | None = None,
                number_of_frames: int = 1) -> tuple[list[KeyReference], bool]:
    """The selection without an instance (`frame` None: all of it) or one frame of it, and whether it held it.

    Taking one frame from a whole multi-frame instance leaves its other frames (`number_of_frames` of them).
    """
    out: list[KeyReference] = []
    removed = False
    for ref in merge_references(references):
        if ref.SOPInstanceUID != sop_uid:
            out.append(ref)
            continue
        if frame is None:
            removed = True
            continue
        frames = tuple(range(1, max(1, number_of_frames) + 1)) if ref.frames is None else ref.frames
        if frame not in frames:
            out.append(ref)
            continue
        removed = True
        rest = tuple(f for f in frames if f != frame)
        if rest:
            out.append(ref._replace(frames=rest))
    return out, removed


# ---------------------------------------------------------------------------------------------- writing


def _code(code: Code) -> Dataset:
    item = Dataset()
    item.CodeValue = code.value
    item.CodingSchemeDesignator = code.scheme
    item.CodeMeaning = code.meaning
    return item


def _item(relationship: str, value_type: str, concept: Code | None = None) -> Dataset:
    item = Dataset()
    item.RelationshipType = relationship
    item.ValueType = value_type
    if concept is not None:
        item.ConceptNameCodeSequence = Sequence([_code(concept)])
    return item


def _value_type(sop_class: str) -> str:
    if sop_class.startswith(_WAVEFORM_PREFIX):
        return "WAVEFORM"
    if sop_class.startswith(_IMAGE_EXCEPTIONS_PREFIXES):
        return "COMPOSITE"
    return "IMAGE"


def _check_uid(value: str, what: str) -> str:
    value = str(value or "").strip().rstrip("\x00")
    if not value or len(value) > _UID_MAX or "\\" in value:
        raise ValueError(f"{what} {value!r} is not a UID (1-64 characters)")
    return value


def _text(study, keyword: str) -> str:
    value = study.get(keyword, "") if study is not None else ""
    if value is None:
        return ""
    if hasattr(value, "value") and not isinstance(value, str):  # a DataElement from Dataset.get
        value = value.value
    return str(value).strip()


def _needs_unicode(*values: str) -> bool:
    return any(not v.isascii() for v in values)


def build_key_object(
    study: Mapping | Dataset,
    references: Iterable[KeyReference | tuple],
    title: Code | tuple = OF_INTEREST,
    description: str = "",
    *,
    series_uid: str | None = None,
    instance_uid: str | None = None,
    series_number: int | None = None,
    instance_number: int = 1,
    content_creator: str = "",
    when: datetime | None = None,
) -> Dataset:
    """A Key Object Selection document for images of one study, ready to store as a Part-10 file.

    `study` gives the patient and study attributes (a Dataset of one of the study's images, or a dict
    keyed by DICOM keywords); `references` are (SOPClassUID, SOPInstanceUID, SeriesInstanceUID, frames
    or None) of the study's instances. The series and instance UIDs are generated unless given;
    `content_creator` becomes the observer context's Person Observer Name. ValueError says what is
    missing or wrong.
    """
    refs = merge_references(references)
    if not refs:
        raise ValueError("a key object selection needs at least one referenced image")
    study_uid = _check_uid(_text(study, "StudyInstanceUID"), "the study's StudyInstanceUID")
    for ref in refs:
        _check_uid(ref.SOPInstanceUID, "a referenced SOPInstanceUID")
        _check_uid(ref.SOPClassUID, f"the SOPClassUID of {ref.SOPInstanceUID}")
        _check_uid(ref.SeriesInstanceUID, f"the SeriesInstanceUID of {ref.SOPInstanceUID}")
        if ref.frames is not None and (not ref.frames or min(ref.frames) < 1):
            raise ValueError(f"frame numbers of {ref.SOPInstanceUID} start at 1 (got {list(ref.frames)})")
    title = Code(*(str(v) for v in title))
    when = when or datetime.now()
    date, time = when.strftime("%Y%m%d"), when.strftime("%H%M%S.%f")
    sop_uid = _check_uid(instance_uid, "instance_uid") if instance_uid else generate_uid()
    series_uid = _check_uid(series_uid, "series_uid") if series_uid else generate_uid()

    ds = Dataset()
    texts = [_text(study, k) for k in ("PatientName", "ReferringPhysicianName", "StudyID", "AccessionNumber")]
    if _needs_unicode(*texts, description, content_creator, title.meaning):
        ds.SpecificCharacterSet = "ISO_IR 192"
    ds.InstanceCreationDate, ds.InstanceCreationTime = date, time
    ds.SOPClassUID = KEY_OBJECT_SELECTION
    ds.SOPInstanceUID = sop_uid
    # Patient and General Study (type 2: present, empty when the image had none)
    ds.StudyDate = _text(study, "StudyDate")
    ds.SeriesDate = date
    ds.ContentDate = date
    ds.StudyTime = _text(study, "StudyTime")
    ds.SeriesTime = time
    ds.ContentTime = time
    ds.AccessionNumber = _text(study, "AccessionNumber")
    ds.Modality = "KO"
    ds.Manufacturer = MANUFACTURER
    ds.ReferringPhysicianName = _text(study, "ReferringPhysicianName")
    ds.SeriesDescription = "Key images" if title == OF_INTEREST else title.meaning
    ds.ReferencedPerformedProcedureStepSequence = Sequence()
    ds.PatientName = _text(study, "PatientName")
    ds.PatientID = _text(study, "PatientID")
    ds.PatientBirthDate = _text(study, "PatientBirthDate")
    ds.PatientSex = _text(study, "PatientSex")
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.StudyID = _text(study, "StudyID")
    ds.SeriesNumber = KEY_SERIES_NUMBER if series_number is None else int(series_number)
    ds.InstanceNumber = int(instance_number)
    # SR Document Content: the TID 2010 tree
    ds.ValueType = "CONTAINER"
    ds.ConceptNameCodeSequence = Sequence([_code(title)])
    ds.ContinuityOfContent = "SEPARATE"
    template = Dataset()
    template.MappingResource = "DCMR"
    template.TemplateIdentifier = "2010"
    ds.ContentTemplateSequence = Sequence([template])
    content = []
    if content_creator:
        observer_type = _item("HAS OBS CONTEXT", "CODE", OBSERVER_TYPE)
        observer_type.ConceptCodeSequence = Sequence([_code(PERSON)])
        name = _item("HAS OBS CONTEXT", "PNAME", PERSON_OBSERVER_NAME)
        name.PersonName = content_creator
        content += [observer_type, name]
    if description:
        text = _item("CONTAINS", "TEXT", KEY_OBJECT_DESCRIPTION)
        text.TextValue = description
        content.append(text)
    for ref in refs:
        item = _item("CONTAINS", _value_type(ref.SOPClassUID))
        sop = Dataset()
        sop.ReferencedSOPClassUID = ref.SOPClassUID
        sop.ReferencedSOPInstanceUID = ref.SOPInstanceUID
        if ref.frames is not None:
            sop.ReferencedFrameNumber = list(ref.frames) if len(ref.frames) > 1 else ref.frames[0]
        item.ReferencedSOPSequence = Sequence([sop])
        content.append(item)
    ds.ContentSequence = Sequence(content)
    # Key Object Document: every referenced instance, by series
    by_series: dict[str, list[KeyReference]] = {}
    for ref in refs:
        by_series.setdefault(ref.SeriesInstanceUID, []).append(ref)
    series_items = []
    for uid, members in by_series.items():
        series_item = Dataset()
        series_item.ReferencedSOPSequence = Sequence([_sop_item(r) for r in members])
        series_item.SeriesInstanceUID = uid
        series_items.append(series_item)
    evidence = Dataset()
    evidence.ReferencedSeriesSequence = Sequence(series_items)
    evidence.StudyInstanceUID = study_uid
    ds.CurrentRequestedProcedureEvidenceSequence = Sequence([evidence])

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = KEY_OBJECT_SELECTION
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = "WORKSTATION"
    ds.file_meta = meta
    return ds


def _sop_item(ref: KeyReference) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = ref.SOPClassUID
    item.ReferencedSOPInstanceUID = ref.SOPInstanceUID
    return item


def to_part10(ds: Dataset) -> bytes:
    """The document as the bytes of a Part-10 file (what `Cache.replace_key_object` stores)."""
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()


# ---------------------------------------------------------------------------------------------- reading


def _get(ds: Dataset, keyword: str, default=None):
    try:
        value = ds.get(keyword, default)
    except Exception as exc:  # a value pydicom cannot convert
        raise ValueError(f"its {keyword} cannot be read ({exc})") from None
    return default if value is None else value


def _str(ds: Dataset, keyword: str) -> str:
    value = _get(ds, keyword, "")
    if isinstance(value, list | tuple) or type(value).__name__ == "MultiValue":
        value = "\\".join(str(v) for v in value)
    return str(value).strip().rstrip("\x00")


def _items(ds: Dataset, keyword: str) -> list[Dataset]:
    value = _get(ds, keyword, None)
    if value is None or value == "":
        return []
    if not isinstance(value, Sequence | list):
        raise ValueError(f"its {keyword} is not a sequence")
    return list(value)


def _read_code(ds: Dataset, keyword: str) -> Code | None:
    items = _items(ds, keyword)
    if not items:
        return None
    item = items[0]
    value = _str(item, "CodeValue") or _str(item, "LongCodeValue") or _str(item, "URNCodeValue")
    return Code(value, _str(item, "CodingSchemeDesignator"), _str(item, "CodeMeaning"))


def _frames(raw, sop_uid: str) -> tuple[int, ...] | None:
    if raw is None or raw == "":
        return None
    values = list(raw) if isinstance(raw, list | tuple) or type(raw).__name__ == "MultiValue" else [raw]
    frames = []
    for v in values:
        try:
            number = int(str(v).strip())
        except ValueError:
            raise ValueError(f"the Referenced Frame Number {v!r} of {sop_uid} is not a whole number") from None
        if number < 1:
            raise ValueError(f"the Referenced Frame Number {number} of {sop_uid} is not a frame (they start at 1)")
        frames.append(number)
    return tuple(dict.fromkeys(frames)) or None


def _references(items: list[Dataset], depth: int, found: list[tuple[str, str, tuple[int, ...] | None]],
                texts: list[str], observers: list[str]) -> None:
    for position, item in enumerate(items, 1):
        kind = _str(item, "ValueType").upper()
        concept = _read_code(item, "ConceptNameCodeSequence")
        if kind in ("IMAGE", "COMPOSITE", "WAVEFORM"):
            sops = _items(item, "ReferencedSOPSequence")
            if not sops:
                raise ValueError(f"its {kind} content item {position} references no instance "
                                 "(Referenced SOP Sequence missing or empty)")
            sop = sops[0]
            uid = _str(sop, "ReferencedSOPInstanceUID")
            if not uid:
                raise ValueError(f"its {kind} content item {position} has no Referenced SOP Instance UID")
            found.append((uid, _str(sop, "ReferencedSOPClassUID"), _frames(_get(sop, "ReferencedFrameNumber"), uid)))
        elif kind == "TEXT" and concept is not None and concept[:2] == KEY_OBJECT_DESCRIPTION[:2]:
            texts.append(_str(item, "TextValue"))
        elif kind == "PNAME" and concept is not None and concept[:2] == PERSON_OBSERVER_NAME[:2]:
            observers.append(_str(item, "PersonName"))
        if depth < MAX_DEPTH:
            _references(_items(item, "ContentSequence"), depth + 1, found, texts, observers)


def _evidence(ds: Dataset) -> dict[str, tuple[str, str, str]]:
    """SOP Instance UID -> (study, series, SOP class) from the evidence sequences."""
    found: dict[str, tuple[str, str, str]] = {}
    for keyword in ("CurrentRequestedProcedureEvidenceSequence", "PertinentOtherEvidenceSequence"):
        for study in _items(ds, keyword):
            for series in _items(study, "ReferencedSeriesSequence"):
                for sop in _items(series, "ReferencedSOPSequence"):
                    uid = _str(sop, "ReferencedSOPInstanceUID")
                    if uid:
                        found.setdefault(uid, (_str(study, "StudyInstanceUID"), _str(series, "SeriesInstanceUID"),
                                               _str(sop, "ReferencedSOPClassUID")))
    return found


def _integer(ds: Dataset, keyword: str) -> int | None:
    try:
        return int(str(_get(ds, keyword, "")).strip())
    except ValueError:
        return None


def read_key_object(ds: Dataset) -> KeyObject:
    """What a Key Object Selection document references; ValueError names what makes one unreadable."""
    sop_class = _str(ds, "SOPClassUID")
    if not sop_class and getattr(ds, "file_meta", None) is not None:
        sop_class = _str(ds.file_meta, "MediaStorageSOPClassUID")
    if sop_class != KEY_OBJECT_SELECTION:
        raise ValueError(f"it is not a Key Object Selection document (its SOP Class UID is {sop_class or 'missing'})")
    warnings: list[str] = []
    kind = _str(ds, "ValueType").upper()
    if kind and kind != "CONTAINER":
        raise ValueError(f"its root content item is a {kind}, not a CONTAINER")
    title = _read_code(ds, "ConceptNameCodeSequence")
    if title is None:
        warnings.append("it has no document title (Concept Name Code Sequence)")
    items = _items(ds, "ContentSequence")
    if not items:
        raise ValueError("it has no content (Content Sequence missing or empty), so no key images")
    found: list[tuple[str, str, tuple[int, ...] | None]] = []
    texts: list[str] = []
    observers: list[str] = []
    try:
        _references(items, 1, found, texts, observers)
    except RecursionError:
        raise ValueError("its content items are nested too deeply to be read") from None
    if not found:
        raise ValueError("it references no instance (no IMAGE, COMPOSITE or WAVEFORM content item)")
    study_uid = _str(ds, "StudyInstanceUID")
    evidence = _evidence(ds)
    images: list[KeyImage] = []
    unlisted: list[str] = []
    for uid, item_class, frames in found:
        ev_study, ev_series, ev_class = evidence.get(uid, ("", "", ""))
        if uid not in evidence:
            unlisted.append(uid)
        for frame in frames or (None,):
            images.append(KeyImage(uid, frame, item_class or ev_class, ev_series, ev_study or study_uid))
    if unlisted:
        warnings.append(f"{len(unlisted)} referenced instance(s) are not listed in its evidence sequence, so "
                        f"their series is not known (first: {unlisted[0]})")
    unique = tuple(dict.fromkeys(images))
    return KeyObject(
        SOPInstanceUID=_str(ds, "SOPInstanceUID"),
        SeriesInstanceUID=_str(ds, "SeriesInstanceUID"),
        StudyInstanceUID=study_uid,
        title=title.meaning if title else "",
        title_code=title,
        description="\n".join(t for t in texts if t),
        images=unique,
        observer=next((o for o in observers if o), ""),
        Manufacturer=_str(ds, "Manufacturer"),
        ContentDate=_str(ds, "ContentDate"),
        ContentTime=_str(ds, "ContentTime"),
        InstanceNumber=_integer(ds, "InstanceNumber"),
        SeriesNumber=_integer(ds, "SeriesNumber"),
        warnings=tuple(warnings),
    )


def load_key_object(path: str | Path) -> KeyObject:
    """`read_key_object` of a file; ValueError says why it cannot be read."""
    try:
        ds = pydicom.dcmread(path)
    except (InvalidDicomError, EOFError) as exc:
        raise ValueError(f"{Path(path).name} is not a readable DICOM file ({exc})") from None
    except OSError as exc:
        raise ValueError(f"{Path(path).name} cannot be read ({exc.strerror or exc})") from None
    except RecursionError:
        raise ValueError(f"{Path(path).name}: its sequences are nested too deeply to be read") from None
    except Exception as exc:
        raise ValueError(f"{Path(path).name} cannot be read ({type(exc).__name__}: {exc})") from None
    return read_key_object(ds)


def content_order(date: str, time: str) -> tuple[str, str]:
    """A sort key for Content Date and Time (TM may stop at hours or minutes, with or without fractions)."""
    date = (date or "").strip()
    time = (time or "").strip()
    whole, _, fraction = time.partition(".")
    return date.ljust(8, "0"), whole.ljust(6, "0") + "." + fraction.ljust(6, "0")
