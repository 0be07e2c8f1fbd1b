"""A viewer tab: the studies of one patient open together (the current one and priors), a toolbar of
tools, the series strip and the viewport grid, over one `ReadingSession` (core/viewer/session.py).

It grows as its studies arrive (the study loader's feeds), keeps its annotations in the cache, and
turns the toolbar's and the keyboard's actions into changes of the session's models.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QMessageBox,
    QSplitter,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from workstation.core.loading import StudySets
from workstation.core.model import hanging
from workstation.core.model.display_set import DisplaySet
from workstation.core.pixels.presets import keyed_presets, load_presets
from workstation.core.viewer.session import ReadingSession
from workstation.services.cache_service import CacheService
from workstation.services.frame_service import FrameService
from workstation.services.study_loader_service import StudyLoaderService
from workstation.ui.viewer import actions as viewer_actions
from workstation.ui.viewer import arrange as arranging
from workstation.ui.viewer.grid import ViewportGridWidget
from workstation.ui.viewer.kept import KeptRecords
from workstation.ui.viewer.series_strip import SeriesStripWidget, study_heading
from workstation.ui.viewer.toolbar import DEFAULT_CHOICE, build_toolbar
from workstation.ui.viewer.tools import ToolController

log = logging.getLogger(__name__)


def arranging_title(sets: StudySets) -> str:
    return study_heading(sets.study, prior=False)
DARK = """
StudyViewerWidget, QToolBar, QSplitter { background: #1b1b1b; color: #dddddd; }
QToolBar { border: none; spacing: 2px; }
QToolButton { color: #dddddd; padding: 2px; }
QToolButton:checked { background: #4a3a10; border: 1px solid #ffb000; }
QComboBox, QDoubleSpinBox { background: #2a2a2a; color: #dddddd; }
QLabel { color: #bbbbbb; }
"""


class StudyViewerWidget(QWidget):
    display_set_shown = Signal(object)      # a DisplaySet put in the active viewport
    display_set_grown = Signal(object)      # the active viewport's DisplaySet, with more images
    prior_requested = Signal(object)        # a Study of the patient to open beside the current one
    status_changed = Signal(str)
    print_requested = Signal()            # Ctrl+P: the window opens the film composer on this tab

    def __init__(self, frames: FrameService, loader: StudyLoaderService, cache: CacheService,
                 home: Path | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.frames = frames
        self.loader = loader
        self.cache = cache
        self.home = home
        self.arrangement = None                # the hanging protocol's, as last applied
        self._touched = False                  # the user changed the layout since it was arranged
        self.session = ReadingSession()
        self.tools = ToolController(self.session, self)
        self.kept = KeptRecords(self.session, cache, self)   # annotations and key images in the cache
        self.strip = SeriesStripWidget(cache)
        self.grid = ViewportGridWidget(frames, self.session, self.tools)
        self.presets = load_presets()
        self.others: list = []              # the patient's other studies (priors), as listed
        self._watches: dict[str, object] = {}
        self._shown_key: tuple[str, str] | None = None
        self._cine = QTimer(self, interval=15)
        self._cine.timeout.connect(self._cine_tick)
        self.setStyleSheet(DARK)

        self.actions_by_id = viewer_actions.build_actions(self)
        self.toolbar = build_toolbar(self)
        self.probe_label = QLabel()
        self.probe_label.setObjectName("probe_label")
        self.pages = QStackedWidget()          # the viewport grid, or the MPR layout
        self.pages.addWidget(self.grid)
        self.mpr = None
        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(self.strip)
        split.addWidget(self.pages)
        split.setStretchFactor(0, 0)
        split.setStretchFactor(1, 1)
        split.setSizes([190, 1000])
        self.splitter = split
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(self.toolbar)
        layout.addWidget(split, 1)
        bottom = QHBoxLayout()
        bottom.setContentsMargins(6, 2, 6, 2)
        bottom.addWidget(self.probe_label, 1)
        layout.addLayout(bottom)

        self.tools.probed.connect(self.probe_label.setText)
        self.kept.status_changed.connect(self.status_changed)
        self.strip.display_set_activated.connect(lambda study, key: self.show_in(None, study, key))
        self.strip.study_requested.connect(self.prior_requested)
        self.strip.mpr_requested.connect(lambda study, key: self.open_mpr(self.session.find(study, key)))
        self.grid.display_set_dropped.connect(lambda cell, study, key: self.show_in(cell, study, key))
        self.session.layout.changed.connect(self._on_layout)
        self.session.changed.connect(self._on_session)
        for viewport in self.session.layout.viewports:
            viewport.changed.connect(self._on_viewport)

    # --- what is open -------------------------------------------------------------------------

    @property
    def showing_mpr(self) -> bool:
        return self.mpr is not None and self.pages.currentWidget() is self.mpr

    @property
    def viewport(self):
        """The active viewport widget (an MPR plane while MPR shows)."""
        return self.mpr.active if self.showing_mpr else self.grid.active

    @property
    def active_model(self):
        return self.mpr.active_model if self.showing_mpr else self.session.layout.current

    @property
    def current_session(self):
        """The session the keys act on: MPR's while it shows, else the tab's."""
        return self.mpr.session if self.showing_mpr else self.session

    # --- MPR --------------------------------------------------------------------------------------

    def toggle_mpr(self) -> None:
        if self.showing_mpr:
            self.show_grid()
        else:
            self.open_mpr(self.session.layout.current.display_set)

    def show_grid(self) -> None:
        self.pages.setCurrentWidget(self.grid)
        self.sync_actions()

    def open_mpr(self, display_set: DisplaySet | None, part: bool = False) -> None:
        """Axial, coronal, sagittal and 3D of a display set's series, once it is assembled as a volume
        (on a worker); a series that is not one says why, and offers the part that is."""
        if display_set is None:
            self.status_changed.emit("Show a series first: MPR is made of the series in the active viewport.")
            return
        if self.mpr is not None and self.mpr.session.series.SeriesInstanceUID == display_set.SeriesInstanceUID \
                and not part:
            self.pages.setCurrentWidget(self.mpr)
            return
        if not display_set.orientation or len(display_set) < 3:
            self.status_changed.emit(f"{display_set.description} is not a stack of slices: MPR needs a volume.")
            return
        self.status_changed.emit(f"Opening MPR of {display_set.description}…")
        job = self.cache.volume(display_set.SeriesInstanceUID, part=part)
        job.succeeded.connect(lambda found, ds=display_set: self._show_mpr(ds, *found))
        job.failed.connect(lambda message, ds=display_set: self._mpr_failed(ds, message, part))
        self._volume_job = job

    def _show_mpr(self, display_set: DisplaySet, volume, windows) -> None:
        from workstation.ui.mpr.mpr_widget import MprWidget  # VTK is loaded now, not at start-up

        if self.mpr is not None:
            self.pages.removeWidget(self.mpr)
            self.mpr.shutdown()
            self.mpr.deleteLater()
        self.mpr = MprWidget(volume, display_set.series, display_set.study, windows,
                             display_set.FrameOfReferenceUID, self.tools, self.cache, self)
        self.mpr.closed.connect(self.show_grid)
        mpr_session = self.mpr.session
        mpr_session.changed.connect(lambda aspects, m=mpr_session: "cursor" in aspects and self.session.move_cursor(
            m.point, m.frame_of_reference))   # the crosshair is the 2D viewports' 3D cursor too
        self.mpr.status_changed.connect(self.status_changed)
        self.pages.addWidget(self.mpr)
        self.pages.setCurrentWidget(self.mpr)
        self.mpr.active.setFocus()
        self.status_changed.emit("MPR: click or drag with the crosshair (X) to move it, Ctrl+drag to turn the "
                                 "planes; the other tools work as in 2D." + (
                                     f" {' '.join(volume.warnings)}" if volume.warnings else ""))
        self.sync_actions()

    def _mpr_failed(self, display_set: DisplaySet, message: str, part: bool) -> None:
        if part:
            self.status_changed.emit(f"No MPR: {message}")
            return
        job = self.cache.volume_part(display_set.SeriesInstanceUID)

        def offer(label: str) -> None:
            if not label:
                self.status_changed.emit(f"No MPR of {display_set.description}: {message}")
                return
            answer = QMessageBox.question(self, "MPR", f"{display_set.description} is not one volume:\n{message}"
                                          f"\n\nOpen MPR of {label} instead?")
            if answer == QMessageBox.StandardButton.Yes:
                self.open_mpr(display_set, part=True)

        job.succeeded.connect(offer)
        job.failed.connect(lambda m: self.status_changed.emit(f"No MPR of {display_set.description}: {message}"))
        self._volume_job = job

    @property
    def study_uid(self) -> str:
        current = self.session.current
        return current.StudyInstanceUID if current is not None else ""

    def open_study(self, sets: StudySets, series_uid: str | None = None) -> None:
        """The tab's current study: arranged by its hanging protocol, `series_uid` in the active viewport."""
        self.session.add_study(sets)
        self._watch(sets)
        self.kept.load(sets.StudyInstanceUID)
        self.arrange()
        if series_uid is not None:
            self.show_series(series_uid)
        self.refresh_strip()
        self._emit_shown()

    def arrange(self) -> None:
        """Lay the studies out by the best hanging protocol; a prior it asks for is requested."""
        arrangement = arranging.choose(self.session, self.home, self.others)
        self.arrangement = arrangement
        arranging.apply(self.session, arrangement)
        self._touched = False
        for viewport, options in zip(self.session.layout.viewports, arrangement.options, strict=False):
            if options and options.get("mpr") and viewport.display_set is not None:
                self.open_mpr(viewport.display_set)   # a protocol may open a series straight in MPR
                break
        if arrangement.needs_prior:
            wanted = next((s for s in self.others if s.StudyInstanceUID == arrangement.needs_prior), None)
            if wanted is not None:
                self.prior_requested.emit(wanted)

    def show_series(self, series_uid: str) -> None:
        """Show a series (its first display set): where the arrangement put it, else in the active viewport."""
        sets = self.session.current
        wanted = sets.of_series(series_uid) if sets is not None else []
        if not wanted:
            return
        for i, viewport in enumerate(self.session.layout.viewports):
            if viewport.display_set is not None and viewport.display_set.SeriesInstanceUID == series_uid:
                self.session.layout.activate(i)
                return
        self.session.show(wanted[0])

    def add_prior(self, sets: StudySets) -> None:
        """Another study of the patient beside the current one: re-arranged by the protocols, and when
        they do not show it (it is not an earlier study, say), the two side by side."""
        self.session.add_study(sets)
        self._watch(sets)
        self.kept.load(sets.StudyInstanceUID)
        self.arrange()
        shown = {d.StudyInstanceUID for d in self.shown_display_sets()}
        if sets.StudyInstanceUID not in shown and sets.display_sets:
            current = self.active_model.display_set or next(iter(self.session.current.display_sets), None)
            other = hanging.default_order(sets.display_sets)[0]
            cells = [(current.StudyInstanceUID, current.key) if current is not None else None,
                     (other.StudyInstanceUID, other.key)]
            window = self.active_model.window
            self.session.arrange(1, 2, cells, "side by side")
            for viewport in self.session.layout.viewports:   # the same window on both, to compare
                viewport.set_window(window)
        self.refresh_strip()
        self._emit_shown()

    def set_others(self, studies: list) -> None:
        """The patient's other studies are known: listed in the strip, and the layout re-chosen while
        the user has not changed it (a protocol may show the most recent prior)."""
        self.others = list(studies)
        self.refresh_strip()
        if not self._touched and self.session.current is not None:
            arrangement = arranging.choose(self.session, self.home, self.others)
            if arrangement.needs_prior or arrangement != self.arrangement:
                self.arrange()
                self._emit_shown()

    def refresh_strip(self) -> None:
        self.strip.show_session(self.session, self.others)
        self._mark_arriving()

    def set_expected(self, counts: dict[str, int]) -> None:
        """How many images each series will have once a retrieval is done (from the node's answer):
        the strip and the corners say how many are here of them while they arrive."""
        self.strip.expected.update(counts)
        self.refresh_strip()

    def _mark_arriving(self) -> None:
        expected = self.strip.expected
        for viewport in self.session.layout.viewports:
            ds = viewport.display_set
            total = expected.get(ds.SeriesInstanceUID, 0) if ds is not None else 0
            here = sum(len(d) for d in self.session.display_sets() if ds is not None
                       and d.SeriesInstanceUID == ds.SeriesInstanceUID)
            arriving = (here, total) if total > here else None
            if arriving != viewport.arriving:
                viewport.arriving = arriving
                viewport.changed.emit(frozenset({"frame"}))

    def show_in(self, cell: int | None, study_uid: str, key: str) -> None:
        ds = self.session.find(study_uid, key)
        if ds is not None:
            self._touched = True
            self.session.show(ds, cell)
            self._emit_shown()

    def step_series(self, step: int) -> None:
        sets = self.session.display_sets()
        current = self.active_model.display_set
        if not sets:
            return
        index = next((i for i, d in enumerate(sets) if current is not None and d.key == current.key), -1)
        self.session.show(sets[(index + step) % len(sets)])
        self._emit_shown()

    def set_grid(self, rows: int, columns: int) -> None:
        self._touched = True
        self.show_grid()
        layout = self.session.layout
        layout.maximised = None
        layout.set_grid(rows, columns)
        shown = {v.display_set.key for v in layout.viewports if v.display_set is not None}
        spare = [d for d in self.session.display_sets() if d.key not in shown and not d.is_localizer]
        for viewport in layout.viewports:
            if viewport.display_set is None and spare:
                self.session.show(spare.pop(0), layout.index_of(viewport))
        layout.activate(0)

    def ask_grid(self) -> None:
        text, ok = QInputDialog.getText(self, "Viewport layout", "Rows x columns (e.g. 3x4):")
        if not ok:
            return
        try:
            rows, columns = (int(v) for v in text.lower().replace("×", "x").split("x"))
            self.set_grid(rows, columns)
        except ValueError as exc:
            self.status_changed.emit(f"Not a layout: {text!r} ({exc}); write rows x columns, e.g. 3x4.")

    # --- growing ------------------------------------------------------------------------------

    def _watch(self, sets: StudySets) -> None:
        uid = sets.StudyInstanceUID
        if uid in self._watches:
            return
        watch = self.loader.watch(uid, sets)
        watch.grown.connect(self._on_grown)
        self._watches[uid] = watch
        self.destroyed.connect(watch.close)

    def _on_grown(self, sets: StudySets) -> None:
        before = self.active_model.display_set
        self.session.update_study(sets)
        self.refresh_strip()
        after = self.active_model.display_set
        if before is None and after is None and sets is self.session.current:
            self.arrange()
            self._emit_shown()
        elif after is not None:
            self.display_set_grown.emit(after)

    def close_watches(self) -> None:
        """The tab is closing: stop following the cache, and stop MPR's workers and 3D renderer."""
        for watch in self._watches.values():
            watch.close()
        self._watches.clear()
        if self.mpr is not None:
            self.mpr.shutdown()

    # --- following the models -----------------------------------------------------------------

    def _on_layout(self, aspects) -> None:
        for viewport in self.session.layout.viewports:
            viewport.changed.connect(self._on_viewport)
        if "active" in aspects:
            self._emit_shown()
        self.grid.repaint_all()

    def _on_session(self, aspects) -> None:
        self.sync_actions()
        self.grid.repaint_all()

    def _on_viewport(self, aspects) -> None:
        if "display_set" in aspects:
            self._emit_shown()
        if "cine" in aspects:
            playing = any(v.cine.playing for v in self.session.layout.viewports)
            if playing and not self._cine.isActive():
                self._cine.start()
            elif not playing:
                self._cine.stop()
            self.sync_actions()
        if aspects & {"frame", "image"} and self.session.links.reference_lines:
            self.grid.repaint_all()

    def _emit_shown(self) -> None:
        ds = self.active_model.display_set
        key = (ds.StudyInstanceUID, ds.key) if ds is not None else None
        self.sync_actions()
        if ds is not None and key != self._shown_key:
            self._shown_key = key
            self.display_set_shown.emit(ds)

    def _cine_tick(self) -> None:
        now = time.monotonic()
        for viewport in self.session.layout.viewports:
            viewport.cine_tick(now)

    def link_studies(self) -> None:
        """Scroll the active viewport's study with another study's viewports, keeping today's offset."""
        layout = self.session.layout
        active = layout.current
        others = [v for v in layout.viewports if v is not active and v.display_set is not None
                  and active.display_set is not None
                  and v.display_set.FrameOfReferenceUID != active.display_set.FrameOfReferenceUID]
        linked = sum(self.session.link_studies(active, v) for v in others)
        self.status_changed.emit(f"Linked {linked} viewport{'s' if linked != 1 else ''} of other studies at their "
                                 "current positions: they now scroll with this one." if linked else
                                 "Nothing to link: show the other study beside this one first, at the same anatomy.")

    def _fill_annotations_menu(self) -> None:
        menu = self.annotations_menu
        menu.clear()
        for sets in self.session.studies:
            items = self.session.annotations.for_study(sets.StudyInstanceUID)
            if not items:
                continue
            menu.addSection(arranging_title(sets))
            for a in items:
                ds = next((d for d in sets.display_sets if any(
                    f.SOPInstanceUID == a.SOPInstanceUID and f.frame == a.frame for f in d.frames)), None)
                label = f"{a.kind.capitalize()}" + (f" “{a.text}”" if a.text else "")
                where = f" — {ds.description}" if ds is not None else " — image not in the cache"
                action = menu.addAction(label + where)
                action.setEnabled(ds is not None)
                action.triggered.connect(lambda checked=False, a=a, ds=ds: self.go_to(ds, a.SOPInstanceUID, a.frame, a.uid))
        if menu.isEmpty():
            menu.addAction("No annotations yet").setEnabled(False)

    def go_to(self, ds: DisplaySet, sop_uid: str, frame: int, select: str | None = None) -> None:
        """Show an image of a display set in the active viewport (an annotation chosen from the list)."""
        model = self.active_model
        if model.display_set is None or model.display_set.key != ds.key:
            self.session.show(ds)
            model = self.active_model
        index = next((i for i, f in enumerate(model.frames) if f.SOPInstanceUID == sop_uid and f.frame == frame), None)
        if index is not None:
            model.set_index(index)
        self.tools.selected = select
        self.grid.repaint_all()

    def sync_actions(self) -> None:
        a = self.actions_by_id
        model = self.active_model
        if hasattr(self, "link_window_action"):
            self.link_window_action.setChecked(self.session.links.window)
            self.link_zoom_action.setChecked(self.session.links.zoom)
        a["link.scroll"].setChecked(self.session.links.scroll)
        a["link.reference_lines"].setChecked(self.session.links.reference_lines)
        a["key.filter"].setChecked(model.key_filter is not None)
        a["view.interpolate"].setChecked(model.view.interpolate)
        a["cine.toggle"].setChecked(model.cine.playing)
        a["mpr.toggle"].setChecked(self.showing_mpr)
        if abs(self.fps_box.value() - model.cine.fps) > 1e-6:
            self.fps_box.blockSignals(True)
            self.fps_box.setValue(model.cine.fps)
            self.fps_box.blockSignals(False)

    # --- actions ------------------------------------------------------------------------------

    def run(self, action: str) -> None:
        viewer_actions.run(self, action)

    def _on_preset(self, name: str) -> None:
        self.active_model.set_window(None if name == DEFAULT_CHOICE else self.presets.get(name))
        self.viewport.setFocus()

    def preset_key(self, number: int) -> None:
        """Number keys: the modality's presets (CT), else the file's own windows in their order."""
        model = self.active_model
        ds = model.display_set
        presets = keyed_presets(ds.series.Modality if ds is not None else "")
        if presets:
            window = presets.get(number)
        else:
            windows = model.renderer.file_windows if model.renderer is not None else []
            window = windows[number - 1] if 0 < number <= len(windows) else None
        if window is not None:
            model.set_window(window)
        else:
            self.status_changed.emit(f"No window {number} for this image.")

    def auto_window(self) -> None:
        model = self.active_model
        window = model.renderer.auto_window() if model.renderer is not None else None
        if window is not None:
            model.set_window(window)

    def true_size(self) -> None:
        """One millimetre of the patient as one millimetre on this screen (from its physical DPI)."""
        model = self.active_model
        r = model.renderer
        spacing = r.plane.pixel_spacing if r is not None and r.plane is not None else None
        if spacing is None:
            self.status_changed.emit("True size needs the image's pixel spacing, which this image does not give.")
            return
        screen = self.viewport.screen() or QGuiApplication.primaryScreen()
        dpi = screen.physicalDotsPerInchX() / max(1.0, screen.devicePixelRatio())
        model.set_view(model.view.at_scale(dpi / 25.4 * spacing[1]))

    def toggle_key_filter(self) -> None:
        model = self.active_model
        ds = model.display_set
        if ds is None:
            return
        if model.key_filter is not None:
            model.set_key_filter(None)
            return
        keys = self.session.key_images.get(ds.StudyInstanceUID, frozenset())
        if not any((f.SOPInstanceUID, f.frame) in keys for f in ds.frames):
            self.status_changed.emit("This series has no key images yet: mark some with K.")
            return
        model.set_key_filter(keys)

    def export(self, whole_layout: bool = False, annotations: bool = True) -> str | None:
        path, _ = QFileDialog.getSaveFileName(self, "Export", "", "PNG image (*.png);;JPEG image (*.jpg *.jpeg)")
        if not path:
            return None
        return self.export_to(path, whole_layout, annotations)

    def export_to(self, path: str, whole_layout: bool = False, annotations: bool = True) -> str | None:
        from workstation.ui.viewer.export import export_image

        error = export_image(self, path, whole_layout, annotations)
        self.status_changed.emit(error or f"Exported to {path}.")
        return error

    def copy_to_clipboard(self) -> None:
        QGuiApplication.clipboard().setImage(self.viewport.grab().toImage())
        self.status_changed.emit("The viewport is on the clipboard.")

    def show_help(self) -> None:
        from workstation.ui.viewer.help_dialog import HelpDialog

        dialog = HelpDialog(self)
        dialog.show()

    def save_protocol(self) -> None:
        name, ok = QInputDialog.getText(self, "Save hanging protocol", "Name of the new hanging protocol:")
        if ok and name.strip():
            self.status_changed.emit(arranging.save_arrangement(self.session, name.strip(), self.home))

    def toggle_key_image(self) -> None:
        self.kept.toggle_key_image(self.active_model)

    def flush(self) -> None:
        """Save what is still to be saved now (the tab closes)."""
        self.kept.flush()

    def shown_display_sets(self) -> list[DisplaySet]:
        return [v.display_set for v in self.session.layout.viewports if v.display_set is not None]
