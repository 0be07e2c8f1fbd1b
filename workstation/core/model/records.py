"""Patient, Study, Series and Instance records.

Fields are named by their DICOM keywords so that a record maps one-to-one onto the CLI's JSON
and onto C-FIND identifiers. UIDs are strings; dates are DICOM strings (YYYYMMDD) as stored;
empty text is "" and unknown counts are 0.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass(frozen=True, slots=True)
class Patient:
    PatientID: str
    PatientName: str = ""
    PatientBirthDate: str = ""
    PatientSex: str = ""
    NumberOfPatientRelatedStudies: int = 0

    def to_json(self) -> dict:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Study:
    StudyInstanceUID: str
    PatientID: str = ""
    PatientName: str = ""
    PatientBirthDate: str = ""
    PatientSex: str = ""
    StudyDate: str = ""
    StudyTime: str = ""
    StudyDescription: str = ""
    AccessionNumber: str = ""
    ReferringPhysicianName: str = ""
    StudyID: str = ""
    ModalitiesInStudy: tuple[str, ...] = ()
    NumberOfStudyRelatedSeries: int = 0
    NumberOfStudyRelatedInstances: int = 0
    pinned: bool = False
    size_bytes: int = 0
    last_access: float = 0.0

    def to_json(self) -> dict:
        d = asdict(self)
        d["ModalitiesInStudy"] = list(self.ModalitiesInStudy)
        return d


@dataclass(frozen=True, slots=True)
class Series:
    SeriesInstanceUID: str
    StudyInstanceUID: str = ""
    Modality: str = ""
    SeriesNumber: int | None = None
    SeriesDescription: str = ""
    BodyPartExamined: str = ""
    SeriesDate: str = ""
    SeriesTime: str = ""
    NumberOfSeriesRelatedInstances: int = 0

    def to_json(self) -> dict:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Instance:
    SOPInstanceUID: str
    SeriesInstanceUID: str = ""
    StudyInstanceUID: str = ""
    SOPClassUID: str = ""
    InstanceNumber: int | None = None
    NumberOfFrames: int = 1
    Rows: int = 0
    Columns: int = 0
    TransferSyntaxUID: str = ""
    path: str = ""
    size_bytes: int = 0
    extra: dict = field(default_factory=dict, compare=False, hash=False)

    def to_json(self) -> dict:
        d = asdict(self)
        d.pop("extra")
        return d


@dataclass(frozen=True, slots=True)
class KeyObjectInstance:
    """A Key Object Selection document in the cache, as `Cache.key_objects` lists it (newest first).

    `ours`: made by this workstation (ours to replace); `problem`: why the document cannot be read
    ("" when it can); `rejection_note`: it lists rejected instances (IHE IOCM), not key images.
    """

    path: str
    SOPInstanceUID: str
    SeriesInstanceUID: str
    StudyInstanceUID: str
    ContentDate: str = ""
    ContentTime: str = ""
    Manufacturer: str = ""
    title: str = ""
    ours: bool = False
    images: int = 0
    rejection_note: bool = False
    problem: str = ""

    def to_json(self) -> dict:
        return asdict(self)
