"""The series strip beside the viewports: every display set of the studies open in the tab with a
thumbnail and its number of images (and how many are still to come), the patient's other studies
below them; drag a series onto a viewport, double-click to show it in the active one, double-click
another study to open it beside this one."""

from __future__ import annotations

from PySide6.QtCore import QByteArray, QMimeData, QSize, Qt, Signal
from PySide6.QtGui import QBrush, QColor, QDrag, QFont, QIcon, QPixmap
from PySide6.QtWidgets import QAbstractItemView, QListWidget, QListWidgetItem, QMenu, QWidget

from workstation.core.dicom.text import format_date
from workstation.core.model.display_set import DisplaySet
from workstation.core.model.records import Study
from workstation.services.cache_service import CacheService
from workstation.ui.viewer.viewport import DISPLAY_SET_MIME, qimage_from

THUMB = 72
KIND_ROLE = Qt.ItemDataRole.UserRole
KEY_ROLE = Qt.ItemDataRole.UserRole + 1
STUDY_ROLE = Qt.ItemDataRole.UserRole + 2


def study_heading(study: Study | None, prior: bool) -> str:
    if study is None:
        return "Study"
    what = " ".join(t for t in (format_date(study.StudyDate), "/".join(study.ModalitiesInStudy),
                                study.StudyDescription) if t)
    return ("Prior: " if prior else "") + (what or study.StudyInstanceUID)


class SeriesStripWidget(QListWidget):
    display_set_activated = Signal(str, str)   # StudyInstanceUID, display set key
    mpr_requested = Signal(str, str)           # StudyInstanceUID, display set key: "Open MPR" from its menu
    study_requested = Signal(object)           # a Study of the patient (a prior) to open beside

    def __init__(self, cache: CacheService, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.cache = cache
        self._thumbs: dict[str, QPixmap] = {}
        self._jobs: dict[str, object] = {}
        self.expected: dict[str, int] = {}     # SeriesInstanceUID -> images a retrieval will bring
        self.setIconSize(QSize(THUMB, THUMB))
        self.setDragEnabled(True)
        self.setDragDropMode(QAbstractItemView.DragDropMode.DragOnly)
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.setWordWrap(True)
        self.setMinimumWidth(170)
        self.setMaximumWidth(260)
        self.setSpacing(2)
        self.setStyleSheet("QListWidget { background: #141414; color: #dddddd; border: none; }"
                           "QListWidget::item:selected { background: #3a3a3a; }")
        self.itemDoubleClicked.connect(self._on_double_clicked)
        self.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.customContextMenuRequested.connect(self._menu)

    def show_session(self, session, others: list[Study] | None = None) -> None:
        """List the session's studies and display sets, and the patient's other studies."""
        current = self.currentItem()
        keep = (current.data(STUDY_ROLE), current.data(KEY_ROLE)) if current is not None else None
        self.clear()
        for n, sets in enumerate(session.studies):
            self._heading(study_heading(sets.study, prior=n > 0))
            for ds in sets.display_sets:
                item = QListWidgetItem(self._text(ds))
                item.setData(KIND_ROLE, "display_set")
                item.setData(KEY_ROLE, ds.key)
                item.setData(STUDY_ROLE, ds.StudyInstanceUID)
                item.setToolTip(f"{ds.description}\nDrag onto a viewport, or double-click to show it in the active one")
                item.setSizeHint(QSize(160, THUMB + 10))
                self.addItem(item)
                self._thumbnail(item, ds)
                if keep == (ds.StudyInstanceUID, ds.key):
                    self.setCurrentItem(item)
        open_uids = {s.StudyInstanceUID for s in session.studies}
        others = [s for s in (others or []) if s.StudyInstanceUID not in open_uids]
        if others:
            self._heading("Other studies of this patient")
            for study in others:
                item = QListWidgetItem(study_heading(study, prior=False) + f"\n{study.NumberOfStudyRelatedInstances or ''}"
                                       f"{' images' if study.NumberOfStudyRelatedInstances else ''}")
                item.setData(KIND_ROLE, "study")
                item.setData(STUDY_ROLE, study.StudyInstanceUID)
                item.setData(KEY_ROLE, study)
                item.setToolTip("Double-click to open it beside the current study")
                self.addItem(item)

    def _heading(self, text: str) -> None:
        item = QListWidgetItem(text)
        item.setFlags(Qt.ItemFlag.NoItemFlags)
        font = QFont(self.font())
        font.setBold(True)
        item.setFont(font)
        item.setForeground(QBrush(QColor(255, 190, 90)))
        item.setData(KIND_ROLE, "heading")
        self.addItem(item)

    def _text(self, ds: DisplaySet) -> str:
        s = ds.series
        number = f"{s.SeriesNumber} " if s.SeriesNumber is not None else ""
        expected = self.expected.get(ds.SeriesInstanceUID, 0)
        here = len(ds)
        count = f"{here} of {expected} images" if expected > here else f"{here} image" + ("" if here == 1 else "s")
        return f"{number}{s.Modality}\n{ds.description}\n{count}"

    def _thumbnail(self, item: QListWidgetItem, ds: DisplaySet) -> None:
        pixmap = self._thumbs.get(ds.key)
        if pixmap is not None:
            item.setIcon(QIcon(pixmap))
            return
        if ds.key in self._jobs or not len(ds):
            return
        ref = ds.frames[len(ds) // 2]
        job = self.cache.frame_thumbnail(ref.path, ref.frame, THUMB)
        self._jobs[ds.key] = job

        def done(buffer, key=ds.key) -> None:
            self._jobs.pop(key, None)
            self._thumbs[key] = QPixmap.fromImage(qimage_from(buffer))
            for i in range(self.count()):
                it = self.item(i)
                if it.data(KEY_ROLE) == key:
                    it.setIcon(QIcon(self._thumbs[key]))

        job.succeeded.connect(done)
        job.failed.connect(lambda message, key=ds.key: self._jobs.pop(key, None))

    def _on_double_clicked(self, item: QListWidgetItem) -> None:
        kind = item.data(KIND_ROLE)
        if kind == "display_set":
            self.display_set_activated.emit(item.data(STUDY_ROLE), item.data(KEY_ROLE))
        elif kind == "study":
            self.study_requested.emit(item.data(KEY_ROLE))

    def _menu(self, pos) -> None:
        item = self.itemAt(pos)
        if item is None or item.data(KIND_ROLE) != "display_set":
            return
        menu = QMenu(self)
        menu.addAction("Show in the active viewport",
                       lambda: self.display_set_activated.emit(item.data(STUDY_ROLE), item.data(KEY_ROLE)))
        menu.addAction("Open MPR (axial, coronal, sagittal, 3D)",
                       lambda: self.mpr_requested.emit(item.data(STUDY_ROLE), item.data(KEY_ROLE)))
        menu.exec(self.viewport().mapToGlobal(pos))

    def mimeData(self, items) -> QMimeData:
        mime = QMimeData()
        for item in items:
            if item.data(KIND_ROLE) == "display_set":
                mime.setData(DISPLAY_SET_MIME, QByteArray(f"{item.data(STUDY_ROLE)}\n{item.data(KEY_ROLE)}".encode()))
        return mime

    def mimeTypes(self) -> list[str]:
        return [DISPLAY_SET_MIME]

    def startDrag(self, actions) -> None:
        item = self.currentItem()
        if item is None or item.data(KIND_ROLE) != "display_set":
            return
        drag = QDrag(self)
        drag.setMimeData(self.mimeData([item]))
        if not item.icon().isNull():
            drag.setPixmap(item.icon().pixmap(THUMB, THUMB))
        drag.exec(Qt.DropAction.CopyAction)
