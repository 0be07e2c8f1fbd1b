"""The study table's model: a list of `Study` records shown as sortable columns.

Rows can arrive in batches (a node's search streams in) and each row says where the study is
(local, remote, both), as the network service computed it.
"""

from __future__ import annotations

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, Qt

from workstation.core.dicom.dates import dicom_date, dicom_time
from workstation.core.model import Study
from workstation.ui.text import format_date, format_date_time, person_name

COLUMNS: list[tuple[str, str]] = [
    ("Patient name", "PatientName"),
    ("Patient ID", "PatientID"),
    ("Birth date", "PatientBirthDate"),
    ("Sex", "PatientSex"),
    ("Study date", "StudyDate"),
    ("Modality", "ModalitiesInStudy"),
    ("Description", "StudyDescription"),
    ("Accession", "AccessionNumber"),
    ("Referring physician", "ReferringPhysicianName"),
    ("Series", "NumberOfStudyRelatedSeries"),
    ("Images", "NumberOfStudyRelatedInstances"),
    ("Kept", "pinned"),
    ("Where", "where"),
]

SORT_ROLE = Qt.ItemDataRole.UserRole + 1
STUDY_ROLE = Qt.ItemDataRole.UserRole + 2
_ROOT = QModelIndex()


def display_value(study: Study, key: str) -> str:
    value = getattr(study, key)  # "where" is the model's, not the record's
    if key == "StudyDate":
        return format_date_time(value, study.StudyTime)
    if key == "PatientBirthDate":
        return format_date(value)
    if key in ("PatientName", "ReferringPhysicianName"):
        return person_name(value)
    if key == "ModalitiesInStudy":
        return "/".join(value)
    if key == "pinned":
        return "pinned" if value else ""
    return str(value)


class StudyTableModel(QAbstractTableModel):
    def __init__(self) -> None:
        super().__init__()
        self.studies: list[Study] = []
        self.where: dict[str, str] = {}   # StudyInstanceUID -> "local", "remote", "both", ...
        self._rows: dict[str, int] = {}

    def set_studies(self, studies: list[Study], where: dict[str, str] | str = "local") -> None:
        self.beginResetModel()
        self.studies = list(studies)
        self._rows = {s.StudyInstanceUID: i for i, s in enumerate(self.studies)}
        self.where = dict(where) if isinstance(where, dict) else {uid: where for uid in self._rows}
        self.endResetModel()

    def append_studies(self, studies: list[Study], where: dict[str, str]) -> None:
        """Add a streamed batch; a study already listed is updated in place."""
        new = [s for s in studies if s.StudyInstanceUID not in self._rows]
        for s in studies:
            if s.StudyInstanceUID in self._rows:
                self.studies[self._rows[s.StudyInstanceUID]] = s
        self.where.update(where)
        if new:
            first = len(self.studies)
            self.beginInsertRows(_ROOT, first, first + len(new) - 1)
            for i, s in enumerate(new):
                self._rows[s.StudyInstanceUID] = first + i
            self.studies.extend(new)
            self.endInsertRows()

    def row_of(self, study_uid: str) -> int | None:
        return self._rows.get(study_uid)

    def set_where(self, study_uid: str, text: str) -> None:
        row = self._rows.get(study_uid)
        if row is None or self.where.get(study_uid) == text:
            return
        self.where[study_uid] = text
        index = self.index(row, len(COLUMNS) - 1)
        self.dataChanged.emit(index, index)

    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = _ROOT) -> int:
        return 0 if parent.isValid() else len(self.studies)

    def columnCount(self, parent: QModelIndex | QPersistentModelIndex = _ROOT) -> int:
        return 0 if parent.isValid() else len(COLUMNS)

    def data(self, index, role=Qt.ItemDataRole.DisplayRole):
        if not index.isValid():
            return None
        study = self.studies[index.row()]
        key = COLUMNS[index.column()][1]
        if key == "where":
            if role in (Qt.ItemDataRole.DisplayRole, SORT_ROLE):
                return self.where.get(study.StudyInstanceUID, "")
            return study if role == STUDY_ROLE else None
        if role == Qt.ItemDataRole.DisplayRole:
            return display_value(study, key)
        if role == SORT_ROLE:
            value = getattr(study, key)
            if key.startswith("NumberOf"):
                return int(value)
            if key == "StudyDate":
                return dicom_date(value) + dicom_time(study.StudyTime)
            return display_value(study, key).lower()
        if role == STUDY_ROLE:
            return study
        if role == Qt.ItemDataRole.ToolTipRole and key == "PatientName":
            return f"Study {study.StudyInstanceUID}" + ("  (pinned)" if study.pinned else "")
        if role == Qt.ItemDataRole.TextAlignmentRole and key.startswith("NumberOf"):
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None

    def headerData(self, section, orientation, role=Qt.ItemDataRole.DisplayRole):
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return COLUMNS[section][0]
        return None
