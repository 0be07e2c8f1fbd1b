"""The study table as the browser shows it: sorted, one row selected, "Where" in front.

The view owns its `StudyTableModel` and the sorting proxy in between, so the browser asks it
for the selected study instead of mapping proxy rows itself.
"""

from __future__ import annotations

from PySide6.QtCore import QSortFilterProxyModel, Qt
from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QTableView, QWidget

from workstation.core.model import Study
from workstation.ui.browser.study_table import SORT_ROLE, STUDY_ROLE, StudyTableModel


class StudyTableView(QTableView):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.studies = StudyTableModel()
        self.proxy = QSortFilterProxyModel(self)
        self.proxy.setSourceModel(self.studies)
        self.proxy.setSortRole(SORT_ROLE)
        self.setModel(self.proxy)
        self.setSortingEnabled(True)
        self.sortByColumn(4, Qt.SortOrder.DescendingOrder)
        self.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.setAlternatingRowColors(True)
        self.setWordWrap(False)
        self.verticalHeader().hide()
        self.verticalHeader().setDefaultSectionSize(self.fontMetrics().height() + 8)
        self.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        self.horizontalHeader().setStretchLastSection(True)
        # "Where" is the model's last column (indexes stay stable) but is shown first, never scrolled away.
        self.horizontalHeader().moveSection(self.studies.columnCount() - 1, 0)
        self.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)

    def current_study(self) -> Study | None:
        index = self.currentIndex()
        return index.data(STUDY_ROLE) if index.isValid() else None

    def select_study(self, study_uid: str) -> None:
        for row in range(self.proxy.rowCount()):
            if self.proxy.index(row, 0).data(STUDY_ROLE).StudyInstanceUID == study_uid:
                self.selectRow(row)
                break

    def fit_columns(self) -> None:
        """Size columns to what they hold (over the first rows only, so it stays instant), within limits."""
        header = self.horizontalHeader()
        header.setResizeContentsPrecision(50)
        self.resizeColumnsToContents()
        last = self.studies.columnCount() - 1
        for column in range(last + 1):
            header.resizeSection(column, max(60, min(header.sectionSize(column) + 12, 320)))
        header.resizeSection(last, max(140, header.sectionSize(last)))
