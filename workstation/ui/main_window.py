"""The main window: the study browser and the viewer as pages, imports with progress.

It wires widgets to services and shows outcomes in words; the work itself happens in the
services on workers. Later issues add pages (remote nodes, MPR, print) the same way.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
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

from workstation.core.cache import ImportReport
from workstation.core.model import Study
from workstation.core.model.display_set import DisplaySet
from workstation.core.model.node import Node
from workstation.core.scheduling import Priority
from workstation.services.cache_service import CacheService
from workstation.services.frame_service import FrameService
from workstation.services.jobs import Job
from workstation.services.network_service import NetworkService
from workstation.services.study_loader_service import OpeningHandle, StudyLoaderService
from workstation.services.transfer_queue import Transfer, study_description
from workstation.ui.browser.browser_widget import BrowserWidget
from workstation.ui.network.nodes_dialog import NodesDialog
from workstation.ui.network.transfers_widget import TransfersDockWidget, TransfersWidget
from workstation.ui.viewer.viewer_widget import ViewerWidget


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
    display_set_shown = Signal(object)   # the DisplaySet now in the viewer
    display_set_grown = Signal(object)   # the DisplaySet in the viewer, with more images than before
    import_ended = Signal(object)        # ImportReport, or None when it failed or was cancelled; the window is idle
    window_state = None                  # a WindowState (ui/window_state) once attached: the import dialogs' folder

    def __init__(self, cache: CacheService, frames: FrameService, network: NetworkService | None = None,
                 loader: StudyLoaderService | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.cache = cache
        self.frames = frames
        self.network = network
        self.loader = loader or StudyLoaderService(cache.cache, cache.runner)
        self.import_job: Job | None = None
        self._opening: OpeningHandle | None = None   # the newest request to show something
        self._open_first_after_import = False
        self._import_report: ImportReport | None = None
        self.setWindowTitle("Workstation")
        self.resize(1280, 800)
        self.setAcceptDrops(True)

        self.browser = BrowserWidget(cache, network)
        self.viewer = ViewerWidget(frames, self.loader)
        self.tabs = QTabWidget()
        self.tabs.addTab(self.browser, "Studies")
        self.tabs.addTab(self.viewer, "Viewer")
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
        self.viewer.display_set_grown.connect(self.display_set_grown)
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
        view_menu = self.menuBar().addMenu("&View")
        for i, name in enumerate(("&Studies", "&Viewer")):
            action = QAction(name, self)
            action.setShortcut(QKeySequence(f"Ctrl+{i + 1}"))
            action.triggered.connect(lambda checked=False, i=i: self.tabs.setCurrentIndex(i))
            view_menu.addAction(action)
        if self.network is not None:
            view_menu.addAction(self.transfers_dock.toggleViewAction())

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
        if self._open_first_after_import and report.series_uids:
            self.open_series(report.series_uids[0])
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
        self._open(self.loader.open_series(series_uid))

    def _open(self, opening: OpeningHandle) -> None:
        """Show what `opening` brings, unless a newer request replaced it meanwhile."""
        if self._opening is not None:
            self._opening.cancel()
        self._opening = opening
        opening.opened.connect(self._on_display_set)
        opening.failed.connect(self.show_status)

    def _on_display_set(self, display_set: DisplaySet) -> None:
        self.viewer.show_display_set(display_set)
        self.tabs.setCurrentWidget(self.viewer)
        self.display_set_shown.emit(display_set)

    # --- remote studies -----------------------------------------------------------------------

    def open_remote(self, node: Node, study: Study, series_uid: str | None = None) -> Transfer:
        """Retrieve (what is missing of) a study or series and show it as soon as its first image arrives."""
        uid = study.StudyInstanceUID
        transfer = self.network.queue.retrieve(node, uid, [series_uid] if series_uid else None,
                                               description=study_description(study), priority=Priority.OPENED)
        self._open(self.loader.open_study(uid, series_uid, transfer=transfer))  # what is local shows at once
        self.show_status(f"Retrieving {study_description(study)} from {node.name}; "
                         "the images show as soon as they arrive.")
        return transfer

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
        super().closeEvent(event)

