"""The main window: the study browser and one viewer tab per open study, imports with progress.

It wires widgets to services and shows outcomes in words; the work itself happens in the
services on workers. Opening a study that has a tab goes to that tab; a prior opens beside its
current study in the same tab. Later issues add pages (MPR, print) the same way.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QAction, QDragEnterEvent, QDropEvent, QKeySequence
from PySide6.QtWidgets import (
    QFileDialog,
    QLabel,
    QMainWindow,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QTabWidget,
    QWidget,
)

from workstation.core import memory
from workstation.core.cache import ImportReport
from workstation.core.dicom.text import format_date, person_name
from workstation.core.loading import StudySets
from workstation.core.model import Study
from workstation.core.model.node import Node
from workstation.core.scheduling import Priority
from workstation.services.cache_service import CacheService
from workstation.services.frame_service import FrameService
from workstation.services.jobs import Job
from workstation.services.network_service import NetworkService
from workstation.services.priors_service import PriorsService
from workstation.services.study_loader_service import OpeningHandle, StudyLoaderService
from workstation.services.transfer_queue import Transfer, study_description
from workstation.ui.browser.browser_widget import BrowserWidget
from workstation.ui.network.nodes_dialog import NodesDialog
from workstation.ui.network.transfers_widget import TransfersDockWidget, TransfersWidget
from workstation.ui.viewer.study_viewer import StudyViewerWidget


def import_summary(report: ImportReport) -> str:
    studies = len(report.study_uids)
    parts = [f"Imported {report.imported} image" + ("" if report.imported == 1 else "s")
             + (f" of {studies} stud" + ("y" if studies == 1 else "ies") if studies else "")]
    if report.duplicates:
        parts.append(f"{report.duplicates} already in the cache")
    if report.replaced:
        parts.append(f"{report.replaced} replaced by a newer version")
    if report.rejected:
        parts.append(f"{len(report.rejected)} rejected")
    return ", ".join(parts) + "."


class MainWindow(QMainWindow):
    display_set_shown = Signal(object)   # the DisplaySet now in the active viewport of the viewer tab shown
    display_set_grown = Signal(object)   # that DisplaySet, with more images than before
    import_ended = Signal(object)        # ImportReport, or None when it failed or was cancelled; the window is idle
    window_state = None                  # a WindowState (ui/window_state) once attached: the import dialogs' folder

    def __init__(self, cache: CacheService, frames: FrameService, network: NetworkService | None = None,
                 loader: StudyLoaderService | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.cache = cache
        self.frames = frames
        self.network = network
        self.composer = None   # the film composer, made when first asked for
        self.loader = loader or StudyLoaderService(cache.cache, cache.runner)
        self.import_job: Job | None = None
        self._opening: OpeningHandle | None = None   # the newest request to show something
        self.viewers: list[StudyViewerWidget] = []
        self._priors_opening: OpeningHandle | None = None
        self._expected: dict[str, dict[str, int]] = {}   # StudyInstanceUID -> images per series on the node
        self._open_first_after_import = False
        self._import_report: ImportReport | None = None
        self.setWindowTitle("Workstation")
        self.resize(1280, 800)
        self.setAcceptDrops(True)

        self.priors = PriorsService(cache, self.loader, network)
        self.priors.status_changed.connect(self.show_status)
        self.browser = BrowserWidget(cache, network)
        self.tabs = QTabWidget()
        self.tabs.setTabsClosable(True)
        self.tabs.setDocumentMode(True)
        self.tabs.addTab(self.browser, "Studies")
        self.tabs.tabBar().setTabButton(0, self.tabs.tabBar().ButtonPosition.RightSide, None)
        self.tabs.tabCloseRequested.connect(self.close_tab)
        self.tabs.currentChanged.connect(self._on_tab_changed)
        self.setCentralWidget(self.tabs)

        self.progress = QProgressBar()
        self.progress.setMaximumWidth(260)
        self.progress.hide()
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.hide()
        self.cancel_button.clicked.connect(self.cancel_import)
        self.status_label = QLabel()
        self.server_label = QLabel()  # the Storage SCP's state stays in view, apart from passing messages
        self.statusBar().addWidget(self.status_label, 1)
        self.statusBar().addPermanentWidget(self.server_label)
        self.statusBar().addPermanentWidget(self.progress)
        self.statusBar().addPermanentWidget(self.cancel_button)

        self.transfers: TransfersWidget | None = None
        if network is not None:
            self.transfers = TransfersWidget(network)
            self.transfers_dock = TransfersDockWidget(self.transfers, self)   # hidden while it is empty
            self.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, self.transfers_dock)
            self.transfers_dock.place()
            network.storage.server_changed.connect(self.server_label.setText)
            network.instances_received.connect(self._on_instances_received)
            network.instance_added.connect(self.loader.instances_added)
            network.queue.transfer_added.connect(self._on_transfer_added)
            self.browser.remote_open_requested.connect(self.open_remote)

        self._build_menus()
        self.browser.series_opened.connect(self.open_series)
        self.browser.study_opened.connect(self.open_study)
        self.browser.status_changed.connect(self.show_status)
        self.browser.search()

    def _build_menus(self) -> None:
        file_menu = self.menuBar().addMenu("&File")
        for text, slot, shortcut in (
            ("Import &files…", self.choose_files, QKeySequence.StandardKey.Open),
            ("Import f&older…", self.choose_folder, None),
            ("Import &ZIP archive…", self.choose_zip, None),
            ("Import &DICOMDIR…", self.choose_dicomdir, None),
        ):
            action = QAction(text, self)
            if shortcut is not None:
                action.setShortcut(shortcut)
            action.triggered.connect(slot)
            file_menu.addAction(action)
        file_menu.addSeparator()
        quit_action = QAction("&Quit", self)
        quit_action.setShortcut(QKeySequence.StandardKey.Quit)
        quit_action.triggered.connect(self.close)
        file_menu.addAction(quit_action)
        if self.network is not None:
            tools = self.menuBar().addMenu("&Tools")
            nodes = QAction("&Nodes and network…", self)
            nodes.setMenuRole(QAction.MenuRole.PreferencesRole)
            nodes.triggered.connect(self.edit_nodes)
            tools.addAction(nodes)
            printers = QAction("&Printers…", self)
            printers.triggered.connect(self.edit_printers)
            tools.addAction(printers)
            compose = QAction("Print to &film…", self)
            compose.triggered.connect(lambda: self.open_composer(self.viewer))
            tools.addAction(compose)
        view_menu = self.menuBar().addMenu("&View")
        studies = QAction("&Studies", self)
        studies.setShortcut(QKeySequence("Ctrl+1"))
        studies.triggered.connect(lambda: self.tabs.setCurrentWidget(self.browser))
        view_menu.addAction(studies)
        viewer = QAction("&Viewer (the last study opened)", self)
        viewer.setShortcut(QKeySequence("Ctrl+2"))
        viewer.triggered.connect(lambda: self.viewers and self.tabs.setCurrentWidget(self.viewers[-1]))
        view_menu.addAction(viewer)
        if self.network is not None:
            view_menu.addAction(self.transfers_dock.toggleViewAction())

    def edit_printers(self):
        from workstation.ui.printing.launch import edit_printers

        return edit_printers(self)

    def open_composer(self, viewer=None):
        """The film composer (one per window), its images from `viewer` (ui/printing/launch.py)."""
        from workstation.ui.printing.launch import open_composer

        return open_composer(self, viewer)

    def edit_nodes(self) -> NodesDialog:
        dialog = NodesDialog(self.network, self)
        dialog.setModal(True)
        dialog.show()
        return dialog

    # --- importing ----------------------------------------------------------------------------

    def choose_files(self) -> None:
        paths, _ = QFileDialog.getOpenFileNames(self, "Import DICOM files", self._import_folder())
        if paths:
            self._import_chosen(paths)

    def choose_folder(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Import a folder of DICOM files", self._import_folder())
        if path:
            self._import_chosen([path])

    def choose_zip(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Import a ZIP archive", self._import_folder(),
                                              filter="ZIP archives (*.zip);;All files (*)")
        if path:
            self._import_chosen([path])

    def choose_dicomdir(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Import DICOMDIR media", self._import_folder(),
                                              filter="DICOMDIR (DICOMDIR dicomdir);;All files (*)")
        if path:
            self._import_chosen([path])

    def _import_folder(self) -> str:
        """Where an import dialog opens: the folder chosen last time ("" lets Qt choose)."""
        return self.window_state.import_folder() if self.window_state is not None else ""

    def _import_chosen(self, paths: list[str]) -> None:
        if self.window_state is not None:
            self.window_state.remember_import(paths[0])
        self.import_paths(paths)

    def import_paths(self, paths: list[str], open_first: bool = False) -> Job | None:
        if self.import_job is not None:
            self.show_status("An import is already running; wait for it or cancel it.")
            return None
        self._open_first_after_import = open_first
        job = self.cache.import_paths(paths)
        self.import_job = job
        self.progress.setRange(0, 0)
        self.progress.show()
        self.cancel_button.show()
        self.show_status("Importing…")
        job.progressed.connect(self._on_import_progress)
        job.succeeded.connect(self._on_import_succeeded)
        job.failed.connect(self._on_import_failed)
        job.cancelled.connect(self._on_import_cancelled)
        job.ended.connect(self._on_import_ended)
        return job

    def cancel_import(self) -> None:
        if self.import_job is not None:
            self.import_job.cancel()
            self.show_status("Cancelling the import…")

    def _on_import_progress(self, done: int, total: int, message: str) -> None:
        if total:
            self.progress.setRange(0, total)
            self.progress.setValue(done)
        self.progress.setFormat("%v / %m")

    def _on_import_succeeded(self, report: ImportReport) -> None:
        self._import_report = report  # handed to import_ended when the job has ended
        self.show_status(import_summary(report))
        if report.rejected:
            box = QMessageBox(QMessageBox.Icon.Warning, "Some files were not imported",
                              import_summary(report) + "\nThe files below were left out; the rest of the import went on.",
                              QMessageBox.StandardButton.Ok, self)
            box.setDetailedText("\n".join(f"{r.path}: {r.reason}" for r in report.rejected))
            box.setObjectName("rejected_files_box")
            box.setModal(False)
            box.show()
        if self._open_first_after_import and report.study_uids:
            self.open_study(report.study_uids[0])   # with its hanging protocol
        else:
            self._show_imported(report)

    def _show_imported(self, report: ImportReport) -> None:
        """After an import from the menu or a drop: the Studies tab, the imported studies listed, the first selected."""
        if report.study_uids:
            self.tabs.setCurrentWidget(self.browser)
            self.browser.show_studies(report.study_uids)

    def _on_import_failed(self, message: str) -> None:
        self.show_status(message)
        QMessageBox.critical(self, "Import failed", message + "\nNothing already imported was lost.")

    def _on_import_cancelled(self) -> None:
        report = self.import_job.partial_report if self.import_job is not None else None
        if isinstance(report, ImportReport):
            self.show_status(f"Import cancelled: {import_summary(report)[0].lower()}{import_summary(report)[1:]} "
                             "They stay in the cache.")
        else:
            self.show_status("Import cancelled; what was already imported stays in the cache.")

    def _on_import_ended(self) -> None:
        """Last of a job's signals: the window is idle again, then listeners hear the outcome."""
        self.import_job = None
        self.progress.hide()
        self.cancel_button.hide()
        report, self._import_report = self._import_report, None
        self.import_ended.emit(report)

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if event.mimeData().hasUrls() and any(u.isLocalFile() for u in event.mimeData().urls()):
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        paths = [u.toLocalFile() for u in event.mimeData().urls() if u.isLocalFile()]
        if paths:
            event.acceptProposedAction()
            self.import_paths(paths)

    # --- opening ------------------------------------------------------------------------------

    def open_study(self, study_uid: str) -> None:
        self._open(self.loader.open_study(study_uid))

    def open_series(self, series_uid: str) -> None:
        self._open(self.loader.open_series(series_uid), series_uid)

    def _open(self, opening: OpeningHandle, series_uid: str | None = None) -> None:
        """Show what `opening` brings, unless a newer request replaced it meanwhile."""
        if self._opening is not None:
            self._opening.cancel()
        self._opening = opening
        opening.opened.connect(lambda sets: self._on_opened(sets, series_uid))
        opening.failed.connect(self.show_status)

    @property
    def viewer(self) -> StudyViewerWidget | None:
        """The viewer tab shown, else the last one opened."""
        current = self.tabs.currentWidget()
        if isinstance(current, StudyViewerWidget):
            return current
        return self.viewers[-1] if self.viewers else None

    def viewer_of(self, study_uid: str) -> StudyViewerWidget | None:
        return next((v for v in self.viewers if v.study_uid == study_uid), None)

    def _on_opened(self, sets: StudySets, series_uid: str | None = None) -> None:
        viewer = self.viewer_of(sets.StudyInstanceUID)
        if viewer is None:
            viewer = StudyViewerWidget(self.frames, self.loader, self.cache, self.cache.cache.root.parent)
            viewer.display_set_shown.connect(lambda ds, v=viewer: self._on_shown(v, ds))
            viewer.display_set_grown.connect(lambda ds, v=viewer: v is self.viewer and self.display_set_grown.emit(ds))
            viewer.status_changed.connect(self.show_status)
            viewer.print_requested.connect(lambda v=viewer: self.open_composer(v))
            viewer.prior_requested.connect(lambda study, v=viewer: self.open_prior(v, study))
            if self.window_state is not None:   # the mouse buttons as the reader set them last time
                for button, action in self.window_state.viewer_buttons().items():
                    try:
                        viewer.tools.set_button(button, action)
                    except ValueError:
                        pass
                viewer.tools.buttons_changed.connect(self.window_state.remember_viewer_buttons)
            self.viewers.append(viewer)
            self.tabs.addTab(viewer, tab_title(sets.study))
            self.tabs.setCurrentWidget(viewer)
            viewer.open_study(sets, series_uid)
            if sets.StudyInstanceUID in self._expected:
                viewer.set_expected(self._expected[sets.StudyInstanceUID])
            self._find_priors(viewer, sets.study)
        else:
            self.tabs.setCurrentWidget(viewer)
            if series_uid is not None:
                viewer.show_series(series_uid)
            viewer._emit_shown()
            self.display_set_shown.emit(viewer.active_model.display_set)
        viewer.viewport.setFocus()

    def _on_shown(self, viewer: StudyViewerWidget, display_set) -> None:
        if viewer is self.viewer:
            self.display_set_shown.emit(display_set)

    def _on_tab_changed(self, index: int) -> None:
        widget = self.tabs.widget(index)
        if isinstance(widget, StudyViewerWidget) and widget.active_model.display_set is not None:
            self.display_set_shown.emit(widget.active_model.display_set)

    def close_tab(self, index: int) -> None:
        widget = self.tabs.widget(index)
        if not isinstance(widget, StudyViewerWidget):
            return
        widget.flush()
        widget.close_watches()
        self.viewers.remove(widget)
        self.tabs.removeTab(index)
        for viewport in widget.session.layout.viewports:
            viewport.show(None)   # the frames it held can go
        still_open = {s.StudyInstanceUID for v in self.viewers for s in v.session.studies}
        self.frames.release(f for s in widget.session.studies if s.StudyInstanceUID not in still_open
                            for d in s.display_sets for f in d.frames)
        widget.deleteLater()
        QTimer.singleShot(200, memory.give_back)   # once the tab's widgets are gone: the frames' memory goes back

    # --- priors -------------------------------------------------------------------------------

    def _find_priors(self, viewer: StudyViewerWidget, study: Study | None) -> None:
        """The patient's other studies: in the cache, and on the node the study came from."""
        if study is None:
            return
        handle = self.priors.find(study)
        handle.found.connect(lambda studies: viewer in self.viewers and viewer.set_others(studies))
        handle.failed.connect(self.show_status)

    def open_prior(self, viewer: StudyViewerWidget, study: Study) -> None:
        """Open another study of the patient beside the viewer's current one, retrieving it first when needed."""
        opening = self.priors.open(study, viewer.study_uid)
        self._priors_opening = opening
        opening.opened.connect(lambda sets: viewer in self.viewers and viewer.add_prior(sets))
        opening.failed.connect(self.show_status)

    # --- remote studies -----------------------------------------------------------------------

    def open_remote(self, node: Node, study: Study, series_uid: str | None = None) -> Transfer:
        """Retrieve (what is missing of) a study or series and show it as soon as its first image arrives."""
        uid = study.StudyInstanceUID
        transfer = self.network.queue.retrieve(node, uid, [series_uid] if series_uid else None,
                                               description=study_description(study), priority=Priority.OPENED)
        self.priors.remember_origin(uid, node)
        self._open(self.loader.open_study(uid, series_uid, transfer=transfer), series_uid)  # what is local shows at once
        counts = self.network.queries.series(node, uid)   # how many images each series will have
        counts.succeeded.connect(lambda found: self._expect(uid, {s.SeriesInstanceUID: s.NumberOfSeriesRelatedInstances
                                                                  for s, _local in found}))
        self.show_status(f"Retrieving {study_description(study)} from {node.name}; "
                         "the images show as soon as they arrive.")
        return transfer

    def _expect(self, study_uid: str, counts: dict[str, int]) -> None:
        self._expected[study_uid] = counts
        viewer = self.viewer_of(study_uid)
        if viewer is not None:
            viewer.set_expected(counts)

    def _on_transfer_added(self, transfer: Transfer) -> None:
        transfer.ended.connect(lambda: self._on_transfer_ended(transfer))

    def _on_transfer_ended(self, transfer: Transfer) -> None:
        verb = "Retrieval" if transfer.kind == "retrieve" else "Send"
        self.show_status(f"{verb} of {transfer.description} ({transfer.node.name}) {transfer.state}: "
                         f"{transfer.status_text()}")

    def _on_instances_received(self, calling: str, count: int, receiving: bool) -> None:
        """A push into the Storage SCP: its running total while it goes on, the whole once it ended."""
        images = f"{count} image{'' if count == 1 else 's'}"
        self.show_status(f"Receiving from {calling}: {images}…" if receiving else f"Received {images} from {calling}.")

    def show_status(self, message: str) -> None:
        self.status_label.setText(message)
        self.status_label.setToolTip(message)   # a long message is cut at the window's edge

    def closeEvent(self, event) -> None:
        if self.import_job is not None:
            self.import_job.cancel()
        for viewer in self.viewers:
            viewer.flush()
            viewer.close_watches()
        super().closeEvent(event)


def tab_title(study: Study | None) -> str:
    if study is None:
        return "Viewer"
    parts = [person_name(study.PatientName) or study.PatientID, format_date(study.StudyDate),
             "/".join(study.ModalitiesInStudy)]
    return " · ".join(p for p in parts if p)

