"""One image viewport: shows a frame of a display set, with window/level, scrolling and corners.

The widget holds only view state (frame index, window, zoom). Decoding happens in the
`FrameService` on a worker; the widget asks for a frame and paints it when it arrives.
Mouse: left-drag changes window/level (right = wider, down = higher centre, as on most
workstations); the wheel and the arrow/page keys scroll through the frames.
"""

from __future__ import annotations

from functools import partial

import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QFont, QImage, QKeyEvent, QMouseEvent, QPainter, QTransform, QWheelEvent
from PySide6.QtWidgets import QWidget

from workstation.core.model.display_set import DisplaySet
from workstation.core.pixels.render import FrameRenderer
from workstation.core.pixels.voi import Window
from workstation.core.viewer.view import ViewState, ViewTransform
from workstation.services.frame_service import FrameService
from workstation.ui.text import format_date, person_name

PREFETCH_AHEAD = 6


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

    def __init__(self, frames: FrameService, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.frames = frames
        self.display_set: DisplaySet | None = None
        self.index = 0
        self.window: Window | None = None  # the user's window; None: the series' own (below)
        self.series_window: Window | None = None   # the first image's window, kept for the whole series
        self.renderer: FrameRenderer | None = None
        self.shown_index = -1  # the frame the image on screen belongs to
        self.image: QImage | None = None
        self.view_state = ViewState()   # zoom, pan, rotation, flips (fitted and upright for now)
        self.error: str = ""
        self._drag_from: QPointF | None = None
        self._drag_window: Window | None = None
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setMinimumSize(256, 256)
        self.setAutoFillBackground(False)
        self.viewport_id = frames.register()
        frames.frame_loaded.connect(self._on_frame_loaded)
        frames.frame_failed.connect(self._on_frame_failed)
        self.destroyed.connect(partial(frames.forget, self.viewport_id))   # no reference to self

    # --- what to show -------------------------------------------------------------------------

    def show_display_set(self, display_set: DisplaySet, index: int = 0) -> None:
        self.display_set = display_set
        self.window = None
        self.series_window = None
        self.renderer = None
        self.shown_index = -1
        self.image = None
        self.error = "" if len(display_set) else "this series has no images"
        self.set_index(index)

    def grow_display_set(self, display_set: DisplaySet) -> None:
        """The same series with more frames (instances still arriving): stay on the frame shown."""
        old = self.display_set
        current = old.frames[self.index] if old is not None and 0 <= self.index < len(old) else None
        self.display_set = display_set
        if not len(display_set):
            return
        index = display_set.frames.index(current) if current in display_set.frames else min(self.index, len(display_set) - 1)
        if current is None or self.image is None and not self.error:
            self.set_index(index)
            return
        if self.shown_index == self.index:
            self.shown_index = index
        self.index = index
        self.frame_changed.emit(index)
        self.update()

    def set_index(self, index: int) -> None:
        if not self.display_set or not len(self.display_set):
            self.update()
            return
        index = max(0, min(index, len(self.display_set) - 1))
        self.index = index
        ref = self.display_set.frames[index]
        hit = self.frames.cached(ref)
        if hit is not None:
            self._show(hit, index)
        else:
            self.frames.request(self.viewport_id, index, ref)
        ahead = self.display_set.frames[index + 1:index + 1 + PREFETCH_AHEAD]
        self.frames.prefetch(list(ahead))
        self.frame_changed.emit(index)
        self.update()

    def set_window(self, window: Window | None) -> None:
        """A window for every frame from now on; None goes back to the series' own (its first image's)."""
        self.window = window
        self._render()
        shown = self.shown_window()
        if shown is not None:
            self.window_changed.emit(shown.center, shown.width)

    # --- frames arriving ----------------------------------------------------------------------

    def _on_frame_loaded(self, viewport_id: int, index: int, renderer: FrameRenderer) -> None:
        if viewport_id == self.viewport_id and index == self.index:
            self._show(renderer, index)

    def _on_frame_failed(self, viewport_id: int, index: int, reason: str) -> None:
        if viewport_id == self.viewport_id and index == self.index:
            self.renderer = None
            self.image = None
            self.error = reason
            self.update()

    def shown_window(self) -> Window | None:
        """The window on screen: the user's, else the series' own; None for a VOI LUT or colour frame."""
        if self.window is not None:
            return self.window
        if self.renderer is None or not self.renderer.windowed:
            return None
        return self.series_window or self.renderer.default_window

    def _show(self, renderer: FrameRenderer, index: int) -> None:
        # A series keeps one window while scrolling (MR files often carry a window per image): the
        # first image's, until the user chooses another.
        if self.series_window is None and renderer.windowed:
            self.series_window = renderer.default_window
        self.renderer = renderer
        self.shown_index = index
        self.error = ""
        self._render()

    def _render(self) -> None:
        if self.renderer is None:
            self.update()
            return
        self.image = qimage_from(self.renderer.render(self.shown_window()))
        self.update()

    # --- painting -----------------------------------------------------------------------------

    def view_transform(self) -> ViewTransform | None:
        """Image <-> widget <-> patient for the frame on screen: the one map painting and tools use."""
        if self.image is None:
            return None
        plane = self.renderer.plane if self.renderer is not None else None
        orientation = self.renderer.patient_orientation if self.renderer is not None else None
        return ViewTransform.build(self.image.width(), self.image.height(), (self.width(), self.height()),
                                   self.view_state, plane=plane, patient_orientation=orientation)

    def image_rect(self) -> QRectF:
        """The image's bounding box on screen."""
        t = self.view_transform()
        if t is None:
            return QRectF()
        corners = [t.to_widget(c, r) for c in (-0.5, t.columns - 0.5) for r in (-0.5, t.rows - 0.5)]
        xs, ys = [x for x, _ in corners], [y for _, y in corners]
        return QRectF(min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys))

    def paintEvent(self, event) -> None:
        p = QPainter(self)
        p.fillRect(self.rect(), QColor(0, 0, 0))
        t = self.view_transform()
        if t is not None:
            m = t.matrix
            p.save()
            p.setTransform(QTransform(m[0, 0], m[1, 0], m[0, 1], m[1, 1], m[0, 2], m[1, 2]))
            # at one screen pixel per image pixel nothing is resampled: the render output is shown as is
            p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, abs(t.scale - 1.0) > 1e-6)
            p.drawImage(QRectF(-0.5, -0.5, t.columns, t.rows), self.image)
            p.restore()
        self._paint_corners(p, t)
        p.end()

    def corner_texts(self) -> dict[str, list[str]]:
        """The four corners' lines: patient and study top-left, series top-right, slice and W/L below."""
        ds = self.display_set
        if ds is None:
            return {}
        study, series = ds.study, ds.series
        top_left = []
        if study is not None:
            top_left = [person_name(study.PatientName), study.PatientID, format_date(study.StudyDate)]
        top_right = [series.Modality, series.SeriesDescription,
                     f"Series {series.SeriesNumber}" if series.SeriesNumber is not None else ""]
        bottom_left = [f"Image {self.index + 1} / {len(ds)}"] if len(ds) else []
        if self.renderer is not None and self.renderer.number_of_frames > 1:
            bottom_left.append(f"Frame {self.renderer.frame + 1} of {self.renderer.number_of_frames}")
        bottom_right = []
        if self.renderer is not None and not self.renderer.is_color:
            shown = self.shown_window()
            if shown is None:
                bottom_right.append("VOI LUT")
            else:
                bottom_right.append(f"W {format_level(shown.width)}  L {format_level(shown.center)}")
        return {"top_left": [t for t in top_left if t], "top_right": [t for t in top_right if t],
                "bottom_left": bottom_left, "bottom_right": bottom_right}

    def _paint_corners(self, p: QPainter, transform: ViewTransform | None) -> None:
        font = QFont(self.font())
        font.setPointSizeF(max(8.0, min(11.0, self.height() / 60)))
        p.setFont(font)
        metrics = p.fontMetrics()
        line = metrics.height()
        margin = 6
        texts = self.corner_texts()
        for key, lines in texts.items():
            for i, text in enumerate(lines):
                width = metrics.horizontalAdvance(text)
                x = margin if key.endswith("left") else self.width() - width - margin
                if key.startswith("top"):
                    y = margin + line * (i + 1) - metrics.descent()
                else:
                    y = self.height() - margin - line * (len(lines) - 1 - i) - metrics.descent()
                _shadowed_text(p, x, y, text)
        labels = transform.orientation_labels() if transform is not None else {}
        if labels:   # at the edges of what is visible of the image, following rotation and flips
            rect = self.image_rect().intersected(QRectF(self.rect()))
            cx, cy = rect.center().x(), rect.center().y()
            _shadowed_text(p, rect.left() + margin, cy, labels["left"])
            _shadowed_text(p, rect.right() - metrics.horizontalAdvance(labels["right"]) - margin, cy, labels["right"])
            _shadowed_text(p, cx, rect.top() + line + margin, labels["top"])
            _shadowed_text(p, cx, rect.bottom() - margin, labels["bottom"])
        if self.error:
            p.setPen(QColor(255, 180, 120))
            p.drawText(self.rect().adjusted(20, 20, -20, -20), Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap,
                       f"Cannot show this image.\n{self.error}\n\nThe other images are not affected. If a "
                       "decoder plugin is named above, install it; otherwise ask the sender for an "
                       "uncompressed or lossless copy.")

    # --- interaction --------------------------------------------------------------------------

    def mousePressEvent(self, event: QMouseEvent) -> None:
        if event.button() == Qt.MouseButton.LeftButton and self.renderer is not None:
            self._drag_from = event.position()
            self._drag_window = self.shown_window() or self.renderer.default_window
        self.setFocus()

    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        if self._drag_from is None or self._drag_window is None or self.renderer is None:
            return
        delta = event.position() - self._drag_from
        low, high = self.renderer.value_range
        sensitivity = max(1.0, high - low) / 512.0
        start = self._drag_window
        width = max(1.0, start.width + delta.x() * sensitivity)
        center = start.center + delta.y() * sensitivity
        self.set_window(Window(center, width, start.function))

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:
        self._drag_from = None
        self._drag_window = None

    def wheelEvent(self, event: QWheelEvent) -> None:
        steps = event.angleDelta().y() // 120 or (1 if event.angleDelta().y() > 0 else -1 if event.angleDelta().y() < 0 else 0)
        if steps:
            self.set_index(self.index - steps)

    def keyPressEvent(self, event: QKeyEvent) -> None:
        key = event.key()
        moves = {Qt.Key.Key_Up: -1, Qt.Key.Key_Down: 1, Qt.Key.Key_Left: -1, Qt.Key.Key_Right: 1,
                 Qt.Key.Key_PageUp: -10, Qt.Key.Key_PageDown: 10}
        if key in moves:
            self.set_index(self.index + moves[key])
        elif key == Qt.Key.Key_Home:
            self.set_index(0)
        elif key == Qt.Key.Key_End and self.display_set:
            self.set_index(len(self.display_set) - 1)
        else:
            super().keyPressEvent(event)


def _shadowed_text(p: QPainter, x: float, y: float, text: str) -> None:
    p.setPen(QColor(0, 0, 0))
    p.drawText(QPointF(x + 1, y + 1), text)
    p.setPen(QColor(235, 235, 235))
    p.drawText(QPointF(x, y), text)


def format_level(value: float) -> str:
    """Window values as a reader wants them: whole numbers for CT/MR ranges, a few digits for small ones."""
    if abs(value) >= 20:
        return f"{value:.0f}"
    return f"{value:.3g}"
