"""The study browser over the local cache: a search bar, the study table and its series.

Typing searches as you go (debounced); the search runs in the `CacheService` on a worker and
only the newest answer is shown. Double-clicking a study opens its first series, a series
opens that series.
"""

from __future__ import annotations

import datetime as dt

from PySide6.QtCore import QSortFilterProxyModel, Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QMenu,
    QMessageBox,
    QSplitter,
    QTableView,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from workstation.core.cache import QueryFilter
from workstation.core.model import Series, Study
from workstation.services.cache_service import CacheService
from workstation.services.jobs import Job
from workstation.ui.browser.study_table import SORT_ROLE, STUDY_ROLE, StudyTableModel

MODALITIES = ["", "CT", "MR", "CR", "DX", "MG", "US", "XA", "RF", "NM", "PT", "OT", "SC", "SEG"]
DATE_CHOICES = ["Any date", "Today", "Yesterday", "Last 7 days", "Last 30 days", "Last year"]


def date_range(choice: str, today: dt.date | None = None) -> str:
    """The DICOM date range for a quick-date choice."""
    today = today or dt.date.today()
    fmt = "%Y%m%d"
    if choice == "Today":
        return today.strftime(fmt)
    if choice == "Yesterday":
        return (today - dt.timedelta(days=1)).strftime(fmt)
    days = {"Last 7 days": 6, "Last 30 days": 29, "Last year": 365}.get(choice)
    if days is None:
        return ""
    return f"{(today - dt.timedelta(days=days)).strftime(fmt)}-{today.strftime(fmt)}"


class BrowserWidget(QWidget):
    series_opened = Signal(str)      # SeriesInstanceUID
    study_opened = Signal(str)       # StudyInstanceUID: open its first series
    status_changed = Signal(str)

    def __init__(self, cache: CacheService, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.cache = cache
        self._search_job: Job | None = None
        self._series_job: Job | None = None

        self.search_edit = QLineEdit(placeholderText="Search patient name, ID, accession or description")
        self.search_edit.setClearButtonEnabled(True)
        self.modality_box = QComboBox()
        self.modality_box.addItems([m or "Any modality" for m in MODALITIES])
        self.date_box = QComboBox()
        self.date_box.addItems(DATE_CHOICES)
        self.count_label = QLabel()
        self.empty_hint = QLabel("The local cache is empty. Use File > Import, or drop DICOM files, folders, "
                                 "ZIP archives or a DICOMDIR on this window.")
        self.empty_hint.setObjectName("empty_hint")
        self.empty_hint.setStyleSheet("color: palette(mid); padding: 12px;")
        self.empty_hint.hide()

        bar = QHBoxLayout()
        bar.addWidget(self.search_edit, 1)
        bar.addWidget(self.modality_box)
        bar.addWidget(self.date_box)
        bar.addWidget(self.count_label)

        self.model = StudyTableModel()
        self.proxy = QSortFilterProxyModel(self)
        self.proxy.setSourceModel(self.model)
        self.proxy.setSortRole(SORT_ROLE)
        self.table = QTableView()
        self.table.setModel(self.proxy)
        self.table.setSortingEnabled(True)
        self.table.sortByColumn(4, Qt.SortOrder.DescendingOrder)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setAlternatingRowColors(True)
        self.table.setWordWrap(False)
        self.table.verticalHeader().hide()
        self.table.verticalHeader().setDefaultSectionSize(self.fontMetrics().height() + 8)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        self.table.horizontalHeader().setStretchLastSection(True)

        self.series_table = QTableWidget(0, 4)
        self.series_table.setHorizontalHeaderLabels(["#", "Modality", "Description", "Images"])
        self.series_table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.series_table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.series_table.setWordWrap(False)
        self.series_table.verticalHeader().hide()
        self.series_table.verticalHeader().setDefaultSectionSize(self.fontMetrics().height() + 8)
        self.series_table.horizontalHeader().setStretchLastSection(True)

        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(self.table)
        split.addWidget(self.series_table)
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 1)

        layout = QVBoxLayout(self)
        layout.addLayout(bar)
        layout.addWidget(self.empty_hint)
        layout.addWidget(split, 1)

        self._debounce = QTimer(self, singleShot=True, interval=200)
        self._debounce.timeout.connect(self.search)
        self.search_edit.textChanged.connect(self._debounce.start)
        self.modality_box.currentIndexChanged.connect(self.search)
        self.date_box.currentIndexChanged.connect(self.search)
        self.table.selectionModel().currentRowChanged.connect(self._on_study_selected)
        self.table.doubleClicked.connect(self._on_study_double_clicked)
        self.table.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.table.customContextMenuRequested.connect(self._show_study_menu)
        self.series_table.cellDoubleClicked.connect(self._on_series_double_clicked)
        cache.changed.connect(self.search)

    def query(self) -> QueryFilter:
        return QueryFilter(
            text=self.search_edit.text().strip(),
            Modality=MODALITIES[self.modality_box.currentIndex()],
            StudyDate=date_range(self.date_box.currentText()),
        )

    def search(self) -> None:
        if self._search_job is not None:
            self._search_job.cancel()
        job = self.cache.search(self.query())
        self._search_job = job
        job.succeeded.connect(self._on_searched)
        job.failed.connect(self.status_changed)

    def _on_searched(self, studies: list[Study]) -> None:
        if self.sender() is not self._search_job:
            return  # an older search answered late
        selected = self.current_study()
        first_rows = self.model.rowCount() == 0
        self.model.set_studies(studies)
        self.count_label.setText(f"{len(studies)} stud" + ("y" if len(studies) == 1 else "ies"))
        unfiltered = self.query() == QueryFilter()
        self.empty_hint.setVisible(unfiltered and not studies)
        if first_rows and studies:
            self._fit_columns()
        if selected is not None:
            for row in range(self.proxy.rowCount()):
                if self.proxy.index(row, 0).data(STUDY_ROLE).StudyInstanceUID == selected.StudyInstanceUID:
                    self.table.selectRow(row)
                    break

    def _fit_columns(self) -> None:
        """Size columns to what they hold (over the first rows only, so it stays instant), within limits."""
        header = self.table.horizontalHeader()
        header.setResizeContentsPrecision(50)
        self.table.resizeColumnsToContents()
        for column in range(self.model.columnCount()):
            header.resizeSection(column, max(60, min(header.sectionSize(column) + 12, 320)))

    def current_study(self) -> Study | None:
        index = self.table.currentIndex()
        return index.data(STUDY_ROLE) if index.isValid() else None

    def _on_study_selected(self, current, previous) -> None:
        study = current.data(STUDY_ROLE) if current.isValid() else None
        self.series_table.setRowCount(0)
        if study is None:
            return
        job = self.cache.series(study.StudyInstanceUID)
        self._series_job = job
        job.succeeded.connect(self._on_series_listed)
        job.failed.connect(self.status_changed)

    def _on_series_listed(self, series: list[Series]) -> None:
        if self.sender() is not self._series_job:
            return
        self.series_table.setRowCount(len(series))
        for row, s in enumerate(series):
            cells = ["" if s.SeriesNumber is None else str(s.SeriesNumber), s.Modality, s.SeriesDescription,
                     str(s.NumberOfSeriesRelatedInstances)]
            for col, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setData(Qt.ItemDataRole.UserRole, s.SeriesInstanceUID)
                self.series_table.setItem(row, col, item)

    def _show_study_menu(self, position) -> None:
        index = self.table.indexAt(position)
        study = index.data(STUDY_ROLE) if index.isValid() else None
        if study is None:
            return
        menu = QMenu(self)
        menu.addAction("Open", lambda: self.study_opened.emit(study.StudyInstanceUID))
        menu.addAction("Unpin (allow eviction)" if study.pinned else "Pin (never evict)",
                       lambda: self.cache.pin_study(study.StudyInstanceUID, not study.pinned))
        menu.addSeparator()
        menu.addAction("Delete from cache…", lambda: self.confirm_delete(study))
        menu.popup(self.table.viewport().mapToGlobal(position))

    def confirm_delete(self, study: Study) -> None:
        name = study.PatientName.replace("^", " ").strip() or study.PatientID
        answer = QMessageBox.question(
            self, "Delete study",
            f"Delete the study of {name} ({study.StudyDate or 'no date'}, "
            f"{study.NumberOfStudyRelatedInstances} images) from the local cache?\n"
            "Copies on PACS nodes are not affected.")
        if answer == QMessageBox.StandardButton.Yes:
            job = self.cache.delete_study(study.StudyInstanceUID)
            job.failed.connect(self.status_changed)

    def _on_study_double_clicked(self, index) -> None:
        study = index.data(STUDY_ROLE)
        if study is not None:
            self.study_opened.emit(study.StudyInstanceUID)

    def _on_series_double_clicked(self, row: int, column: int) -> None:
        item = self.series_table.item(row, 0)
        if item is not None:
            self.series_opened.emit(item.data(Qt.ItemDataRole.UserRole))
