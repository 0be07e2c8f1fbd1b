"""Reformatted planes (MPR planes and MIP, MinIP or average slabs) as DICOM images with their geometry.

`derived_image` makes one instance from a plane of modality values and one header of its source
series: a derived CT Image for a CT source, a derived MR Image for an MR source, otherwise a
Multi-frame Grayscale Word Secondary Capture (the only SC class that can say where its frame lies, by
its Plane Position, Plane Orientation and Pixel Measures functional groups). The patient, the study
and the frame of reference are the source's, so the images line up with it in any viewer and on the
PACS; the series is new. `derived_series` makes a stack of parallel planes one series numbered along
its normal. What cannot be made is refused with a ValueError in words.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

import numpy as np
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian, generate_uid
from pydicom.valuerep import format_number_as_ds

from workstation import __version__
from workstation.core.dicom.geometry import ImagePlane, direction_label, plane_from_dataset
from workstation.core.dicom.key_objects import MANUFACTURER, Code

CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
MR_IMAGE = "1.2.840.10008.5.1.4.1.1.4"
MULTIFRAME_GRAYSCALE_WORD_SC = "1.2.840.10008.5.1.4.1.1.7.3"

SLAB_MODES = ("mip", "minip", "avg")
# CID 7203 Image Derivation: the reformat, and what a slab did along its normal.
MULTIPLANAR_REFORMATTING = Code("113072", "DCM", "Multiplanar reformatting")
SLAB_CODES = {
    "mip": Code("113078", "DCM", "Maximum intensity projection"),
    "minip": Code("113079", "DCM", "Minimum intensity projection"),
    "avg": Code("113049", "DCM", "Pixel by pixel mean"),   # CID 7203 has no "average intensity projection"
}
SOURCE_FOR_PROCESSING = Code("121322", "DCM", "Source image for image processing operation")
"""CID 7202: the Purpose of Reference of each Source Image Sequence item."""
_SLAB_TERMS = {"mip": "MIP", "minip": "MINIP", "avg": "AVERAGE"}
_SLAB_WORDS = {"mip": "maximum intensity projection", "minip": "minimum intensity projection",
               "avg": "average"}

CT_OUTSIDE = -1024.0
"""What a CT sample outside the volume becomes (air), unless the plane holds lower values."""
WHOLE_TOLERANCE = 1e-3
"""Values this close to whole numbers (or two float32 steps at their magnitude, if more) are whole."""
_INT16 = (-32768, 32767)
_UINT16 = (0, 65535)
_STEPS = (1, 2, 5)
_UID_MAX = 64

# Copied from the source because they are the patient's, the study's or the acquisition's, not ours.
_FROM_SOURCE = (
    "PatientName", "PatientID", "IssuerOfPatientID", "IssuerOfPatientIDQualifiersSequence", "TypeOfPatientID",
    "PatientBirthDate", "PatientBirthTime", "PatientSex", "QualityControlSubject", "OtherPatientIDsSequence",
    "OtherPatientNames", "EthnicGroup", "PatientComments", "PatientSpeciesDescription",
    "PatientSpeciesCodeSequence", "PatientBreedDescription", "PatientBreedCodeSequence",
    "BreedRegistrationSequence", "ResponsiblePerson", "ResponsiblePersonRole", "ResponsibleOrganization",
    "PatientIdentityRemoved", "DeidentificationMethod", "DeidentificationMethodCodeSequence",
    "ClinicalTrialSponsorName", "ClinicalTrialProtocolID", "ClinicalTrialProtocolName", "ClinicalTrialSiteID",
    "ClinicalTrialSiteName", "ClinicalTrialSubjectID", "ClinicalTrialSubjectReadingID",
    "ClinicalTrialTimePointID", "ClinicalTrialTimePointDescription", "ClinicalTrialCoordinatingCenterName",
    "StudyInstanceUID", "StudyDate", "StudyTime", "ReferringPhysicianName", "StudyID", "AccessionNumber",
    "IssuerOfAccessionNumberSequence", "StudyDescription", "PhysiciansOfRecord", "NameOfPhysiciansReadingStudy",
    "ProcedureCodeSequence", "AdmittingDiagnosesDescription", "PatientAge", "PatientSize", "PatientWeight",
    "Occupation", "AdditionalPatientHistory", "PregnancyStatus",
    "BodyPartExamined", "Laterality", "PatientPosition", "ProtocolName",
    "PositionReferenceIndicator",
    "ContrastBolusAgent", "ContrastBolusAgentSequence", "ContrastBolusRoute", "ContrastBolusVolume",
    "ContrastBolusStartTime", "ContrastBolusStopTime", "ContrastBolusTotalDose", "ContrastBolusIngredient",
    "ContrastBolusIngredientConcentration", "ContrastFlowRate", "ContrastFlowDuration",
)
_CT_ACQUISITION = ("KVP", "AcquisitionNumber", "ConvolutionKernel")
"""CT Image module: KVP and Acquisition Number are type 2; a reformat has no tilt, table or tube current of its own."""
_MR_ACQUISITION = (
    "ScanningSequence", "SequenceVariant", "ScanOptions", "MRAcquisitionType", "RepetitionTime", "EchoTime",
    "EchoTrainLength", "InversionTime", "TriggerTime", "SequenceName", "AngioFlag", "NumberOfAverages",
    "ImagingFrequency", "ImagedNucleus", "EchoNumbers", "MagneticFieldStrength", "FlipAngle",
    "AcquisitionNumber",
)
_MR_REQUIRED = ("ScanningSequence", "SequenceVariant")
"""Type 1 in the MR Image module and only the scanner can say them: without them, Secondary Capture."""


class SourceImage(NamedTuple):
    """One instance of the source series as a Source Image Sequence item names it; with its plane, only
    the instances a derived plane was sampled from are listed."""

    SOPClassUID: str
    SOPInstanceUID: str
    plane: ImagePlane | None = None


@dataclass(frozen=True)
class Rescale:
    """How modality values become 16-bit stored values (signed, or unsigned for Secondary Capture):
    value = stored x slope + intercept.

    `slope` and `intercept` are the values their DS strings read back as, so a reader gets exactly
    what was encoded. `outside` is the modality value samples outside the volume were given."""

    slope: float
    intercept: float
    outside: float
    slope_text: str
    intercept_text: str
    whole: bool
    """Every value was whole (or was rounded to whole, `choose_rescale(..., whole_only=True)`)."""
    signed: bool = True

    def encode(self, values: np.ndarray) -> np.ndarray:
        """Stored values (int16, or uint16 when not signed) of modality values (NaN: outside the volume)."""
        v = np.where(np.isfinite(values), values, self.outside).astype(np.float64)
        stored = np.rint((v - self.intercept) / self.slope)
        low, high = _INT16 if self.signed else _UINT16
        return np.clip(stored, low, high).astype(np.int16 if self.signed else np.uint16)

    @property
    def is_identity(self) -> bool:
        return self.slope == 1.0 and self.intercept == 0.0


# ---------------------------------------------------------------------------------------------- rescale


def _ds(value: float) -> str:
    """A DS string (at most 16 characters) for a float, as short as it reads exactly."""
    value = 0.0 if value == 0 else float(value)
    text = repr(value)
    if text.endswith(".0"):
        text = text[:-2]
    return text if len(text) <= 16 else format_number_as_ds(value)


def _step(need: float) -> float:
    """The smallest 1, 2 or 5 times a power of ten that is at least `need` (> 0)."""
    exponent = math.floor(math.log10(need))
    for e in (exponent, exponent + 1):
        for m in _STEPS:
            step = float(f"{m}e{e}")
            if step >= need:
                return step
    return float(f"1e{exponent + 2}")


def choose_rescale(planes: Sequence[np.ndarray], lowest: float, *, signed: bool = True,
                   whole_only: bool = False) -> Rescale:
    """One Rescale Slope and Intercept for every plane of a series, into 16-bit signed (or unsigned) values.

    Whole values (within WHOLE_TOLERANCE) keep slope 1, and intercept 0 whenever the range allows, so
    the stored value is the modality value (HU for CT). Other values get the finest 1-2-5 decimal
    slope that fits the whole range into 16 bits (at most 2.5 x range / 65535): a value read back is
    within half a slope of the one given. `whole_only` rounds them to whole values instead (for an
    IOD without a Modality LUT). Samples outside the volume (NaN) become `lowest`, or the lowest
    value of the planes when that is lower (the range then reaches down to it).
    """
    low, high = _INT16 if signed else _UINT16
    lo, hi, whole, magnitude, outside_any = math.inf, -math.inf, True, 0.0, False
    for values in planes:
        finite = values[np.isfinite(values)]
        outside_any = outside_any or finite.size < values.size
        if finite.size == 0:
            continue
        fmin, fmax = float(finite.min()), float(finite.max())
        lo, hi = min(lo, fmin), max(hi, fmax)
        magnitude = max(magnitude, abs(fmin), abs(fmax))
        if whole and not whole_only:
            tolerance = max(WHOLE_TOLERANCE, 2 * float(np.spacing(np.float32(magnitude))))
            whole = bool(np.all(np.abs(finite - np.rint(finite)) <= tolerance))
    if not math.isfinite(lo):
        raise ValueError("no sample of the plane lies inside the volume: there is nothing to store")
    if whole:
        lo, hi = float(round(lo)), float(round(hi))
    outside = min(float(lowest), lo)
    if outside_any:
        lo = outside
    if whole and hi - lo <= high - low:
        intercept = 0.0 if lo >= low and hi <= high else lo - low
        return Rescale(1.0, intercept, outside, "1", _ds(intercept), True, signed)
    need = max((hi - lo) / (high - low - 2), magnitude * 2.0 ** -23, 1e-12)
    slope = _step(need)
    if lo / slope >= low + 1 and hi / slope <= high - 1:
        intercept = 0.0
    else:   # a whole number of slopes: centred in the signed range, at the bottom of the unsigned one
        steps = round((lo + hi) / 2 / slope) if signed else math.floor(lo / slope)
        intercept = round(steps * slope, max(0, -math.floor(math.log10(slope))))
    intercept_text, slope_text = _ds(intercept), _ds(slope)
    return Rescale(float(slope_text), float(intercept_text), outside, slope_text, intercept_text, whole, signed)


# ---------------------------------------------------------------------------------------------- checks


def _check_uid(value: Any, what: str) -> str:
    value = str(value or "").strip().rstrip("\x00")
    if not value or len(value) > _UID_MAX or "\\" in value:
        raise ValueError(f"{what} {value!r} is not a UID (1-64 characters)")
    return value


def _source_text(source: Dataset, keyword: str) -> str:
    value = source.get(keyword)
    return "" if value is None else str(value).strip()


def _check_slab(slab) -> tuple[str, float] | None:
    if slab is None:
        return None
    try:
        mode, thickness = slab
        mode, thickness = str(mode).lower(), float(thickness)
    except (TypeError, ValueError):
        raise ValueError(f"a slab is (mode, thickness in mm), not {slab!r}") from None
    if mode not in SLAB_MODES:
        raise ValueError(f"unknown slab {mode!r}: use one of {', '.join(SLAB_MODES)}")
    if not (math.isfinite(thickness) and thickness > 0):
        raise ValueError(f"a {mode} slab needs a thickness above 0 mm, not {thickness:g}")
    return mode, thickness


def _check_plane(values: np.ndarray, plane: ImagePlane) -> np.ndarray:
    values = np.asarray(values)
    if values.ndim != 2 or values.size == 0:
        raise ValueError(f"a plane with no pixels cannot be stored (its values have shape {values.shape})")
    if values.shape != (plane.rows, plane.columns):
        raise ValueError(f"the values are {values.shape[0]} x {values.shape[1]} but the plane is "
                         f"{plane.rows} x {plane.columns}")
    if values.shape[0] > 65535 or values.shape[1] > 65535:
        raise ValueError(f"a DICOM image has at most 65535 rows and columns, not {values.shape[0]} x {values.shape[1]}")
    spacing = tuple(float(s) for s in plane.pixel_spacing)
    if not all(math.isfinite(s) and s > 0 for s in spacing):
        raise ValueError(f"the plane's pixel spacing {spacing} is not positive")
    row, column = np.asarray(plane.row_direction, float), np.asarray(plane.column_direction, float)
    if (not np.all(np.isfinite(row)) or not np.all(np.isfinite(column)) or abs(np.linalg.norm(row) - 1) > 1e-3
            or abs(np.linalg.norm(column) - 1) > 1e-3 or abs(float(row @ column)) > 1e-3):
        raise ValueError("the plane's row and column directions are not orthogonal unit vectors")
    if not np.all(np.isfinite(np.asarray(plane.position, float))):
        raise ValueError("the plane's position is not a point in the patient")
    if not np.issubdtype(values.dtype, np.number) or np.iscomplexobj(values):
        raise ValueError(f"the plane's values are {values.dtype}, not modality values")
    return values


def check_source(source: Dataset) -> tuple[str, str, str]:
    """The source's Study Instance, Frame of Reference and Series Instance UIDs; ValueError in words when
    it lacks one (without a frame of reference a plane's position would line up with nothing)."""
    study_uid = _check_uid(_source_text(source, "StudyInstanceUID"), "the source's StudyInstanceUID")
    frame_of_reference = _source_text(source, "FrameOfReferenceUID")
    if not frame_of_reference:
        raise ValueError("the source image has no Frame of Reference UID (0020,0052): a reformatted plane's "
                         "position would line up with nothing, so no derived image is made")
    _check_uid(frame_of_reference, "the source's FrameOfReferenceUID")
    source_series = _check_uid(_source_text(source, "SeriesInstanceUID"), "the source's SeriesInstanceUID")
    return study_uid, frame_of_reference, source_series


def sop_class_for(source: Dataset) -> str:
    """The class a reformat of this source is stored as: CT Image for CT, MR Image for an MR source that
    says its Scanning Sequence and Sequence Variant, Multi-frame Grayscale Word SC otherwise."""
    modality = _source_text(source, "Modality").upper()
    if modality == "CT":
        return CT_IMAGE
    if modality == "MR" and all(_source_text(source, k) for k in _MR_REQUIRED):
        return MR_IMAGE
    return MULTIFRAME_GRAYSCALE_WORD_SC


def image_type(sop_class: str, slab: tuple[str, float] | None) -> list[str]:
    """Image Type: DERIVED\\SECONDARY, then the IOD's Value 3 and what was done.

    CT (C.8.2.1.1.1): AXIAL, the Defined Term for any cross-sectional image, coronal, sagittal and
    oblique ones included; its Value 4 Defined Terms are multi-energy ones, so what was done is said
    by the Derivation Code Sequence alone. MR (C.8.3.1.1.1): MPR, or PROJECTION IMAGE for a MIP or
    MinIP (Value 4 MIP or MINIP); an average slab is an MPR with AVERAGE. SC has no Value 3 of its
    own: REFORMATTED, and the slab's projection.
    """
    term = _SLAB_TERMS[slab[0]] if slab else None
    if sop_class == CT_IMAGE:
        return ["DERIVED", "SECONDARY", "AXIAL"]
    if sop_class == MR_IMAGE:
        if slab and slab[0] in ("mip", "minip"):
            return ["DERIVED", "SECONDARY", "PROJECTION IMAGE", term]
        return ["DERIVED", "SECONDARY", "MPR", *([term] if term else [])]
    return ["DERIVED", "SECONDARY", "REFORMATTED", *([term] if term else [])]


def lowest_value(source: Dataset) -> float:
    """What a sample outside the volume becomes: air (-1024 HU) for CT, 0 otherwise."""
    return CT_OUTSIDE if _source_text(source, "Modality").upper() == "CT" else 0.0


def _has_rescale(source: Dataset) -> bool:
    return "RescaleSlope" in source or "RescaleIntercept" in source


def rescale_for(planes: Sequence[np.ndarray], source: Dataset) -> Rescale:
    """The rescale of a reformat of this source (`choose_rescale`), by the class it is stored as.

    CT: signed, any slope (the CT Image IOD has its Modality LUT). MR: the MR Image IOD has none, so
    values are rounded to whole units as the scanner stores them (at most half a unit off), unless the
    source itself carries a Rescale Slope/Intercept (Philips does): then as CT. Multi-frame Grayscale
    Word SC: unsigned (its Pixel Representation is 0), any slope (A.8.4.4 allows fractions)."""
    sop_class = sop_class_for(source)
    whole_only = sop_class == MR_IMAGE and not _has_rescale(source)
    return choose_rescale(planes, lowest_value(source), signed=sop_class != MULTIFRAME_GRAYSCALE_WORD_SC,
                          whole_only=whole_only)


# ---------------------------------------------------------------------------------------------- references


def _reach(planes: list[ImagePlane]) -> float:
    """How far from a source slice an interpolated sample can still use it: the slices' spacing."""
    normal = planes[0].normal
    positions = np.sort([float(p.position @ normal) for p in planes])
    gaps = np.diff(positions)
    gaps = gaps[gaps > 1e-6]
    return float(np.median(gaps)) if gaps.size else 1.0


def contributing(plane: ImagePlane, sources: Sequence[SourceImage], slab: tuple[str, float] | None = None
                 ) -> list[SourceImage]:
    """The source instances a plane's samples can come from: those whose slice lies less than one slice
    spacing (the reach of an interpolation between slices) from the plane's rectangle, thickened by the
    slab, along the slices' normal. Sources without a plane, or of another orientation, are always
    listed."""
    placed = [s for s in sources if s.plane is not None]
    if not placed:
        return list(sources)
    normal = placed[0].plane.normal
    same = [s for s in placed if abs(float(s.plane.normal @ normal)) > 0.9999]
    corners = np.array([plane.pixel_to_patient(r, c) for r in (0, plane.rows - 1) for c in (0, plane.columns - 1)])
    half = slab[1] / 2 if slab else 0.0
    corners = np.concatenate([corners + half * plane.normal, corners - half * plane.normal])
    along = corners @ normal
    reach = (_reach([s.plane for s in same]) if same else 0.0) - 1e-6
    low, high = float(along.min()) - reach, float(along.max()) + reach
    chosen = [s for s in sources
              if s.plane is None or s not in same or low < float(s.plane.position @ normal) < high]
    return chosen or list(sources)


# ---------------------------------------------------------------------------------------------- building


def _copy(ds: Dataset, source: Dataset, keywords: Iterable[str]) -> None:
    for keyword in keywords:
        if keyword in source:
            elem = source[keyword]
            ds.add(DataElement(elem.tag, elem.VR, copy.deepcopy(elem.value)))


def _code_item(code: Code) -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = code
    return item


def _window(window) -> tuple[float, float, str, str] | None:
    """(center, width, function, explanation) of a (center, width) pair or a Window-like object."""
    if window is None:
        return None
    if hasattr(window, "center"):
        center, width = window.center, window.width
        function, explanation = getattr(window, "function", "LINEAR"), getattr(window, "explanation", "")
    else:
        center, width = window
        function, explanation = "LINEAR", ""
    center, width = float(center), float(width)
    if not (math.isfinite(center) and math.isfinite(width) and width > 0):
        raise ValueError(f"a window needs a finite centre and a width above 0, not ({center:g}, {width:g})")
    return center, width, str(function or "LINEAR"), str(explanation or "")


def _derivation_text(source: Dataset, slab: tuple[str, float] | None) -> str:
    number = _source_text(source, "SeriesNumber")
    about = _source_text(source, "SeriesDescription")
    series = " ".join(p for p in (f"series {number}" if number else "the series", f"({about})" if about else "") if p)
    if slab:
        what = f"Multiplanar reformat with a {slab[1]:g} mm {_SLAB_WORDS[slab[0]]} slab"
    else:
        what = "Multiplanar reformat"
    return f"{what} of {series}, made by {MANUFACTURER} {__version__}"[:1024]


def _needs_unicode(*texts: str) -> bool:
    return any(not t.isascii() for t in texts)


def derived_image(
    values: np.ndarray,
    plane: ImagePlane,
    source: Dataset,
    *,
    series_uid: str,
    series_number: int | None,
    instance_number: int,
    description: str,
    slab: tuple[str, float] | None = None,
    window=None,
    spacing: float | None = None,
    sources: Sequence[SourceImage] | None = None,
    rescale: Rescale | None = None,
    instance_uid: str | None = None,
    when: datetime | None = None,
) -> Dataset:
    """One derived image of a plane of modality values (NaN outside the volume), ready for `to_part10`.

    `source` is a header of the source series (patient, study, frame of reference, equipment); `slab`
    None or (mip|minip|avg, thickness mm); `window` (center, width) in modality units or a Window, else
    the source's first window; `spacing` the distance to the neighbouring planes of a stack (Spacing
    Between Slices, and Slice Thickness without a slab); `sources` the source series' instances for the
    Source Image Sequence (default: `source` itself); `rescale` one chosen for a whole series
    (`choose_rescale`). ValueError says what cannot be made.
    """
    values = _check_plane(values, plane)
    slab = _check_slab(slab)
    series_uid = _check_uid(series_uid, "series_uid")
    sop_uid = _check_uid(instance_uid, "instance_uid") if instance_uid else generate_uid()
    study_uid, frame_of_reference, source_series = check_source(source)
    if spacing is not None and not (math.isfinite(spacing) and spacing > 0):
        raise ValueError(f"the spacing between planes must be above 0 mm, not {spacing:g}")
    chosen_window = _window(window)
    rescale = rescale or rescale_for([values], source)
    if sources is None:
        sources = [SourceImage(_source_text(source, "SOPClassUID"), _source_text(source, "SOPInstanceUID"),
                               plane_from_dataset(source))]
    references = contributing(plane, list(sources), slab)
    for ref in references:
        _check_uid(ref.SOPClassUID, "a source SOPClassUID")
        _check_uid(ref.SOPInstanceUID, "a source SOPInstanceUID")

    sop_class = sop_class_for(source)
    when = when or datetime.now()
    date, time = when.strftime("%Y%m%d"), when.strftime("%H%M%S.%f")
    derivation = _derivation_text(source, slab)

    ds = Dataset()
    _copy(ds, source, ("SpecificCharacterSet",))
    _copy(ds, source, _FROM_SOURCE)
    texts = [str(v.value) for v in ds if v.VR in ("PN", "LO", "SH", "ST", "LT", "UT", "UC")]
    if _needs_unicode(description, derivation, *texts):
        ds.SpecificCharacterSet = "ISO_IR 192"
    ds.ImageType = image_type(sop_class, slab)
    ds.InstanceCreationDate, ds.InstanceCreationTime = date, time
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    ds.StudyInstanceUID = study_uid
    for keyword in ("StudyDate", "StudyTime", "AccessionNumber", "ReferringPhysicianName", "StudyID",
                    "PatientName", "PatientID", "PatientBirthDate", "PatientSex"):   # type 2: present, maybe empty
        if keyword not in ds:
            setattr(ds, keyword, "")
    ds.SeriesDate, ds.SeriesTime = date, time
    ds.ContentDate, ds.ContentTime = date, time
    ds.Modality = _source_text(source, "Modality") or "OT"
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = None if series_number is None else int(series_number)
    ds.InstanceNumber = int(instance_number)
    ds.SeriesDescription = description[:64]
    ds.Manufacturer = MANUFACTURER
    ds.ManufacturerModelName = MANUFACTURER
    ds.SoftwareVersions = __version__
    ds.FrameOfReferenceUID = frame_of_reference
    if "PositionReferenceIndicator" not in ds:
        ds.PositionReferenceIndicator = ""
    if _source_text(source, "LossyImageCompression") == "01":   # a reformat of lossy images is lossy too
        _copy(ds, source, ("LossyImageCompression", "LossyImageCompressionRatio", "LossyImageCompressionMethod"))
    ds.BurnedInAnnotation = "NO"
    # General Reference: what it was made of, and how
    ds.DerivationDescription = derivation
    ds.DerivationCodeSequence = DicomSequence(
        [_code_item(MULTIPLANAR_REFORMATTING)] + ([_code_item(SLAB_CODES[slab[0]])] if slab else []))
    items = []
    for ref in references:
        item = Dataset()
        item.ReferencedSOPClassUID = ref.SOPClassUID
        item.ReferencedSOPInstanceUID = ref.SOPInstanceUID
        item.PurposeOfReferenceCodeSequence = DicomSequence([_code_item(SOURCE_FOR_PROCESSING)])
        items.append(item)
    ds.SourceImageSequence = DicomSequence(items)
    # Common Instance Reference: the source series of the same study
    series_item = Dataset()
    series_item.ReferencedInstanceSequence = DicomSequence([_instance_item(r) for r in references])
    series_item.SeriesInstanceUID = source_series
    ds.ReferencedSeriesSequence = DicomSequence([series_item])

    thickness = slab[1] if slab else spacing
    position = [_ds(v) for v in np.asarray(plane.position, float)]
    orientation = [_ds(v) for v in (*np.asarray(plane.row_direction, float), *np.asarray(plane.column_direction, float))]
    pixel_spacing = [_ds(float(s)) for s in plane.pixel_spacing]
    if sop_class == MULTIFRAME_GRAYSCALE_WORD_SC:
        _sc_geometry(ds, position, orientation, pixel_spacing, thickness, spacing)
        # no Image Plane module: General Image's Patient Orientation says which way rows and columns run
        ds.PatientOrientation = [direction_label(plane.row_direction) or "", direction_label(plane.column_direction) or ""]
    else:
        ds.ImagePositionPatient = position
        ds.ImageOrientationPatient = orientation
        ds.PixelSpacing = pixel_spacing
        ds.SliceThickness = "" if thickness is None else _ds(thickness)
        if spacing is not None:
            ds.SpacingBetweenSlices = _ds(spacing)
        ds.SliceLocation = _ds(float(np.asarray(plane.position, float) @ plane.normal))
        _copy(ds, source, _CT_ACQUISITION if sop_class == CT_IMAGE else _MR_ACQUISITION)
        if sop_class == CT_IMAGE:
            for keyword in ("KVP", "AcquisitionNumber"):
                if keyword not in ds:
                    setattr(ds, keyword, None)
        else:
            if "IR" not in _source_text(source, "ScanningSequence").split("\\"):
                ds.pop("InversionTime", None)   # type 2C: only with an inversion recovery sequence
            for keyword in ("ScanOptions", "MRAcquisitionType", "EchoTime", "EchoTrainLength"):
                if keyword not in ds:
                    setattr(ds, keyword, None)

    # Image Pixel: 16-bit signed, modality values through the rescale
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = int(values.shape[0]), int(values.shape[1])
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
    ds.PixelRepresentation = 1 if rescale.signed else 0
    if sop_class != MR_IMAGE or _has_rescale(source) or not rescale.is_identity:
        ds.RescaleIntercept = rescale.intercept_text
        ds.RescaleSlope = rescale.slope_text
        ds.RescaleType = "HU" if sop_class == CT_IMAGE else "US"
    if sop_class == MULTIFRAME_GRAYSCALE_WORD_SC:
        ds.PresentationLUTShape = "IDENTITY"
    if chosen_window is not None:
        center, width, function, explanation = chosen_window
        ds.WindowCenter, ds.WindowWidth = _ds(center), _ds(width)
        if explanation:
            ds.WindowCenterWidthExplanation = explanation[:64]
        if function != "LINEAR":
            ds.VOILUTFunction = function
    else:
        _copy(ds, source, ("WindowCenter", "WindowWidth", "WindowCenterWidthExplanation", "VOILUTFunction"))
    ds.PixelData = rescale.encode(values).astype("<i2" if rescale.signed else "<u2").tobytes()
    ds["PixelData"].VR = "OW"

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = "WORKSTATION"
    ds.file_meta = meta
    return ds


def _instance_item(ref: SourceImage) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = ref.SOPClassUID
    item.ReferencedSOPInstanceUID = ref.SOPInstanceUID
    return item


def _sc_geometry(ds: Dataset, position, orientation, pixel_spacing, thickness, spacing) -> None:
    """SC Equipment and the one frame's geometry as Multi-frame Functional Groups (A.8.4.5)."""
    ds.ConversionType = "WSD"   # workstation
    ds.SecondaryCaptureDeviceManufacturer = MANUFACTURER
    ds.SecondaryCaptureDeviceSoftwareVersions = __version__
    ds.NumberOfFrames = 1
    measures = Dataset()
    measures.PixelSpacing = pixel_spacing
    if thickness is not None:
        measures.SliceThickness = _ds(thickness)
    if spacing is not None:
        measures.SpacingBetweenSlices = _ds(spacing)
    oriented = Dataset()
    oriented.ImageOrientationPatient = orientation
    shared = Dataset()
    shared.PixelMeasuresSequence = DicomSequence([measures])
    shared.PlaneOrientationSequence = DicomSequence([oriented])
    placed = Dataset()
    placed.ImagePositionPatient = position
    frame = Dataset()
    frame.PlanePositionSequence = DicomSequence([placed])
    ds.SharedFunctionalGroupsSequence = DicomSequence([shared])
    ds.PerFrameFunctionalGroupsSequence = DicomSequence([frame])


# ---------------------------------------------------------------------------------------------- series


def stack_order(planes: Sequence[ImagePlane]) -> tuple[list[int], float | None]:
    """The order of parallel planes along their normal, and their spacing when it is even (else None).

    Refuses planes that are not parallel or of different sizes, and two planes at one position."""
    if not planes:
        raise ValueError("a derived series needs at least one plane")
    first = planes[0]
    normal = first.normal
    for i, p in enumerate(planes[1:], 2):
        if (not np.allclose(p.row_direction, first.row_direction, atol=1e-4)
                or not np.allclose(p.column_direction, first.column_direction, atol=1e-4)):
            raise ValueError(f"plane {i} is not parallel to plane 1 with the same row and column directions: "
                             "a derived series is a stack of parallel planes")
        if (p.rows, p.columns) != (first.rows, first.columns) or not np.allclose(p.pixel_spacing, first.pixel_spacing):
            raise ValueError(f"plane {i} is {p.rows} x {p.columns} at {p.pixel_spacing} mm, plane 1 "
                             f"{first.rows} x {first.columns} at {first.pixel_spacing} mm: a stack has one size")
    positions = np.array([float(np.asarray(p.position, float) @ normal) for p in planes])
    order = sorted(range(len(planes)), key=lambda i: positions[i])
    steps = np.diff(positions[order])
    if steps.size and steps.min() < 1e-3:
        i = int(np.argmin(steps))
        raise ValueError(f"planes {order[i] + 1} and {order[i + 1] + 1} lie at the same position along the normal")
    spacing = None
    if steps.size and np.allclose(steps, steps.mean(), atol=max(1e-3, 1e-3 * steps.mean())):
        spacing = float(steps.mean())
    return order, spacing


def derived_series(
    planes: Iterable[tuple[np.ndarray, ImagePlane]],
    source: Dataset,
    *,
    description: str,
    series_uid: str,
    series_number: int | None = None,
    slab: tuple[str, float] | None = None,
    window=None,
    sources: Sequence[SourceImage] | None = None,
    when: datetime | None = None,
) -> Iterator[Dataset]:
    """One series of parallel planes: its instances, made one at a time as they are taken, numbered from
    1 along the planes' normal (row x column direction).

    Every instance has the same rescale (chosen over all planes), series date and spacing. The planes
    and the source are checked here, before anything is made, so a refusal comes before the first
    instance.
    """
    pairs = [(_check_plane(v, p), p) for v, p in planes]
    slab = _check_slab(slab)
    order, spacing = stack_order([p for _, p in pairs])
    check_source(source)
    series_uid = _check_uid(series_uid, "series_uid")
    rescale = rescale_for([v for v, _ in pairs], source)
    when = when or datetime.now()

    def instances() -> Iterator[Dataset]:
        for number, index in enumerate(order, 1):
            values, plane = pairs[index]
            yield derived_image(values, plane, source, series_uid=series_uid, series_number=series_number,
                                instance_number=number, description=description, slab=slab, window=window,
                                spacing=spacing, sources=sources, rescale=rescale, when=when)

    return instances()
