"""One image viewport: a thin Qt canvas over a `ViewportModel` (core/viewer/viewport.py).

The widget asks the `FrameService` for the frame its model is on, hands back what arrives, and
paints: the image through the model's view transform, then the layers (DICOM overlays, annotations,
reference lines, the 3D cursor, corners, orientation labels, scale bar, warnings). Mouse and keys go
to the viewer's `ToolController`; the widget holds no viewing state of its own.
"""

from __future__ import annotations

from functools import partial

import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import (
    QColor,
    QDragEnterEvent,
    QDropEvent,
    QImage,
    QKeyEvent,
    QMouseEvent,
    QPainter,
    QPainterPath,
    QPen,
    QTransform,
    QWheelEvent,
)
from PySide6.QtWidgets import QWidget

from workstation.core.model.display_set import DisplaySet
from workstation.core.viewer.view import ViewTransform
from workstation.core.viewer.viewport import ViewportModel
from workstation.services.frame_service import FrameService
from workstation.ui.viewer import painting

DISPLAY_SET_MIME = "application/x-workstation-display-set"
ACTIVE = QColor(255, 176, 0)


def qimage_from(buffer: np.ndarray) -> QImage:
    """Wrap an 8-bit grey or RGB buffer; the QImage copies it so the array may go."""
    buffer = np.ascontiguousarray(buffer)
    h, w = buffer.shape[:2]
    if buffer.ndim == 2:
        image = QImage(buffer.data, w, h, buffer.strides[0], QImage.Format.Format_Grayscale8)
    else:
        image = QImage(buffer.data, w, h, buffer.strides[0], QImage.Format.Format_RGB888)
    return image.copy()


class ViewportWidget(QWidget):
    frame_changed = Signal(int)
    window_changed = Signal(float, float)
    activated = Signal()                 # clicked or focused: the viewer makes it the active one
    maximise_requested = Signal()
    display_set_dropped = Signal(str, str)   # StudyInstanceUID, display set key dropped from the strip

    def __init__(self, frames: FrameService, model: ViewportModel | None = None, session=None,
                 tools=None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.frames = frames
        self.session = session
        self.tools = tools
        self.model: ViewportModel | None = None
        self.image: QImage | None = None      # the model's rendered frame as a QImage
        self._image_key = None
        self.active = False
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setMinimumSize(64, 64)
        self.setMouseTracking(True)
        self.setAcceptDrops(True)
        self.setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent)
        self.viewport_id = frames.register()
        frames.frame_loaded.connect(self._on_frame_loaded)
        frames.frame_failed.connect(self._on_frame_failed)
        self.destroyed.connect(partial(frames.forget, self.viewport_id))   # no reference to self
        self.bind(model or ViewportModel())

    # --- the model ----------------------------------------------------------------------------

    def bind(self, model: ViewportModel) -> None:
        """Show another model (a layout change or a swap moved it here)."""
        if model is self.model:
            return
        if self.model is not None:
            self.model.changed.disconnect(self._on_model)
        self.model = model
        model.changed.connect(self._on_model)
        self._image_key = None
        self.image = None
        self._on_model(frozenset({"display_set", "frame", "image"}))

    def _on_model(self, aspects) -> None:
        model = self.model
        if "display_set" in aspects and model.frames:
            ahead = list(model.frames[model.index:]) + list(reversed(model.frames[:model.index]))
            self.frames.prefetch(ahead, self.viewport_id)
        if aspects & {"frame", "display_set"}:
            self._fetch()
            self.frame_changed.emit(model.index)
        if aspects & {"image", "window", "view"}:
            self._refresh_image()
        if "window" in aspects:
            shown = model.shown_window()
            if shown is not None:
                self.window_changed.emit(shown.center, shown.width)
        self.update()

    def _fetch(self) -> None:
        ref = self.model.wanted()
        if ref is None:
            return
        hit = self.frames.cached(ref)
        if hit is not None:
            self.model.frame_arrived(ref, hit)
        else:
            self.frames.request(self.viewport_id, ref)

    def _on_frame_loaded(self, viewport_id: int, ref, renderer) -> None:
        if viewport_id == self.viewport_id:
            self.model.frame_arrived(ref, renderer)

    def _on_frame_failed(self, viewport_id: int, ref, reason: str) -> None:
        if viewport_id == self.viewport_id:
            self.model.frame_failed(ref, reason)

    def _refresh_image(self) -> None:
        model = self.model
        key = (id(model.renderer), model.shown_window(), model.view.invert)
        if model.renderer is None:
            self.image, self._image_key = None, None
        elif key != self._image_key:
            self.image = qimage_from(model.render())
            self._image_key = key

    # --- what the old single viewport offered (tests and the window use these) ----------------

    @property
    def display_set(self) -> DisplaySet | None:
        return self.model.display_set

    @property
    def index(self) -> int:
        return self.model.index

    @property
    def shown_index(self) -> int:
        shown = self.model.shown
        return self.model.frames.index(shown) if shown is not None and shown in self.model.frames else -1

    @property
    def renderer(self):
        return self.model.renderer

    @property
    def error(self) -> str:
        return self.model.error

    @property
    def window(self):
        return self.model.window

    def show_display_set(self, display_set: DisplaySet, index: int = 0) -> None:
        self.model.show(display_set, index)

    def set_index(self, index: int) -> None:
        self.model.set_index(index)

    def set_window(self, window) -> None:
        self.model.set_window(window)

    def shown_window(self):
        return self.model.shown_window()

    def view_transform(self) -> ViewTransform | None:
        return self.model.transform((self.width(), self.height()))

    def corner_texts(self) -> dict[str, list[str]]:
        return self.model.corner_texts(self.view_transform())

    def set_active(self, active: bool) -> None:
        if active != self.active:
            self.active = active
            self.update()

    # --- painting -----------------------------------------------------------------------------

    def paintEvent(self, event) -> None:
        p = QPainter(self)
        p.fillRect(self.rect(), QColor(0, 0, 0))
        t = self.view_transform()
        if t is not None and self.image is not None:
            self._paint_image(p, t)
            painting.overlay_planes(p, t, self.model.renderer)
            if self.session is not None:
                painting.reference_lines(p, t, self.session.reference_lines(self.model))
                ref = self.model.shown
                if ref is not None:
                    painting.annotations(p, t, self.session.annotations.for_frame(ref.SOPInstanceUID, ref.frame),
                                         self.model, self.tools.selected if self.tools is not None else None)
                cursor = self.session.cursor_in(self.model)
                if cursor is not None:
                    painting.cursor(p, t, cursor)
            if self.tools is not None:
                self.tools.paint(self, p, t)
        painting.corners(p, self, self.corner_texts(), t)
        if self.model.error:
            painting.error(p, self.rect(), self.model.error)
        elif self.model.display_set is None:
            painting.hint(p, self.rect(), "Drag a series here from the strip")
        if self.active:
            p.setPen(QPen(ACTIVE, 2))
            p.drawRect(QRectF(self.rect()).adjusted(1, 1, -1, -1))
        p.end()

    def _paint_image(self, p: QPainter, t: ViewTransform, clip=None) -> None:
        m = t.matrix
        p.save()
        p.setTransform(QTransform(m[0, 0], m[1, 0], m[0, 1], m[1, 1], m[0, 2], m[1, 2]), True)
        # at one screen pixel per image pixel nothing is resampled: the render output is shown as is
        p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform,
                        self.model.view.interpolate and abs(t.scale - 1.0) > 1e-6)
        p.drawImage(QRectF(-0.5, -0.5, t.columns, t.rows), self.image)
        p.restore()

    def paint_magnified(self, p: QPainter, at: QPointF, factor: float = 3.0, radius: float = 90.0) -> None:
        """The magnifying glass: the image under `at`, `factor` times larger, in a circle."""
        t = self.view_transform()
        if t is None or self.image is None:
            return
        matrix = t.matrix.copy()
        matrix[:, :2] *= factor
        matrix[:, 2] = (np.array([at.x(), at.y()]) - factor * (np.array([at.x(), at.y()]) - t.matrix[:, 2]))
        path = QPainterPath()
        path.addEllipse(at, radius, radius)
        p.save()
        p.setClipPath(path)
        p.fillRect(QRectF(at.x() - radius, at.y() - radius, 2 * radius, 2 * radius), QColor(0, 0, 0))
        self._paint_image(p, ViewTransform(matrix, t.columns, t.rows, t.plane, t.patient_orientation))
        p.restore()
        p.setPen(QPen(QColor(255, 255, 255), 1.5))
        p.drawEllipse(at, radius, radius)

    # --- input: everything goes to the tools --------------------------------------------------

    def mousePressEvent(self, event: QMouseEvent) -> None:
        self.setFocus()
        self.activated.emit()
        if self.tools is not None:
            self.tools.press(self, event)

    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        if self.tools is not None:
            self.tools.move(self, event)

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:
        if self.tools is not None:
            self.tools.release(self, event)

    def mouseDoubleClickEvent(self, event: QMouseEvent) -> None:
        if event.button() == Qt.MouseButton.LeftButton and (self.tools is None or not self.tools.drawing):
            self.maximise_requested.emit()

    def wheelEvent(self, event: QWheelEvent) -> None:
        delta = event.angleDelta().y()
        steps = delta // 120 or (1 if delta > 0 else -1 if delta < 0 else 0)
        if not steps:
            return
        if event.modifiers() & Qt.KeyboardModifier.ControlModifier:
            self.zoom_about(event.position(), 1.25 ** steps)
        else:
            self.model.scroll(-steps)

    def zoom_about(self, at: QPointF, factor: float) -> None:
        """Zoom keeping the image point under `at` where it is."""
        t = self.view_transform()
        if t is None:
            self.model.zoom(factor)
            return
        column, row = t.to_image(at.x(), at.y())
        self.model.zoom(factor)
        after = self.view_transform()
        x, y = after.to_widget(column, row)
        self.model.pan(at.x() - x, at.y() - y)

    def keyPressEvent(self, event: QKeyEvent) -> None:
        key = event.key()
        moves = {Qt.Key.Key_Up: -1, Qt.Key.Key_Down: 1, Qt.Key.Key_Left: -1, Qt.Key.Key_Right: 1,
                 Qt.Key.Key_PageUp: -10, Qt.Key.Key_PageDown: 10}
        if event.modifiers() & Qt.KeyboardModifier.ControlModifier:
            super().keyPressEvent(event)
        elif key in moves:
            self.model.scroll(moves[key])
        elif key == Qt.Key.Key_Home:
            self.model.set_index(0)
        elif key == Qt.Key.Key_End:
            self.model.set_index(len(self.model.frames) - 1)
        else:
            super().keyPressEvent(event)

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if event.mimeData().hasFormat(DISPLAY_SET_MIME):
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        data = bytes(event.mimeData().data(DISPLAY_SET_MIME)).decode()
        study_uid, _, key = data.partition("\n")
        if key:
            event.acceptProposedAction()
            self.display_set_dropped.emit(study_uid, key)

