"""The slice record: what volume assembly needs of one single-frame image, read from its header once.

The cache stores it as JSON beside each instance's index row, so opening a cached series as a
volume parses no header. The JSON carries a version; a record of another version reads as None
and the caller reads the file's header again (and may store the new record).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields

from pydicom.dataset import Dataset

from workstation.core.dicom.geometry import ImagePlane, frame_attribute, pixel_spacing, plane_from_dataset
from workstation.core.dicom.header import native_pixel_location
from workstation.core.dicom.values import Values, header_value, uid

VERSION = 2
"""1 was an unversioned dict with two-letter keys; its rows are read again from their files."""

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
        return cls(
            SOPInstanceUID=uid(ds, "SOPInstanceUID"),
            Rows=_integer(header_value(ds, "Rows")),
            Columns=_integer(header_value(ds, "Columns")),
            ImagePositionPatient=_floats(ipp if ipp is not None else header_value(ds, "ImagePositionPatient")),
            ImageOrientationPatient=_floats(iop if iop is not None else header_value(ds, "ImageOrientationPatient")),
            PixelSpacing=tuple(spacing) if spacing else None,
            BitsAllocated=bits,
            BitsStored=_number(ds, "BitsStored", bits),
            PixelRepresentation=_number(ds, "PixelRepresentation", 0),
            SamplesPerPixel=_number(ds, "SamplesPerPixel", 1),
            PhotometricInterpretation=str(header_value(ds, "PhotometricInterpretation") or "").strip().upper(),
            NumberOfFrames=max(1, _number(ds, "NumberOfFrames", 1)),
            RescaleSlope=float(_number(ds, "RescaleSlope", 1.0, float)) or 1.0,
            RescaleIntercept=float(_number(ds, "RescaleIntercept", 0.0, float)),
            GantryDetectorTilt=_number(ds, "GantryDetectorTilt", None, float) or None,
            has_modality_lut=_MODALITY_LUT_SEQUENCE in ds._dict,
            is_localizer="LOCALIZER" in (str(v).upper() for v in image_type),
            pixel_offset=offset,
            pixel_length=length,
        )

    def to_json(self) -> str:
        document = {"version": VERSION}
        for name in _FIELD_NAMES:
            document[name] = getattr(self, name)
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
        for name in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing"):
            if values[name] is not None:
                values[name] = tuple(values[name])
        return cls(**values)

    @property
    def is_monochrome(self) -> bool:
        return self.SamplesPerPixel == 1 and self.PhotometricInterpretation in ("MONOCHROME1", "MONOCHROME2", "")

    def plane(self) -> ImagePlane | None:
        """The slice's image plane, by the same geometry code as a header's; None without IPP/IOP."""
        return plane_from_dataset(_RecordValues(self), 0)


_FIELD_NAMES = tuple(f.name for f in fields(SliceRecord))


class _RecordValues:
    """A Dataset stand-in over a record, for `plane_from_dataset`."""

    def __init__(self, record: SliceRecord) -> None:
        self._values = {
            "ImagePositionPatient": record.ImagePositionPatient,
            "ImageOrientationPatient": record.ImageOrientationPatient,
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
