"""The MPR layout inside a viewer tab: axial, sagittal and coronal planes through the crosshair and
the 3D view, in 2x2. The planes are the 2D viewport over an `MprSession` (core/viewer/mpr.py) whose
frames a `FrameService` reslices through VTK on workers, so window/level, presets, zoom, pan, the
tools, the probe, corners, orientation labels (oblique ones too) and the scale bar are the 2D
viewer's. VTK is imported here and in vtk3d only, when MPR opens."""

from __future__ import annotations

import logging

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QGridLayout,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from workstation.core.pixels.mpr import Slab
from workstation.core.pixels.render import FrameRenderer
from workstation.core.viewer.mpr import MprSession
from workstation.services.frame_service import FrameService
from workstation.ui.mpr.view3d import View3DWidget
from workstation.ui.viewer.viewport import ViewportWidget
from workstation.vtk3d.image import volume_image
from workstation.vtk3d.reslice import Reslicer

log = logging.getLogger(__name__)
SLABS = (("Thin", None), ("MIP", "mip"), ("MinIP", "minip"), ("Average", "avg"))
PLACES = {"axial": (0, 0), "sagittal": (0, 1), "coronal": (1, 0)}


class MprWidget(QWidget):
    closed = Signal()
    status_changed = Signal(str)

    def __init__(self, volume, series, study, windows, frame_of_reference: str, tools, cache,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.session = MprSession(volume, series, study, frame_of_reference)
        self.volume_image = volume_image(volume)   # shares the volume's buffer
        self.reslicer = Reslicer(self.volume_image)
        self.windows = list(windows)
        self.unit = "HU" if series.Modality == "CT" else ""
        self.cache = cache
        self.tools = tools
        # planes are remade in 1-3 ms, so few are kept: what MPR adds stays near a tenth of the volume
        self.frames = FrameService(threads=2, make=self._make, budget=max(4 << 20, volume.array.nbytes // 50))
        self.cells: dict[str, ViewportWidget] = {}
        grid = QGridLayout()
        grid.setContentsMargins(0, 0, 0, 0)
        grid.setSpacing(2)
        for orientation, (row, column) in PLACES.items():
            cell = ViewportWidget(self.frames, self.session.viewport_of(orientation), self.session, tools, self)
            cell.activated.connect(lambda o=orientation: self._activate(o))
            cell.maximise_requested.connect(lambda o=orientation: self._maximise(o))
            self.cells[orientation] = cell
            grid.addWidget(cell, row, column)
        self.view3d = self._view3d()
        grid.addWidget(self.view3d, 1, 1)
        for i in range(2):   # four equal quarters, whatever each widget would like
            grid.setRowStretch(i, 1)
            grid.setColumnStretch(i, 1)
        self.grid = grid
        self._maximised: str | None = None
        self._shut = False

        self.slab_box = QComboBox()
        self.slab_box.addItems([name for name, _ in SLABS])
        self.slab_box.setToolTip("Thick slab: maximum, minimum or average over the thickness")
        self.thickness = QDoubleSpinBox()
        self.thickness.setRange(0.0, 200.0)
        self.thickness.setValue(10.0)
        self.thickness.setSuffix(" mm")
        self.thickness.setToolTip("Slab thickness (changeable while scrolling)")
        for w in (self.slab_box, self.thickness):
            w.setFocusPolicy(Qt.FocusPolicy.ClickFocus)   # the arrow keys keep scrolling the planes
        self.slab_box.currentIndexChanged.connect(self._on_slab)
        self.thickness.valueChanged.connect(self._on_slab)
        reset = QPushButton("Reset crosshair")
        reset.setToolTip("The crosshair back at the volume's centre, every plane straight")
        reset.clicked.connect(self.session.reset)
        export = QPushButton("Save as DICOM…")
        export.setToolTip("The active plane, or a stack of parallel planes, as derived images in the cache")
        export.clicked.connect(self.save_dicom)
        back = QPushButton("Back to 2D")
        back.clicked.connect(self.closed)
        bar = QHBoxLayout()
        bar.setContentsMargins(4, 2, 4, 2)
        bar.addWidget(QLabel("Slab"))
        bar.addWidget(self.slab_box)
        bar.addWidget(self.thickness)
        bar.addWidget(reset)
        bar.addWidget(export)
        bar.addStretch(1)
        self.warning = QLabel("  ".join(volume.warnings))
        self.warning.setStyleSheet("color: #ffb478;")
        self.warning.setWordWrap(True)
        bar.addWidget(self.warning, 3)
        bar.addWidget(back)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addLayout(bar)
        layout.addLayout(grid, 1)
        self.session.changed.connect(lambda aspects: self._repaint())
        self.session.layout.changed.connect(lambda aspects: self._mark_active())
        self._mark_active()

    # --- the planes -------------------------------------------------------------------------------

    def _make(self, ref) -> FrameRenderer:
        """On a frame service worker: the plane a virtual frame stands for, resliced."""
        spec, slab = self.session.make_frame(ref)
        values, plane = self.reslicer.reslice(spec, slab)
        return FrameRenderer.of_values(values, plane, unit=self.unit, windows=self.windows)

    @property
    def active(self) -> ViewportWidget:
        return next(c for c in self.cells.values() if c.model is self.session.layout.current)

    @property
    def active_model(self):
        return self.session.layout.current

    def _activate(self, orientation: str) -> None:
        self.session.layout.activate(self.session.layout.index_of(self.session.viewport_of(orientation)))

    def _maximise(self, orientation: str) -> None:
        """One plane, or the 3D view ('3d'), alone; again: the 2x2 back."""
        self._maximised = None if self._maximised == orientation else orientation
        for name, cell in self.cells.items():
            cell.setVisible(self._maximised in (None, name))
        self.view3d.setVisible(self._maximised in (None, "3d"))
        row, column = {**PLACES, "3d": (1, 1)}.get(self._maximised, (None, None))
        for i in range(2):   # the hidden quarters' rows and columns take no room
            self.grid.setRowStretch(i, 1 if row in (None, i) else 0)
            self.grid.setColumnStretch(i, 1 if column in (None, i) else 0)

    def _mark_active(self) -> None:
        for cell in self.cells.values():
            cell.set_active(cell.model is self.session.layout.current)

    def _repaint(self) -> None:
        for cell in self.cells.values():
            cell.update()

    def _on_slab(self) -> None:
        mode = SLABS[self.slab_box.currentIndex()][1]
        thickness = self.thickness.value()
        self.session.set_slab(Slab(mode, thickness) if mode and thickness > 0 else None)

    def _view3d(self) -> QWidget:
        """The 3D quarter (rendered offscreen, so Qt's offscreen platform has it too); it starts
        rendering once the planes are shown, so the two do not share the processor while MPR opens."""
        try:
            view = View3DWidget(self.volume_image, self, modality=self.session.series.Modality,
                                mip_window=self._mip_window)
        except Exception as exc:   # noqa: BLE001 - MPR works without its 3D quarter
            log.exception("the 3D view could not start")
            return _note(f"The 3D view could not start: {exc}")
        view.maximise_requested.connect(lambda: self._maximise("3d"))
        for cell in self.cells.values():   # the 3D MIP follows the active plane's window
            cell.window_changed.connect(lambda c, w, cell=cell: cell.model is self.active_model and view.window_changed())
        self._start_3d = QTimer(self)
        self._start_3d.setInterval(50)
        self._start_3d.timeout.connect(self._maybe_start_3d)
        self._start_3d.start()
        return view

    def _maybe_start_3d(self) -> None:
        if self.isVisible() and all(c.model.renderer is not None for c in self.cells.values()):
            self._start_3d.stop()
            self.view3d.start()

    def _mip_window(self):
        """The 3D MIP's window: the active plane's."""
        window = self.active_model.shown_window() if self.active_model is not None else None
        return (window.center, window.width) if window is not None else None

    # --- saving -----------------------------------------------------------------------------------

    def save_dicom(self) -> None:
        """Store the active plane, or a stack of parallel planes at a chosen spacing, as derived images."""
        model = self.active_model
        orientation = self.session.orientation_of(model)
        if orientation is None or model.current is None:
            return
        choice, ok = QInputDialog.getItem(self, "Save as DICOM", "What to save:",
                                          ["This plane", "A stack of parallel planes…"], 0, False)
        if not ok:
            return
        spec, slab = self.session.make_frame(model.current)
        positions = [spec.position]
        if choice.startswith("A stack"):
            spacing, ok = QInputDialog.getDouble(self, "Stack", "Spacing between planes (mm):", 5.0, 0.1, 100.0, 2)
            if not ok:
                return
            low, high = min(f.plane.position @ spec.normal for f in model.frames), \
                max(f.plane.position @ spec.normal for f in model.frames)
            count = int((high - low) / spacing) + 1
            positions = [low + i * spacing for i in range(count)]
        window = model.shown_window()
        description = f"{self.session.series.SeriesDescription or 'MPR'} {orientation}{' slab' if slab else ''} MPR"
        specs = [spec.at(p) for p in positions]
        reslicer = self.reslicer
        series_uid = self.session.series.SeriesInstanceUID

        def work(progress, cancel):
            from workstation.core.reformats import store_derived_series

            planes = (reslicer.reslice(s, slab) for s in specs)
            return store_derived_series(self.cache.cache, series_uid, planes, description,
                                        slab=(slab.mode, slab.thickness) if slab else None,
                                        window=(window.center, window.width) if window else None,
                                        progress=progress, cancel=cancel)

        job = self.cache.runner.submit("save MPR as DICOM", work)
        self.status_changed.emit(f"Saving {len(specs)} plane{'s' if len(specs) != 1 else ''} as DICOM…")
        job.succeeded.connect(lambda uid: self.status_changed.emit(
            f"Saved as the series “{description}” of the study; it can be sent to the PACS or printed."))
        job.failed.connect(lambda message: self.status_changed.emit(f"The MPR was not saved: {message}"))
        self._save_job = job

    def shutdown(self) -> None:
        """Stop the planes' workers and the 3D renderer (waiting for a frame being rendered); again: nothing."""
        if self._shut:
            return
        self._shut = True
        if isinstance(self.view3d, View3DWidget):
            self._start_3d.stop()
            self.view3d.close_renderer()
        self.frames.shutdown()
        self.reslicer.close()


def _note(text: str) -> QLabel:
    label = QLabel(text)
    label.setWordWrap(True)
    label.setAlignment(Qt.AlignmentFlag.AlignCenter)
    label.setStyleSheet("color: #aaaaaa; background: black;")
    return label
