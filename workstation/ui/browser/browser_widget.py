"""The study browser: one search panel over the local cache and each configured node.

The source box chooses "Local cache" or a node. Over the cache, typing searches as you go
(debounced) in the `CacheService`; over a node, Search runs a C-FIND in the `NetworkService`
whose rows stream in while the node is still answering (Stop sends C-CANCEL). Every row says
where its study is (local, remote, both), as the service computed it. Selecting a study lists
its series with thumbnails of the local ones. The action bar opens, retrieves, sends, pins and
deletes the selected study; the work itself happens in the services.
"""

from __future__ import annotations

from PySide6.QtCore import QDate, QSize, QSortFilterProxyModel, Qt, QTimer, Signal
from PySide6.QtGui import QIcon, QPixmap
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QDateEdit,
    QGridLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QMenu,
    QMessageBox,
    QPushButton,
    QSplitter,
    QTableView,
    QTableWidget,
    QTableWidgetItem,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from workstation.core.cache import QueryFilter
from workstation.core.model import Series, Study
from workstation.core.net.node import Node
from workstation.services.cache_service import CacheService
from workstation.services.jobs import Job
from workstation.services.network_service import FoundBatch, NetworkService, study_description, where_it_is
from workstation.ui.browser.study_table import SORT_ROLE, STUDY_ROLE, StudyTableModel
from workstation.ui.viewer.viewport import qimage_from

MODALITIES = ["", "CT", "MR", "CR", "DX", "MG", "US", "XA", "RF", "NM", "PT", "OT", "SC", "SEG"]
LOCAL = "Local cache"
NO_DATE = QDate(1900, 1, 1)
THUMB = 64


def wildcard(value: str, prefix_only: bool = False) -> str:
    """What a user types as a DICOM matching value: kept when it has wildcards, else widened."""
    value = value.strip()
    if not value or "*" in value or "?" in value:
        return value
    return f"{value}*" if prefix_only else f"*{value}*"


class BrowserWidget(QWidget):
    series_opened = Signal(str)      # SeriesInstanceUID
    study_opened = Signal(str)       # StudyInstanceUID: open its first series
    remote_open_requested = Signal(object, object, object)  # Node, Study, SeriesInstanceUID or None
    status_changed = Signal(str)

    def __init__(self, cache: CacheService, network: NetworkService | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.cache = cache
        self.network = network
        self._search_job: Job | None = None
        self._series_job: Job | None = None
        self._locality_job: Job | None = None
        self._thumbs: dict[str, QPixmap] = {}
        self._thumb_jobs: dict[str, Job] = {}
        self._dirty_studies: set[str] = set()

        # --- search panel ---------------------------------------------------------------------
        self.source_box = QComboBox()
        self.source_box.setToolTip("Search the local cache or a DICOM node")
        self.search_edit = QLineEdit(placeholderText="Search patient name, ID, accession or description")
        self.search_edit.setClearButtonEnabled(True)
        self.search_button = QPushButton("Search")
        self.stop_button = QPushButton("Stop")
        self.stop_button.setToolTip("Stop the search (the node is told with C-CANCEL)")
        self.stop_button.setEnabled(False)
        self.count_label = QLabel()

        self.name_edit = QLineEdit(placeholderText="Patient name")
        self.id_edit = QLineEdit(placeholderText="Patient ID")
        self.accession_edit = QLineEdit(placeholderText="Accession")
        self.referring_edit = QLineEdit(placeholderText="Referring physician")
        self.description_edit = QLineEdit(placeholderText="Study description")
        self.modality_box = QComboBox()
        self.modality_box.addItems([m or "Any modality" for m in MODALITIES])
        self.date_from = self._date_edit("From")
        self.date_to = self._date_edit("To")
        self.date_buttons = {}
        for choice in ("Today", "Yesterday", "Last 7 days", "Any date"):
            button = QToolButton(text=choice)
            button.clicked.connect(lambda checked=False, c=choice: self.set_dates(c))
            self.date_buttons[choice] = button

        self.cap_label = QLabel()
        self.cap_label.setObjectName("cap_warning")
        self.cap_label.setStyleSheet("color: #b36b00; padding: 2px;")
        self.cap_label.setWordWrap(True)
        self.cap_label.hide()
        self.error_label = QLabel()
        self.error_label.setObjectName("search_error")
        self.error_label.setStyleSheet("color: #c0392b; padding: 2px;")
        self.error_label.setWordWrap(True)
        self.error_label.hide()
        self.empty_hint = QLabel("The local cache is empty. Use File > Import, or drop DICOM files, folders, "
                                 "ZIP archives or a DICOMDIR on this window; or choose a node above to search a PACS.")
        self.empty_hint.setObjectName("empty_hint")
        self.empty_hint.setStyleSheet("color: palette(mid); padding: 12px;")
        self.empty_hint.hide()

        top = QHBoxLayout()
        top.addWidget(QLabel("Source"))
        top.addWidget(self.source_box)
        top.addWidget(self.search_edit, 1)
        top.addWidget(self.search_button)
        top.addWidget(self.stop_button)
        top.addWidget(self.count_label)
        fields = QGridLayout()
        for column, edit in enumerate((self.name_edit, self.id_edit, self.accession_edit, self.referring_edit,
                                       self.description_edit)):
            fields.addWidget(edit, 0, column)
        dates = QHBoxLayout()
        dates.addWidget(self.modality_box)
        dates.addSpacing(12)
        dates.addWidget(QLabel("Date"))
        dates.addWidget(self.date_from)
        dates.addWidget(QLabel("–"))
        dates.addWidget(self.date_to)
        for button in self.date_buttons.values():
            dates.addWidget(button)
        dates.addStretch(1)

        # --- study table ----------------------------------------------------------------------
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
        # "Where" is the model's last column (indexes stay stable) but is shown first, never scrolled away.
        self.table.horizontalHeader().moveSection(self.model.columnCount() - 1, 0)

        self.series_table = QTableWidget(0, 6)
        self.series_table.setHorizontalHeaderLabels(["", "#", "Modality", "Description", "Images", "Where"])
        self.series_table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.series_table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.series_table.setWordWrap(False)
        self.series_table.setIconSize(QSize(THUMB, THUMB))
        self.series_table.verticalHeader().hide()
        self.series_table.verticalHeader().setDefaultSectionSize(THUMB + 6)
        self.series_table.horizontalHeader().setStretchLastSection(True)
        self.series_table.setColumnWidth(0, THUMB + 10)
        self.series_table.setColumnWidth(3, 260)

        # --- actions --------------------------------------------------------------------------
        self.open_button = QPushButton("Open")
        self.retrieve_button = QPushButton("Retrieve")
        self.send_button = QToolButton(text="Send to node…")
        self.send_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        self.send_menu = QMenu(self)
        self.send_button.setMenu(self.send_menu)
        self.pin_button = QPushButton("Pin")
        self.delete_button = QPushButton("Delete from cache…")
        actions = QHBoxLayout()
        for button in (self.open_button, self.retrieve_button, self.send_button, self.pin_button, self.delete_button):
            actions.addWidget(button)
        actions.addStretch(1)

        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(self.table)
        split.addWidget(self.series_table)
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 2)

        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addLayout(fields)
        layout.addLayout(dates)
        layout.addWidget(self.cap_label)
        layout.addWidget(self.error_label)
        layout.addWidget(self.empty_hint)
        layout.addWidget(split, 1)
        layout.addLayout(actions)

        self._debounce = QTimer(self, singleShot=True, interval=200)
        self._debounce.timeout.connect(self._search_if_local)
        self._refresh = QTimer(self, singleShot=True, interval=300)
        self._refresh.timeout.connect(self._refresh_arrivals)
        for edit in (self.search_edit, self.name_edit, self.id_edit, self.accession_edit, self.referring_edit,
                     self.description_edit):
            edit.textChanged.connect(self._debounce.start)
            edit.returnPressed.connect(self.search)
        self.modality_box.currentIndexChanged.connect(self._search_if_local)
        self.date_from.dateChanged.connect(self._debounce.start)
        self.date_to.dateChanged.connect(self._debounce.start)
        self.source_box.currentIndexChanged.connect(self._on_source_changed)
        self.search_button.clicked.connect(self.search)
        self.stop_button.clicked.connect(self.stop)
        self.table.selectionModel().currentRowChanged.connect(self._on_study_selected)
        self.table.doubleClicked.connect(self._on_study_double_clicked)
        self.table.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.table.customContextMenuRequested.connect(self._show_study_menu)
        self.series_table.cellDoubleClicked.connect(self._on_series_double_clicked)
        self.open_button.clicked.connect(self.open_selected)
        self.retrieve_button.clicked.connect(self.retrieve_selected)
        self.pin_button.clicked.connect(self._toggle_pin)
        self.delete_button.clicked.connect(lambda: self.current_study() and self.confirm_delete(self.current_study()))
        self.send_menu.aboutToShow.connect(self._fill_send_menu)
        cache.changed.connect(self._on_cache_changed)
        if network is not None:
            network.instance_added.connect(self._on_instance_added)
            network.settings_changed.connect(lambda settings: self.set_nodes(settings.nodes))
            self.set_nodes(network.settings.nodes)
        else:
            self.source_box.addItem(LOCAL)
        self._update_actions()

    def _date_edit(self, tip: str) -> QDateEdit:
        edit = QDateEdit()
        edit.setCalendarPopup(True)
        edit.setDisplayFormat("yyyy-MM-dd")
        edit.setMinimumDate(NO_DATE)
        edit.setSpecialValueText("any")
        edit.setDate(NO_DATE)
        edit.setToolTip(f"{tip} (the lowest date means any)")
        return edit

    # --- sources ------------------------------------------------------------------------------

    def set_nodes(self, nodes: list[Node]) -> None:
        current = self.source_box.currentText()
        self.source_box.blockSignals(True)
        self.source_box.clear()
        self.source_box.addItem(LOCAL, None)
        for node in nodes:
            self.source_box.addItem(node.name, node)
        index = self.source_box.findText(current)
        self.source_box.setCurrentIndex(max(0, index))
        self.source_box.blockSignals(False)
        if index < 0 and current and current != LOCAL:
            self._on_source_changed()

    def current_node(self) -> Node | None:
        return self.source_box.currentData()

    def set_source(self, name: str) -> None:
        index = self.source_box.findText(name)
        if index < 0:
            raise LookupError(f"no source named {name!r}")
        self.source_box.setCurrentIndex(index)

    def _on_source_changed(self) -> None:
        self.stop()
        self._search_job = None
        node = self.current_node()
        self.search_edit.setEnabled(node is None)
        self.search_edit.setToolTip("" if node is None else "The loose search works on the local cache; "
                                    "use the fields below for a node")
        self.model.set_studies([])
        self.series_table.setRowCount(0)
        self.cap_label.hide()
        self.error_label.hide()
        self.empty_hint.hide()
        self.count_label.setText("" if node is None else "Press Search")
        self._update_actions()
        if node is None:
            self.search()

    # --- searching ----------------------------------------------------------------------------

    def set_dates(self, choice: str) -> None:
        """Quick dates: fill From and To (Any date clears them); the search follows."""
        today = QDate.currentDate()
        start, end = {"Today": (today, today), "Yesterday": (today.addDays(-1), today.addDays(-1)),
                      "Last 7 days": (today.addDays(-6), today)}.get(choice, (NO_DATE, NO_DATE))
        for edit, value in ((self.date_from, start), (self.date_to, end)):
            edit.blockSignals(True)
            edit.setDate(value)
            edit.blockSignals(False)
        self._search_if_local()

    def study_date(self) -> str:
        start = "" if self.date_from.date() == NO_DATE else self.date_from.date().toString("yyyyMMdd")
        end = "" if self.date_to.date() == NO_DATE else self.date_to.date().toString("yyyyMMdd")
        if start and start == end:
            return start
        return f"{start}-{end}" if start or end else ""

    def query(self) -> QueryFilter:
        return QueryFilter(
            PatientName=wildcard(self.name_edit.text(), prefix_only=True),
            PatientID=self.id_edit.text().strip(),
            AccessionNumber=self.accession_edit.text().strip(),
            StudyDescription=wildcard(self.description_edit.text()),
            text=self.search_edit.text().strip() if self.current_node() is None else "",
            Modality=MODALITIES[self.modality_box.currentIndex()],
            StudyDate=self.study_date(),
        )

    def referring(self) -> str:
        return wildcard(self.referring_edit.text())

    def _search_if_local(self) -> None:
        if self.current_node() is None:
            self.search()

    def search(self) -> None:
        if self._search_job is not None:
            self._search_job.cancel()
        node = self.current_node()
        self.error_label.hide()
        self.cap_label.hide()
        if node is None:
            job = self.cache.search(self.query(), referring=self.referring())
            self._search_job = job
            job.succeeded.connect(self._on_searched)
            job.failed.connect(self._on_search_failed)
            return
        query = self.query()
        self.model.set_studies([])
        self.series_table.setRowCount(0)
        self.empty_hint.hide()
        job = self.network.find(node, "study", query, referring=self.referring())
        self._search_job = job
        self.count_label.setText(f"Searching {node.name}…")
        self.stop_button.setEnabled(True)
        job.partial.connect(self._on_found)
        job.succeeded.connect(self._on_found_all)
        job.failed.connect(self._on_search_failed)
        job.cancelled.connect(self._on_search_stopped)
        job.ended.connect(self._on_search_ended)

    def stop(self) -> None:
        if self._search_job is not None and self._search_job.running:
            self._search_job.cancel()
            self.count_label.setText("Stopping…")

    def _on_found(self, batch: FoundBatch) -> None:
        if self.sender() is not self._search_job:
            return
        first_rows = self.model.rowCount() == 0
        where = {s.StudyInstanceUID: where_it_is(s.NumberOfStudyRelatedInstances,
                                                 batch.local.get(s.StudyInstanceUID, 0)) for s in batch.records}
        self.model.append_studies(list(batch.records), where)
        self.count_label.setText(f"{self.model.rowCount()} studies so far…")
        if first_rows and batch.records:
            self._fit_columns()

    def _on_found_all(self, outcome) -> None:
        if self.sender() is not self._search_job:
            return
        n = self.model.rowCount()
        self.count_label.setText(f"{n} stud" + ("y" if n == 1 else "ies"))
        if outcome.capped:
            self.cap_label.setText(f"Only the first {n} studies are shown: the search reached the limit of "
                                   f"{n} results and was stopped. Narrow it down (name, date, modality).")
            self.cap_label.show()

    def _on_search_stopped(self) -> None:
        if self.sender() is self._search_job:
            self.count_label.setText(f"Stopped: {self.model.rowCount()} studies shown")

    def _on_search_failed(self, message: str) -> None:
        if self.sender() is not self._search_job:
            return
        self.count_label.setText("")
        self.error_label.setText(message)
        self.error_label.show()
        self.status_changed.emit(message)

    def _on_search_ended(self) -> None:
        if self.sender() is self._search_job:
            self.stop_button.setEnabled(False)

    def _on_searched(self, studies: list[Study]) -> None:
        if self.sender() is not self._search_job:
            return  # an older search answered late
        selected = self.current_study()
        first_rows = self.model.rowCount() == 0
        self.model.set_studies(studies, "local")
        self.count_label.setText(f"{len(studies)} stud" + ("y" if len(studies) == 1 else "ies"))
        unfiltered = self.query() == QueryFilter() and not self.referring()
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
        header.resizeSection(self.model.columnCount() - 1, max(140, header.sectionSize(self.model.columnCount() - 1)))

    # --- arrivals: where it is, and the local list, follow the cache -------------------------

    def _on_instance_added(self, study_uid: str, series_uid: str) -> None:
        if self.current_node() is None or self.model.row_of(study_uid) is not None:
            self._dirty_studies.add(study_uid)
            if not self._refresh.isActive():
                self._refresh.start()

    def _on_cache_changed(self) -> None:
        if self.current_node() is None:
            self.search()
        else:
            self._dirty_studies.update(s.StudyInstanceUID for s in self.model.studies)
            self._refresh.start()

    def _refresh_arrivals(self) -> None:
        dirty, self._dirty_studies = self._dirty_studies, set()
        current = self.current_study()
        if self.current_node() is None:
            self.search()
        elif dirty and self.network is not None:
            job = self.network.locality(sorted(dirty))
            self._locality_job = job
            job.succeeded.connect(lambda local, uids=dirty: self._on_locality(uids, local))
        if current is not None and current.StudyInstanceUID in dirty:
            self._list_series(current)

    def _on_locality(self, uids: set[str], local: dict[str, int]) -> None:
        for uid in uids:
            row = self.model.row_of(uid)
            if row is not None:
                remote = self.model.studies[row].NumberOfStudyRelatedInstances
                self.model.set_where(uid, where_it_is(remote, local.get(uid, 0)))
        self._update_actions()

    # --- the selected study and its series ----------------------------------------------------

    def current_study(self) -> Study | None:
        index = self.table.currentIndex()
        return index.data(STUDY_ROLE) if index.isValid() else None

    def current_where(self) -> str:
        study = self.current_study()
        return self.model.where.get(study.StudyInstanceUID, "") if study is not None else ""

    def _on_study_selected(self, current, previous) -> None:
        study = current.data(STUDY_ROLE) if current.isValid() else None
        self.series_table.setRowCount(0)
        self._update_actions()
        if study is not None:
            self._list_series(study)

    def _list_series(self, study: Study) -> None:
        node = self.current_node()
        if node is None:
            job = self.cache.series(study.StudyInstanceUID)
        else:
            job = self.network.series(node, study.StudyInstanceUID)
        self._series_job = job
        job.succeeded.connect(self._on_series_listed)
        job.failed.connect(self._on_series_failed)

    def _on_series_failed(self, message: str) -> None:
        if self.sender() is self._series_job:
            self.status_changed.emit(message)

    def _on_series_listed(self, listed: list) -> None:
        if self.sender() is not self._series_job:
            return
        rows: list[tuple[Series, int, str]] = []
        for entry in listed:
            if isinstance(entry, tuple):   # from a node: (Series, instances in the cache)
                series, local = entry
                rows.append((series, local, where_it_is(series.NumberOfSeriesRelatedInstances, local)))
            else:
                rows.append((entry, entry.NumberOfSeriesRelatedInstances, "local"))
        rows.sort(key=lambda r: (r[0].SeriesNumber is None, r[0].SeriesNumber or 0))
        self.series_table.setRowCount(len(rows))
        for row, (s, local, where) in enumerate(rows):
            cells = ["", "" if s.SeriesNumber is None else str(s.SeriesNumber), s.Modality, s.SeriesDescription,
                     str(s.NumberOfSeriesRelatedInstances), where]
            for col, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setData(Qt.ItemDataRole.UserRole, s.SeriesInstanceUID)
                item.setData(Qt.ItemDataRole.UserRole + 1, local)
                self.series_table.setItem(row, col, item)
            thumb = self.series_table.item(row, 0)
            if s.SeriesInstanceUID in self._thumbs:
                thumb.setIcon(QIcon(self._thumbs[s.SeriesInstanceUID]))
            elif local > 0:
                thumb.setText("…")
                self._request_thumbnail(s.SeriesInstanceUID)
            else:
                thumb.setText("—")
                thumb.setTextAlignment(Qt.AlignmentFlag.AlignCenter)
                thumb.setToolTip("Not in the cache yet: retrieve the series to see it")

    def _request_thumbnail(self, series_uid: str) -> None:
        if series_uid in self._thumb_jobs:
            return
        job = self.cache.thumbnail(series_uid, THUMB)
        self._thumb_jobs[series_uid] = job
        job.succeeded.connect(lambda buffer, uid=series_uid: self._on_thumbnail(uid, buffer))
        job.ended.connect(lambda uid=series_uid: self._thumb_jobs.pop(uid, None))

    def _on_thumbnail(self, series_uid: str, buffer) -> None:
        pixmap = QPixmap.fromImage(qimage_from(buffer)).scaled(
            THUMB, THUMB, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.SmoothTransformation)
        self._thumbs[series_uid] = pixmap
        for row in range(self.series_table.rowCount()):
            item = self.series_table.item(row, 0)
            if item is not None and item.data(Qt.ItemDataRole.UserRole) == series_uid:
                item.setText("")
                item.setIcon(QIcon(pixmap))

    def thumbnail_count(self) -> int:
        return sum(1 for row in range(self.series_table.rowCount())
                   if self.series_table.item(row, 0) is not None and not self.series_table.item(row, 0).icon().isNull())

    # --- actions ------------------------------------------------------------------------------

    def _update_actions(self) -> None:
        study = self.current_study()
        node = self.current_node()
        where = self.current_where()
        local = study is not None and (node is None or where.startswith("both"))
        self.open_button.setEnabled(study is not None)
        self.retrieve_button.setEnabled(study is not None and node is not None and where != "both")
        self.send_button.setEnabled(local and self.network is not None and bool(self.network.settings.nodes))
        self.pin_button.setEnabled(local)
        self.delete_button.setEnabled(local)
        self.pin_button.setText("Unpin" if study is not None and study.pinned else "Pin")

    def open_selected(self) -> None:
        study = self.current_study()
        if study is None:
            return
        node = self.current_node()
        if node is None or self.current_where() == "both":
            self.study_opened.emit(study.StudyInstanceUID)
        else:
            self.remote_open_requested.emit(node, study, None)

    def retrieve_selected(self):
        study, node = self.current_study(), self.current_node()
        if study is None or node is None:
            return None
        transfer = self.network.retrieve(node, study.StudyInstanceUID, description=study_description(study))
        self.status_changed.emit(f"Retrieving {study_description(study)} from {node.name}…")
        return transfer

    def _fill_send_menu(self) -> None:
        self.send_menu.clear()
        if self.network is None:
            return
        for node in self.network.settings.nodes:
            self.send_menu.addAction(node.name, lambda n=node: self.send_selected(n))

    def send_selected(self, node: Node):
        study = self.current_study()
        if study is None:
            return None
        self.status_changed.emit(f"Sending {study_description(study)} to {node.name}…")
        return self.network.send(node, study.StudyInstanceUID, description=study_description(study))

    def _toggle_pin(self) -> None:
        study = self.current_study()
        if study is None:
            return
        if self.current_node() is None:
            job = self.cache.pin_study(study.StudyInstanceUID, not study.pinned)
        else:  # a node's record does not know the local pin: pin it
            job = self.cache.pin_study(study.StudyInstanceUID, True)
            job.succeeded.connect(lambda _: self.status_changed.emit("Pinned in the local cache."))
        job.failed.connect(self.status_changed)

    def _show_study_menu(self, position) -> None:
        index = self.table.indexAt(position)
        study = index.data(STUDY_ROLE) if index.isValid() else None
        if study is None:
            return
        menu = QMenu(self)
        menu.addAction("Open", self.open_selected)
        if self.current_node() is not None:
            menu.addAction("Retrieve", self.retrieve_selected)
        if self.current_node() is None:
            menu.addAction("Unpin (allow eviction)" if study.pinned else "Pin (never evict)",
                           lambda: self.cache.pin_study(study.StudyInstanceUID, not study.pinned))
        menu.addSeparator()
        menu.addAction("Delete from cache…", lambda: self.confirm_delete(study))
        menu.popup(self.table.viewport().mapToGlobal(position))

    def confirm_delete(self, study: Study) -> None:
        name = study.PatientName.replace("^", " ").strip() or study.PatientID
        answer = QMessageBox.question(
            self, "Delete study",
            f"Delete the study of {name} ({study.StudyDate or 'no date'}) from the local cache?\n"
            "Copies on PACS nodes are not affected.")
        if answer == QMessageBox.StandardButton.Yes:
            job = self.cache.delete_study(study.StudyInstanceUID)
            job.failed.connect(self.status_changed)

    def _on_study_double_clicked(self, index) -> None:
        if index.data(STUDY_ROLE) is not None:
            self.open_selected()

    def _on_series_double_clicked(self, row: int, column: int) -> None:
        item = self.series_table.item(row, 0)
        if item is None:
            return
        series_uid, local = item.data(Qt.ItemDataRole.UserRole), item.data(Qt.ItemDataRole.UserRole + 1)
        node, study = self.current_node(), self.current_study()
        if node is None or local:
            self.series_opened.emit(series_uid)
        elif study is not None:
            self.remote_open_requested.emit(node, study, series_uid)

