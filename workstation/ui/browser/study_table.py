"""The study table's model: a list of `Study` records shown as sortable columns."""

from __future__ import annotations

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, Qt

from workstation.core.model import Study
from workstation.ui.viewer.viewport import format_date

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
]

SORT_ROLE = Qt.ItemDataRole.UserRole + 1
STUDY_ROLE = Qt.ItemDataRole.UserRole + 2
_ROOT = QModelIndex()


def display_value(study: Study, key: str) -> str:
    value = getattr(study, key)
    if key in ("StudyDate", "PatientBirthDate"):
        return format_date(value)
    if key in ("PatientName", "ReferringPhysicianName"):
        return value.replace("^", " ").strip()
    if key == "ModalitiesInStudy":
        return "/".join(value)
    if key == "pinned":
        return "pinned" if value else ""
    return str(value)


class StudyTableModel(QAbstractTableModel):
    def __init__(self) -> None:
        super().__init__()
        self.studies: list[Study] = []

    def set_studies(self, studies: list[Study]) -> None:
        self.beginResetModel()
        self.studies = list(studies)
        self.endResetModel()

    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = _ROOT) -> int:
        return 0 if parent.isValid() else len(self.studies)

    def columnCount(self, parent: QModelIndex | QPersistentModelIndex = _ROOT) -> int:
        return 0 if parent.isValid() else len(COLUMNS)

    def data(self, index, role=Qt.ItemDataRole.DisplayRole):
        if not index.isValid():
            return None
        study = self.studies[index.row()]
        key = COLUMNS[index.column()][1]
        if role == Qt.ItemDataRole.DisplayRole:
            return display_value(study, key)
        if role == SORT_ROLE:
            value = getattr(study, key)
            if key.startswith("NumberOf"):
                return int(value)
            if key == "StudyDate":
                return value + study.StudyTime
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
