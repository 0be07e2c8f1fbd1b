"""The 3D quarter of the MPR layout: volume rendering with presets, a 3D MIP, a clipping box, and the
camera turned, zoomed and panned with the mouse. VTK renders offscreen on a thread of its own
(vtk3d.render3d.RenderThread); this widget keeps the camera and the choices as data, paints the
newest frame with the orientation labels of the 2D viewports, and asks for quick frames while a
drag goes on and a full-quality one when it stops.

Mouse: left drag turns the volume, middle drag pans, right drag (up and down) or the wheel zooms,
a double click maximises. Keys (while the 3D view has the focus): Backspace resets the view, F fits
the volume in it, + and - zoom, the arrow keys turn it by 15 degrees."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QEvent, QObject, QPointF, QRectF, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QImage, QMouseEvent, QPainter, QPen, QWheelEvent
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSizePolicy,
    QSlider,
    QVBoxLayout,
    QWidget,
)

from workstation.core.dicom.geometry import direction_label, opposite_direction
from workstation.core.pixels.volume_presets import default_preset, mip_preset, value_range, volume_presets
from workstation.core.viewer.camera3d import VIEWS, Camera3D
from workstation.ui.viewer import painting
from workstation.vtk3d.image import VolumeImage
from workstation.vtk3d.render3d import ClipBox, RenderThread, SceneState, preview

DEGREES_PER_PIXEL = 0.5
SETTLE_MS = 180          # a full-quality frame this long after the last wheel step or key


TURNS = {Qt.Key.Key_Left: (-15, 0), Qt.Key.Key_Right: (15, 0), Qt.Key.Key_Up: (0, 15), Qt.Key.Key_Down: (0, -15)}
KEYS = {   # the 2D viewports' keys for the same things (core/viewer/keymap.py), taken before the tab's shortcuts
    Qt.Key.Key_Backspace: lambda view: view.reset_view("anterior"),
    Qt.Key.Key_F: lambda view: view.fit(),
    Qt.Key.Key_Plus: lambda view: view.zoom(1.25),
    Qt.Key.Key_Equal: lambda view: view.zoom(1.25),
    Qt.Key.Key_Minus: lambda view: view.zoom(0.8),
}


class _Frames(QObject):
    """Carries frames from the render thread to the GUI thread (a queued signal)."""
    arrived = Signal(object, object, float)
    failed = Signal(str)


class View3DWidget(QWidget):
    maximise_requested = Signal()
    frame_shown = Signal()

    def __init__(self, image: VolumeImage, parent: QWidget | None = None, modality: str = "",
                 mip_window=None) -> None:
        super().__init__(parent)
        self.image = image
        self.modality = (modality or "").upper()
        self.mip_window = mip_window or (lambda: None)   # the planes' window, for the 3D MIP
        self.presets = volume_presets(self.modality)
        self._range: tuple[float, float] | None = None          # for relative presets
        self._mip_range: tuple[float, float] | None = None      # the MIP's window without a plane window
        self.preset = default_preset(self.modality)
        self.mip = False
        self.clip = ClipBox()
        self.camera: Camera3D | None = None
        self.frame: QImage | None = None
        self.frame_state: SceneState | None = None
        self.error = ""
        self.rendered: list[tuple[SceneState, float]] = []   # each frame shown and its render time
        self.shaded = False           # the first shaded frame has been asked for (after the preview)
        self.thread: RenderThread | None = None
        self._drag: tuple[Qt.MouseButton, QPointF] | None = None
        self._frames = _Frames(self)
        self._frames.arrived.connect(self._arrived)
        self._frames.failed.connect(self._failed)
        self._settle = QTimer(self)
        self._settle.setSingleShot(True)
        self._settle.setInterval(SETTLE_MS)
        self._settle.timeout.connect(lambda: self._request(fast=False))

        self.canvas = _Canvas(self)
        self.preset_box = QComboBox()
        for p in self.presets:
            self.preset_box.addItem(p.name)
        self.preset_box.setCurrentText(self.preset.name)
        self.preset_box.setToolTip("Volume rendering preset")
        self.preset_box.currentIndexChanged.connect(self._on_preset)
        self.mip_box = QCheckBox("MIP")
        self.mip_box.setToolTip("Maximum intensity projection, in the planes' window")
        self.mip_box.toggled.connect(self.set_mip)
        self.view_box = QComboBox()
        self.view_box.addItems([v.capitalize() for v in VIEWS])
        self.view_box.setToolTip("Look from this side of the patient")
        self.view_box.activated.connect(lambda i: self.reset_view(list(VIEWS)[i]))
        self.clip_box = QCheckBox("Clip")
        self.clip_box.setToolTip("Render only a box of the volume")
        self.clip_box.toggled.connect(self._on_clip_toggled)
        reset = QPushButton("Reset")
        reset.setToolTip("The view from the front, the whole volume (Backspace)")
        reset.clicked.connect(lambda: self.reset_view("anterior"))
        for w in (self.preset_box, self.mip_box, self.view_box, self.clip_box, reset):
            w.setFocusPolicy(Qt.FocusPolicy.ClickFocus)
        bar = QHBoxLayout()
        bar.setContentsMargins(2, 2, 2, 2)
        for w in (self.preset_box, self.mip_box, self.view_box, self.clip_box, reset):
            bar.addWidget(w)
        bar.addStretch(1)
        self.clip_panel = self._clip_panel()
        self.clip_panel.setVisible(False)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addLayout(bar)
        layout.addWidget(self.clip_panel)
        layout.addWidget(self.canvas, 1)
        self.setStyleSheet("background: black; color: #dddddd;")
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Ignored)

    # --- starting and stopping --------------------------------------------------------------------

    def start(self) -> None:
        """Start rendering (MPR calls it once its planes are shown, so the two do not compete)."""
        if self.thread is not None:
            return
        self.thread = RenderThread(self.image, self._frames.arrived.emit, self._frames.failed.emit)
        self._request(fast=False)

    def close_renderer(self) -> None:
        if self.thread is not None:
            self.thread.close()
            self.thread = None

    # --- what is shown ----------------------------------------------------------------------------

    def _fitted(self, preset):
        if preset.relative:
            if self._range is None:
                self._range = value_range(self.image.volume.array)
            return preset.fitted(*self._range)
        return preset

    def set_preset(self, name: str) -> None:
        self.preset_box.setCurrentText(name)

    def _on_preset(self, index: int) -> None:
        self.preset = self.presets[index]
        if self.mip:
            self.mip_box.setChecked(False)   # a preset is a rendering, not a projection
        self._request(fast=False)

    def set_mip(self, on: bool) -> None:
        if self.mip_box.isChecked() != on:
            self.mip_box.setChecked(on)
            return
        self.mip = on
        self._request(fast=False)

    def window_changed(self) -> None:
        """The planes' window changed: a 3D MIP shows it too."""
        if self.mip:   # quick frames while the window is dragged, the full one when it settles
            self._request(fast=True)
            self._settle.start()

    def _mip_preset(self):
        window = self.mip_window()
        if window is None:   # no plane window: the volume's own range, sampled once (state() runs per drag step)
            if self._mip_range is None:
                self._mip_range = value_range(self.image.volume.array, 1.0, 99.9)
            low, high = self._mip_range
            window = ((low + high) / 2, high - low)
        return mip_preset(*window)

    def set_clip(self, clip: ClipBox | None) -> None:
        self.clip = (clip or ClipBox()).clamped()
        self._sync_sliders()
        self._request(fast=False)

    def _on_clip_toggled(self, on: bool) -> None:
        self.clip_panel.setVisible(on)
        self.clip = self._slider_box() if on else ClipBox()
        self._request(fast=False)

    def _clip_panel(self) -> QWidget:
        panel = QWidget()
        grid = QGridLayout(panel)
        grid.setContentsMargins(4, 0, 4, 2)
        grid.setVerticalSpacing(0)
        self.sliders: list[tuple[QSlider, QSlider]] = []
        for axis in range(3):   # columns, rows, slices: named by the patient direction they run to
            towards = direction_label(self.image.volume.direction[:, axis], max_letters=1)
            name = f"{opposite_direction(towards)}–{towards}"
            low, high = QSlider(Qt.Orientation.Horizontal), QSlider(Qt.Orientation.Horizontal)
            for s, value in ((low, 0), (high, 100)):
                s.setRange(0, 100)
                s.setValue(value)
                s.setFocusPolicy(Qt.FocusPolicy.ClickFocus)
                s.valueChanged.connect(self._on_slider)
                s.sliderReleased.connect(lambda: self._request(fast=False))
            grid.addWidget(QLabel(name), axis, 0)
            grid.addWidget(low, axis, 1)
            grid.addWidget(high, axis, 2)
            self.sliders.append((low, high))
        grid.setColumnStretch(1, 1)
        grid.setColumnStretch(2, 1)
        panel.setStyleSheet(   # the whole groove visible on black, not only its filled part
            "QSlider::groove:horizontal { background: #555; height: 4px; border-radius: 2px; }"
            "QSlider::sub-page:horizontal { background: #3d8fd6; border-radius: 2px; }"
            "QSlider::handle:horizontal { background: #e0e0e0; width: 10px; margin: -5px 0; border-radius: 3px; }")
        return panel

    def _slider_box(self) -> ClipBox:
        low = tuple(min(a.value(), b.value()) / 100 for a, b in self.sliders)
        high = tuple(max(a.value(), b.value()) / 100 for a, b in self.sliders)
        return ClipBox(low, high)

    def _sync_sliders(self) -> None:
        for axis, (a, b) in enumerate(self.sliders):
            for s, v in ((a, self.clip.low[axis]), (b, self.clip.high[axis])):
                s.blockSignals(True)
                s.setValue(round(v * 100))
                s.blockSignals(False)

    def _on_slider(self) -> None:
        self.clip = self._slider_box()
        dragging = any(s.isSliderDown() for pair in self.sliders for s in pair)
        self._request(fast=dragging)
        if not dragging:
            self._settle.start()

    # --- the camera -------------------------------------------------------------------------------

    def _size(self) -> tuple[int, int]:
        ratio = self.canvas.devicePixelRatioF()
        return max(16, round(self.canvas.width() * ratio)), max(16, round(self.canvas.height() * ratio))

    def reset_view(self, view: str = "anterior") -> None:
        w, h = self._size()
        self.camera = Camera3D.looking_at(self.image.volume.corners(), view, w / h)
        self.view_box.setCurrentIndex(list(VIEWS).index(view))
        self._request(fast=False)

    def rotate(self, right_degrees: float, up_degrees: float, fast: bool = False) -> None:
        self._ensure_camera()
        self.camera = self.camera.rotated(right_degrees, up_degrees)
        self._changed(fast)

    def zoom(self, factor: float, fast: bool = False) -> None:
        self._ensure_camera()
        self.camera = self.camera.zoomed(factor)
        self._changed(fast)

    def pan(self, dx: float, dy: float, fast: bool = False) -> None:
        self._ensure_camera()
        self.camera = self.camera.panned(dx, dy, self.canvas.height())
        self._changed(fast)

    def _ensure_camera(self) -> None:
        if self.camera is None:
            w, h = self._size()
            self.camera = Camera3D.looking_at(self.image.volume.corners(), "anterior", w / h)

    def _changed(self, fast: bool) -> None:
        self._request(fast=fast)
        if fast:
            self._settle.start()
        self.canvas.update()

    # --- frames -----------------------------------------------------------------------------------

    def state(self, fast: bool = False) -> SceneState:
        self._ensure_camera()
        preset = self._mip_preset() if self.mip else self._fitted(self.preset)
        return SceneState(self.camera, preset, self.mip, self.clip, self._size(), fast)

    def _request(self, fast: bool) -> None:
        if self.thread is None:
            return
        state = self.state(fast)
        if not self.shaded and not fast and not self.mip and state.preset.shading is not None:
            if self.frame is None:   # the gradients take seconds: a quick unshaded frame first
                self.thread.request(preview(state))
                return
            self.shaded = True
        self.thread.request(state)

    def _arrived(self, pixels: np.ndarray, state: SceneState, seconds: float) -> None:
        h, w = pixels.shape[:2]
        self.frame = QImage(pixels.data, w, h, pixels.strides[0], QImage.Format.Format_RGB888).copy()
        self.frame_state = state
        self.rendered.append((state, seconds))
        self.error = ""
        self.canvas.update()
        self.frame_shown.emit()
        if not self.shaded and not state.shade and self._drag is None:
            self._request(fast=False)   # the preview is in: now the shaded frame
        elif (state.size != self._size() or state.camera != self.camera) and not self._settle.isActive() \
                and self._drag is None and not state.fast:
            self._request(fast=False)   # resized or moved while it rendered

    def _failed(self, message: str) -> None:
        self.error = message
        self.canvas.update()

    @property
    def final(self) -> bool:
        """The frame shown is full quality and of what is asked for now."""
        s = self.frame_state
        return (s is not None and not s.fast and (s.shade or self.mip or s.preset.shading is None)
                and s == self.state())

    # --- mouse and keys ---------------------------------------------------------------------------

    def canvas_press(self, event: QMouseEvent) -> None:
        self._drag = (event.button(), event.position())

    def canvas_move(self, event: QMouseEvent) -> None:
        if self._drag is None:
            return
        button, last = self._drag
        delta = event.position() - last
        self._drag = (button, event.position())
        if button == Qt.MouseButton.LeftButton:
            self.rotate(delta.x() * DEGREES_PER_PIXEL, -delta.y() * DEGREES_PER_PIXEL, fast=True)
        elif button == Qt.MouseButton.MiddleButton:
            self.pan(delta.x(), delta.y(), fast=True)
        elif button == Qt.MouseButton.RightButton:
            self.zoom(1.01 ** (-delta.y()), fast=True)

    def canvas_release(self, event: QMouseEvent) -> None:
        self._drag = None
        self._settle.stop()
        self._request(fast=False)

    def wheelEvent(self, event: QWheelEvent) -> None:
        steps = event.angleDelta().y() / 120
        if steps:
            self.zoom(1.1 ** steps, fast=True)

    def fit(self) -> None:
        self._ensure_camera()
        w, h = self._size()
        self.camera = self.camera.fitted(self.image.volume.corners(), w / h)
        self._changed(False)

    def keyPressEvent(self, event) -> None:
        key = event.key()
        if key in TURNS:
            self.rotate(*TURNS[key])
        elif key in KEYS:
            KEYS[key](self)
        else:
            super().keyPressEvent(event)

    def resized(self) -> None:
        if self.frame is not None:
            self._settle.start()


class _Canvas(QWidget):
    """Paints the newest frame, scaled to the canvas while a frame of its new size renders, with the
    orientation labels and what the view shows."""

    def __init__(self, view: View3DWidget) -> None:
        super().__init__(view)
        self.view = view
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setMinimumSize(64, 64)
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Ignored)

    def paintEvent(self, event) -> None:
        view = self.view
        p = QPainter(self)
        p.fillRect(self.rect(), QColor(0, 0, 0))
        if view.frame is not None:
            p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, True)
            p.drawImage(QRectF(self.rect()), view.frame)
        if view.camera is not None and view.clip != ClipBox():
            self._outline(p, view.clip.corners(view.image), view.camera)
        if view.error:
            painting.hint(p, self.rect(), view.error)
        elif view.frame is None:
            painting.hint(p, self.rect(), "Rendering the volume…" if view.thread is not None else "3D view")
        if view.camera is not None:
            labels = view.camera.orientation_labels()
            p.setFont(painting.font_for(self))
            m = p.fontMetrics()
            w, h = self.width(), self.height()
            painting.shadowed_text(p, painting.MARGIN, h / 2, labels["left"])
            painting.shadowed_text(p, w - m.horizontalAdvance(labels["right"]) - painting.MARGIN, h / 2, labels["right"])
            painting.shadowed_text(p, (w - m.horizontalAdvance(labels["top"])) / 2, m.height() + painting.MARGIN,
                                   labels["top"])
            painting.shadowed_text(p, (w - m.horizontalAdvance(labels["bottom"])) / 2, h - painting.MARGIN,
                                   labels["bottom"])
            s = view.frame_state
            what = "MIP" if view.mip else view.preset.name
            if view.clip != ClipBox():
                what += ", clipped"
            if s is not None and (s.fast or not (s.shade or s.mip)):
                what += " (preview)"
            painting.shadowed_text(p, painting.MARGIN, h - painting.MARGIN - m.descent(), what)
        p.end()

    def _outline(self, p: QPainter, corners: np.ndarray, camera: Camera3D) -> None:
        """The clipping box's twelve edges (corner i has x, y, z in its bits 0, 1, 2)."""
        points = [QPointF(*camera.to_screen(c, self.width(), self.height())) for c in corners]
        p.setPen(QPen(QColor(255, 216, 50), 1.2))
        for i in range(8):
            for bit in (1, 2, 4):
                if not i & bit:
                    p.drawLine(points[i], points[i | bit])

    def mousePressEvent(self, event: QMouseEvent) -> None:
        self.setFocus()
        self.view.canvas_press(event)

    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        self.view.canvas_move(event)

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:
        self.view.canvas_release(event)

    def mouseDoubleClickEvent(self, event: QMouseEvent) -> None:
        self.view.maximise_requested.emit()

    def keyPressEvent(self, event) -> None:
        self.view.keyPressEvent(event)

    def event(self, event) -> bool:
        if event.type() == QEvent.Type.ShortcutOverride and event.key() in {**TURNS, **KEYS} \
                and not event.modifiers() & ~(Qt.KeyboardModifier.KeypadModifier | Qt.KeyboardModifier.ShiftModifier):
            event.accept()   # these keys are the 3D view's while it has the focus
            return True
        return super().event(event)

    def resizeEvent(self, event) -> None:
        self.view.resized()
