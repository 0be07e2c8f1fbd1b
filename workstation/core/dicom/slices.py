"""The slice record: what volume assembly and the viewer's display sets need of one image object,
read from its header once.

The cache stores it as JSON beside each instance's index row, so opening a cached series as a
volume or as display sets parses no header. The JSON carries a version; a record of another
version reads as None and the caller reads the file's header again (and may store the new record).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields

from pydicom.dataset import Dataset

from workstation.core.dicom.frames import frame_rate
from workstation.core.dicom.geometry import ImagePlane, frame_attribute, pixel_spacing, plane_from_dataset
from workstation.core.dicom.header import native_pixel_location
from workstation.core.dicom.values import Values, header_value, text, uid

VERSION = 3
"""1 was an unversioned dict with two-letter keys; 2 lacked what display sets split and hang on.
Rows with an older record are read again from their files."""

_MODALITY_LUT_SEQUENCE = 0x00283000


@dataclass(frozen=True)
class SliceRecord:
    """Geometry, pixel format and where the native pixel bytes sit in the file (DICOM names where DICOM
    has one). `pixel_offset` is None when the slice must go through the decoder (compressed, big
    endian, deflated)."""

    SOPInstanceUID: str
    Rows: int | None
    Columns: int | None
    ImagePositionPatient: tuple[float, ...] | None
    ImageOrientationPatient: tuple[float, ...] | None
    PixelSpacing: tuple[float, ...] | None
    BitsAllocated: int
    BitsStored: int
    PixelRepresentation: int
    SamplesPerPixel: int
    PhotometricInterpretation: str
    NumberOfFrames: int
    RescaleSlope: float
    RescaleIntercept: float
    GantryDetectorTilt: float | None
    has_modality_lut: bool
    """A Modality LUT Sequence maps stored values: the decoder pipeline applies it."""
    is_localizer: bool
    """ImageType says LOCALIZER: left out of a volume built with other slices."""
    pixel_offset: int | None
    pixel_length: int
    AcquisitionNumber: int | None = None
    EchoNumbers: int | None = None
    """The first echo number (several: a multi-echo image, rare)."""
    TemporalPositionIdentifier: int | None = None
    SliceThickness: float | None = None
    FrameOfReferenceUID: str = ""
    ImageType: tuple[str, ...] = ()
    ImageLaterality: str = ""
    """ImageLaterality, else the series' Laterality (mammography hangs on it)."""
    ViewPosition: str = ""
    frame_rate: float | None = None
    """Frames per second a multi-frame object asks to be played at (Frame Time, Cine Rate, ...)."""
    frames: tuple[FramePlacement, ...] | None = None
    """Per-frame positions of an enhanced multi-frame object (functional groups); None otherwise."""

    @classmethod
    def from_dataset(cls, ds: Dataset, transfer_syntax: str = "") -> SliceRecord:
        """From a header read with pixel data deferred (so a native Pixel Data element has its offset)."""
        values = Values(ds)
        if not transfer_syntax and getattr(ds, "file_meta", None) is not None:
            transfer_syntax = uid(ds.file_meta, "TransferSyntaxUID")
        ipp = frame_attribute(values, 0, "PlanePositionSequence", "ImagePositionPatient")
        iop = frame_attribute(values, 0, "PlaneOrientationSequence", "ImageOrientationPatient")
        spacing = pixel_spacing(values, 0)
        bits = _number(ds, "BitsAllocated", 0)
        image_type = header_value(ds, "ImageType") or []
        image_type = [image_type] if isinstance(image_type, str) else list(image_type)
        offset, length = native_pixel_location(ds, transfer_syntax)
        frames = max(1, _number(ds, "NumberOfFrames", 1))
        orientation = _floats(iop if iop is not None else header_value(ds, "ImageOrientationPatient"))
        return cls(
            SOPInstanceUID=uid(ds, "SOPInstanceUID"),
            Rows=_integer(header_value(ds, "Rows")),
            Columns=_integer(header_value(ds, "Columns")),
            ImagePositionPatient=_floats(ipp if ipp is not None else header_value(ds, "ImagePositionPatient")),
            ImageOrientationPatient=orientation,
            PixelSpacing=tuple(spacing) if spacing else None,
            BitsAllocated=bits,
            BitsStored=_number(ds, "BitsStored", bits),
            PixelRepresentation=_number(ds, "PixelRepresentation", 0),
            SamplesPerPixel=_number(ds, "SamplesPerPixel", 1),
            PhotometricInterpretation=str(header_value(ds, "PhotometricInterpretation") or "").strip().upper(),
            NumberOfFrames=frames,
            RescaleSlope=float(_number(ds, "RescaleSlope", 1.0, float)) or 1.0,
            RescaleIntercept=float(_number(ds, "RescaleIntercept", 0.0, float)),
            GantryDetectorTilt=_number(ds, "GantryDetectorTilt", None, float) or None,
            has_modality_lut=_MODALITY_LUT_SEQUENCE in ds._dict,
            is_localizer="LOCALIZER" in (str(v).upper() for v in image_type),
            pixel_offset=offset,
            pixel_length=length,
            AcquisitionNumber=_number(ds, "AcquisitionNumber", None),
            EchoNumbers=_number(ds, "EchoNumbers", None),
            TemporalPositionIdentifier=_number(ds, "TemporalPositionIdentifier", None),
            SliceThickness=_positive(_number(ds, "SliceThickness", None, float)),
            FrameOfReferenceUID=uid(ds, "FrameOfReferenceUID"),
            ImageType=tuple(str(v).strip().upper() for v in image_type),
            ImageLaterality=(text(ds, "ImageLaterality") or text(ds, "Laterality")).upper(),
            ViewPosition=text(ds, "ViewPosition").upper(),
            frame_rate=frame_rate(values) if frames > 1 else None,
            frames=_placements(values, frames, orientation),
        )

    def to_json(self) -> str:
        document = {"version": VERSION}
        for name in _FIELD_NAMES:
            document[name] = getattr(self, name)
        if self.frames is not None:
            document["frames"] = [f.to_json() for f in self.frames]
        return json.dumps(document, separators=(",", ":"))

    @classmethod
    def from_json(cls, document: str | None) -> SliceRecord | None:
        """The record stored by `to_json`; None when there is none or it has another version."""
        if not document:
            return None
        try:
            raw = json.loads(document)
        except ValueError:
            return None
        if not isinstance(raw, dict) or raw.get("version") != VERSION:
            return None
        try:
            values = {name: raw[name] for name in _FIELD_NAMES}
        except KeyError:
            return None
        for name in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "ImageType"):
            if values[name] is not None:
                values[name] = tuple(values[name])
        if values["frames"] is not None:
            try:
                values["frames"] = tuple(FramePlacement.from_json(item) for item in values["frames"])
            except (TypeError, ValueError, IndexError):
                return None
        return cls(**values)

    @property
    def is_monochrome(self) -> bool:
        return self.SamplesPerPixel == 1 and self.PhotometricInterpretation in ("MONOCHROME1", "MONOCHROME2", "")

    @property
    def is_image(self) -> bool:
        """Whether there are pixels to show (SR, KOS and other documents have none)."""
        return bool(self.Rows and self.Columns and self.BitsAllocated)

    def plane(self, frame: int = 0) -> ImagePlane | None:
        """A frame's image plane, by the same geometry code as a header's; None without IPP/IOP."""
        if self.frames is not None and 0 <= frame < len(self.frames):
            placed = self.frames[frame]
            return plane_from_dataset(_RecordValues(self, placed.ImagePositionPatient,
                                                    placed.ImageOrientationPatient or self.ImageOrientationPatient), 0)
        return plane_from_dataset(_RecordValues(self), 0)


@dataclass(frozen=True)
class FramePlacement:
    """Where one frame of an enhanced multi-frame object lies, and which stack and time point it is
    (Plane Position, Plane Orientation and Frame Content functional groups, PS3.3 C.7.6.16)."""

    ImagePositionPatient: tuple[float, ...] | None
    ImageOrientationPatient: tuple[float, ...] | None
    """None when the orientation is shared by all frames (the record's own)."""
    StackID: str = ""
    InStackPositionNumber: int | None = None
    TemporalPositionIndex: int | None = None
    FrameType: tuple[str, ...] = ()
    """The frame's own Image Type (MR/CT/... Image Frame Type macro), e.g. magnitude or field map."""

    def to_json(self) -> list:
        return [self.ImagePositionPatient, self.ImageOrientationPatient, self.StackID,
                self.InStackPositionNumber, self.TemporalPositionIndex, list(self.FrameType)]

    @classmethod
    def from_json(cls, item: list) -> FramePlacement:
        ipp, iop, stack, in_stack, temporal, frame_type = item
        return cls(tuple(ipp) if ipp is not None else None, tuple(iop) if iop is not None else None,
                   str(stack or ""), in_stack, temporal, tuple(frame_type))


_FIELD_NAMES = tuple(f.name for f in fields(SliceRecord))


def _placements(values: Values, frames: int, orientation: tuple[float, ...] | None) -> tuple[FramePlacement, ...] | None:
    """Each frame's placement when the object keeps per-frame positions in its functional groups;
    a frame's orientation is kept only where it differs from `orientation` (the first frame's)."""
    per_frame = values.get("PerFrameFunctionalGroupsSequence")
    if frames < 2 or not per_frame or len(per_frame) < frames:
        return None
    out = []
    for index in range(frames):
        item = per_frame[index]
        ipp = _floats(_first_item(item, "PlanePositionSequence", "ImagePositionPatient"))
        iop = _floats(_first_item(item, "PlaneOrientationSequence", "ImageOrientationPatient"))
        if iop == orientation:
            iop = None
        out.append(FramePlacement(
            ipp, iop,
            str(_first_item(item, "FrameContentSequence", "StackID") or "").strip(),
            _integer(_first_item(item, "FrameContentSequence", "InStackPositionNumber")),
            _integer(_first_item(item, "FrameContentSequence", "TemporalPositionIndex")),
            _frame_type(item),
        ))
    if all(p.ImagePositionPatient is None for p in out):
        return None
    return tuple(out)


def _frame_type(item) -> tuple[str, ...]:
    """Frame Type from whichever Image Frame Type macro the object uses (MR, CT, X-Ray, PET, ...)."""
    for element in item:
        keyword = getattr(element, "keyword", "")
        if keyword.endswith("FrameTypeSequence") and element.value:
            value = element.value[0].get("FrameType")
            if value:
                return tuple(str(v).strip().upper() for v in ([value] if isinstance(value, str) else value))
    return ()


def _first_item(item, sequence: str, keyword: str):
    seq = item.get(sequence)
    if not seq:
        return None
    return seq[0].get(keyword)


class _RecordValues:
    """A Dataset stand-in over a record, for `plane_from_dataset`."""

    def __init__(self, record: SliceRecord, position=None, orientation=None) -> None:
        self._values = {
            "ImagePositionPatient": position or record.ImagePositionPatient,
            "ImageOrientationPatient": orientation or record.ImageOrientationPatient,
            "PixelSpacing": record.PixelSpacing,
            "Rows": record.Rows,
            "Columns": record.Columns,
        }

    def get(self, keyword: str, default=None):
        value = self._values.get(keyword)
        return default if value is None else value


def _number(ds: Dataset, keyword: str, default, kind: type = int):
    value = header_value(ds, keyword)
    if isinstance(value, list):
        value = value[0] if value else None
    try:
        return kind(value) if value not in (None, "") else default
    except (TypeError, ValueError):
        return default


def _positive(value: float | None) -> float | None:
    return value if value is not None and value > 0 else None


def _integer(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _floats(value) -> tuple[float, ...] | None:
    if value is None:
        return None
    if isinstance(value, str | bytes) or not hasattr(value, "__iter__"):
        value = [value]
    try:
        return tuple(float(v) for v in value)
    except (TypeError, ValueError):
        return None
