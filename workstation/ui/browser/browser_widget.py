"""The study browser: one search panel over the local cache and each configured node.

The search bar chooses "Local cache" or a node and asks for searches. Over the cache a search
runs in the `CacheService`; over a node, a C-FIND in the `NetworkService` whose rows stream in
while the node is still answering (Stop sends C-CANCEL). Every row says where its study is
(local, remote, both), as the service computed it. Selecting a study lists its series with
thumbnails of the local ones. The action bar opens, retrieves, sends, pins and deletes the
selected study; the work itself happens in the services.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QMenu,
    QMessageBox,
    QPushButton,
    QSplitter,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from workstation.core.cache import QueryFilter
from workstation.core.model import Study
from workstation.core.model.node import Node
from workstation.services.cache_service import CacheService
from workstation.services.jobs import Job
from workstation.services.network_service import NetworkService
from workstation.services.query_service import FoundBatch, where_it_is
from workstation.services.transfer_queue import study_description
from workstation.ui.browser.search_bar import LOCAL, SearchBarWidget, count_text
from workstation.ui.browser.series_table import SeriesTableWidget
from workstation.ui.browser.study_table import STUDY_ROLE
from workstation.ui.browser.study_view import StudyTableView
from workstation.ui.text import format_date, person_name


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
        self._locality_job: Job | None = None
        self._dirty_studies: set[str] = set()
        self._to_show: list[str] = []   # studies to list and select once the local list has them (an import's)
        self._filters_cleared = False

        self.search_bar = SearchBarWidget()
        self.empty_hint = QLabel("The local cache is empty. Use File > Import, or drop DICOM files, folders, "
                                 "ZIP archives or a DICOMDIR on this window; or choose a node above to search a PACS.")
        self.empty_hint.setObjectName("empty_hint")
        self.empty_hint.setStyleSheet("color: palette(mid); padding: 12px;")
        self.empty_hint.setWordWrap(True)   # else its one line sets the window's least width (1009 px)
        self.empty_hint.hide()
        self.table = StudyTableView()
        self.model = self.table.studies
        self.proxy = self.table.proxy
        self.series_table = SeriesTableWidget(cache, network)
        self.splitter = QSplitter(Qt.Orientation.Vertical)   # studies above, the selected study's series below
        self.splitter.addWidget(self.table)
        self.splitter.addWidget(self.series_table)
        self.splitter.setStretchFactor(0, 3)
        self.splitter.setStretchFactor(1, 2)

        layout = QVBoxLayout(self)
        layout.addWidget(self.search_bar)
        layout.addWidget(self.empty_hint)
        layout.addWidget(self.splitter, 1)
        layout.addLayout(self._action_bar())

        self._refresh = QTimer(self, singleShot=True, interval=300)
        self._refresh.timeout.connect(self._refresh_arrivals)
        self.search_bar.search_requested.connect(self.search)
        self.search_bar.stop_requested.connect(self.stop)
        self.search_bar.source_changed.connect(self._on_source_changed)
        self.table.selectionModel().currentRowChanged.connect(self._on_study_selected)
        self.table.doubleClicked.connect(self._on_study_double_clicked)
        self.table.customContextMenuRequested.connect(self._show_study_menu)
        self.series_table.series_activated.connect(self._on_series_activated)
        self.series_table.listing_failed.connect(self.status_changed)
        cache.changed.connect(self._on_cache_changed)
        if network is not None:
            network.instance_added.connect(self._on_instance_added)
            network.settings_changed.connect(lambda settings: self.search_bar.set_nodes(settings.nodes))
        self.search_bar.set_nodes(network.settings.nodes if network is not None else [])
        self._update_actions()

    def _action_bar(self) -> QHBoxLayout:
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
        self.open_button.clicked.connect(self.open_selected)
        self.retrieve_button.clicked.connect(self.retrieve_selected)
        self.pin_button.clicked.connect(lambda: self._toggle_pin())
        self.delete_button.clicked.connect(self.delete_selected)
        self.send_menu.aboutToShow.connect(self._fill_send_menu)
        return actions

    def current_node(self) -> Node | None:
        return self.search_bar.current_node()

    def _on_source_changed(self) -> None:
        self._drop_search()
        self.model.set_studies([])
        self.series_table.clear_series()
        self.empty_hint.hide()
        self._update_actions()
        if self.current_node() is None:
            self.search()

    # --- searching ----------------------------------------------------------------------------

    def _drop_search(self) -> None:
        """Forget the running search (cancelled); its late answers are ignored."""
        if self._search_job is not None:
            self._search_job.cancel()
        self._search_job = None

    def search(self) -> None:
        self._drop_search()
        node = self.current_node()
        self.search_bar.clear_messages()
        query, referring = self.search_bar.query(), self.search_bar.referring()
        if node is None:
            job = self.cache.search(query, referring=referring)
            self._search_job = job
            job.succeeded.connect(self._on_searched)
            job.failed.connect(self._on_search_failed)
            return
        self.model.set_studies([])
        self.series_table.clear_series()
        self.empty_hint.hide()
        job = self.network.queries.find(node, "study", query, referring=referring)
        self._search_job = job
        self.search_bar.show_count(f"Searching {node.name}…")
        self.search_bar.set_searching(True)
        job.partial.connect(self._on_found)
        job.succeeded.connect(self._on_found_all)
        job.failed.connect(self._on_search_failed)
        job.cancelled.connect(self._on_search_stopped)
        job.ended.connect(self._on_search_ended)

    def stop(self) -> None:
        if self._search_job is not None and self._search_job.running:
            self._search_job.cancel()
            self.search_bar.show_count("Stopping…")

    def _on_found(self, batch: FoundBatch) -> None:
        if self.sender() is not self._search_job:
            return
        first_rows = self.model.rowCount() == 0
        where = {s.StudyInstanceUID: where_it_is(s.NumberOfStudyRelatedInstances,
                                                 batch.local.get(s.StudyInstanceUID, 0)) for s in batch.records}
        self.model.append_studies(list(batch.records), where)
        self.search_bar.show_count(f"{self.model.rowCount()} studies so far…")
        if first_rows and batch.records:
            self.table.fit_columns()

    def _on_found_all(self, outcome) -> None:
        if self.sender() is not self._search_job:
            return
        n = self.model.rowCount()
        self.search_bar.show_count(count_text(n))
        if outcome.capped:
            self.search_bar.show_capped(n)

    def _on_search_stopped(self) -> None:
        if self.sender() is self._search_job:
            self.search_bar.show_count(f"Stopped: {self.model.rowCount()} studies shown")

    def _on_search_failed(self, message: str) -> None:
        if self.sender() is not self._search_job:
            return
        self.search_bar.show_error(message)
        self.status_changed.emit(message)

    def _on_search_ended(self) -> None:
        if self.sender() is self._search_job:
            self.search_bar.set_searching(False)

    def show_studies(self, study_uids: list[str]) -> None:
        """List these local studies (just imported, say) and select the first of them in the table's order:
        where they are listed already (a node's list showing them all), else over the local cache, with the
        search fields cleared if they would hide some."""
        wanted = set(study_uids)
        if self.current_node() is not None and wanted <= {s.StudyInstanceUID for s in self.model.studies}:
            self._select_first_of(wanted)
            return
        self._to_show, self._filters_cleared = list(study_uids), False
        if self.current_node() is not None:
            self.search_bar.set_source(LOCAL)   # searches the cache
        else:
            self.search()

    def _show_pending(self) -> None:
        """Select the first study waiting to be shown, unless the fields hide some: then clear them and search."""
        wanted = set(self._to_show)
        listed = {s.StudyInstanceUID for s in self.model.studies} & wanted
        if listed != wanted and not self._filters_cleared and self.search_bar.has_filters():
            self._filters_cleared = True
            self.search_bar.clear_filters()
            self.search()
            return
        self._to_show = []
        self._select_first_of(wanted)

    def _select_first_of(self, study_uids: set[str]) -> None:
        for row in range(self.proxy.rowCount()):
            study = self.proxy.index(row, 0).data(STUDY_ROLE)
            if study.StudyInstanceUID in study_uids:
                if study.StudyInstanceUID != getattr(self.current_study(), "StudyInstanceUID", None):
                    self.table.select_study(study.StudyInstanceUID)
                self.table.scrollTo(self.proxy.index(row, 0))
                return

    def _on_searched(self, studies: list[Study]) -> None:
        if self.sender() is not self._search_job:
            return  # an older search answered late
        selected = self.current_study()
        first_rows = self.model.rowCount() == 0
        self.model.set_studies(studies, "local")
        self.search_bar.show_count(count_text(len(studies)))
        unfiltered = self.search_bar.query() == QueryFilter() and not self.search_bar.referring()
        self.empty_hint.setVisible(unfiltered and not studies)
        if first_rows and studies:
            self.table.fit_columns()
        if self._to_show:
            self._show_pending()
        elif selected is not None:
            self.table.select_study(selected.StudyInstanceUID)

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
            job = self.network.queries.locality(sorted(dirty))
            self._locality_job = job
            job.succeeded.connect(lambda local, uids=dirty: self._on_locality(uids, local))
        if current is not None and current.StudyInstanceUID in dirty:
            if self.current_node() is None:
                self.series_table.list_series(current, None)
            else:
                self.series_table.refresh_local()

    def _on_locality(self, uids: set[str], local: dict[str, int]) -> None:
        for uid in uids:
            row = self.model.row_of(uid)
            if row is not None:
                remote = self.model.studies[row].NumberOfStudyRelatedInstances
                self.model.set_where(uid, where_it_is(remote, local.get(uid, 0)))
        self._update_actions()

    # --- the selected study -------------------------------------------------------------------

    def current_study(self) -> Study | None:
        return self.table.current_study()

    def current_where(self) -> str:
        study = self.current_study()
        return self.model.where.get(study.StudyInstanceUID, "") if study is not None else ""

    def _on_study_selected(self, current, previous) -> None:
        study = current.data(STUDY_ROLE) if current.isValid() else None
        self.series_table.clear_series()
        self._update_actions()
        if study is not None:
            self.series_table.list_series(study, self.current_node())

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
        """Open the selected series, else the study (its largest series, not its scout)."""
        study = self.current_study()
        if study is None:
            return
        selected = self.series_table.selected_series()
        if selected is not None:
            self._on_series_activated(*selected)
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
        transfer = self.network.queue.retrieve(node, study.StudyInstanceUID, description=study_description(study))
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
        return self.network.queue.send(node, study.StudyInstanceUID, description=study_description(study))

    def _toggle_pin(self, study: Study | None = None) -> None:
        study = study or self.current_study()
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
                           lambda: self._toggle_pin(study))
        menu.addSeparator()
        menu.addAction("Delete from cache…", lambda: self.confirm_delete(study))
        menu.popup(self.table.viewport().mapToGlobal(position))

    def delete_selected(self) -> None:
        study = self.current_study()
        if study is not None:
            self.confirm_delete(study)

    def confirm_delete(self, study: Study) -> None:
        name = person_name(study.PatientName) or study.PatientID
        answer = QMessageBox.question(
            self, "Delete study",
            f"Delete the study of {name} ({format_date(study.StudyDate) or 'no date'}) from the local cache?\n"
            "Copies on PACS nodes are not affected.")
        if answer == QMessageBox.StandardButton.Yes:
            job = self.cache.delete_study(study.StudyInstanceUID)
            job.failed.connect(self.status_changed)

    def _on_study_double_clicked(self, index) -> None:
        if index.data(STUDY_ROLE) is not None:
            self.open_selected()

    def _on_series_activated(self, series_uid: str, local: int) -> None:
        node, study = self.current_node(), self.current_study()
        if node is None or local:
            self.series_opened.emit(series_uid)
        elif study is not None:
            self.remote_open_requested.emit(node, study, series_uid)
