"""The mouse in a viewer tab: which tool the left button runs, what the middle and right buttons do,
drawing and editing annotations, the pixel probe and the magnifying glass.

One controller serves every viewport of a tab (Cornerstone's tool group): the active tool answers
the left button and creates annotations; existing annotations can be selected, moved and edited
with any tool; the middle and right buttons run their configured actions (pan and zoom by
default); Shift+click sets the 3D cursor. The geometry (hits, measurements) is the core's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from PySide6.QtCore import QObject, QPointF, Qt, Signal
from PySide6.QtGui import QColor, QMouseEvent, QPainter
from PySide6.QtWidgets import QInputDialog

from workstation.core.pixels.voi import Window
from workstation.core.viewer.annotations import POINTS, Annotation, hit, new_annotation
from workstation.core.viewer.keymap import BUTTON_ACTIONS, TOOLS
from workstation.ui.viewer import painting

DRAWING_TOOLS = ("length", "angle", "cobb", "rectangle", "ellipse", "freehand", "arrow", "text")
TOOL_NAMES = {tool: name for tool, name, _ in TOOLS}
HIT_PIXELS = 6.0


@dataclass
class _Drag:
    widget: object
    action: str
    start: QPointF
    window: Window | None = None
    view: object = None
    index: int = 0


@dataclass
class _Drawing:
    widget: object
    kind: str
    points: list[tuple[float, float]] = field(default_factory=list)
    cursor: tuple[float, float] | None = None


@dataclass
class _Edit:
    widget: object
    uid: str
    handle: int | str
    start: tuple[float, float]
    original: object


class ToolController(QObject):
    tool_changed = Signal(str)
    buttons_changed = Signal(object)   # {"middle": action, "right": action}
    probed = Signal(str)        # the pixel under the pointer, in words (empty when there is none)

    def __init__(self, session, parent=None) -> None:
        """`session`: where a selection is deleted before anything is selected; a viewport's own session
        (its widget's) receives what is drawn in it, so one controller serves the 2D grid and MPR."""
        super().__init__(parent)
        self._selected_in = session
        self.tool = "window"
        self.buttons = {"middle": "pan", "right": "zoom"}
        self.selected: str | None = None
        self._drag: _Drag | None = None
        self._drawing: _Drawing | None = None
        self._edit: _Edit | None = None
        self._magnifier: tuple[object, QPointF] | None = None
        self._probe: tuple[object, QPointF, str] | None = None

    @property
    def drawing(self) -> bool:
        return self._drawing is not None

    def set_tool(self, tool: str) -> None:
        if tool not in TOOL_NAMES:
            raise ValueError(f"unknown tool {tool!r}")
        self.cancel()
        self.tool = tool
        self.tool_changed.emit(tool)

    def set_button(self, button: str, action: str) -> None:
        if button not in self.buttons or action not in BUTTON_ACTIONS:
            raise ValueError(f"the {button} button cannot be set to {action!r}")
        self.buttons[button] = action
        self.buttons_changed.emit(dict(self.buttons))

    def cancel(self) -> None:
        if self._drawing is not None:
            widget = self._drawing.widget
            self._drawing = None
            widget.update()

    # --- mouse --------------------------------------------------------------------------------

    def press(self, widget, event: QMouseEvent) -> None:
        model = widget.model
        t = widget.view_transform()
        pos = event.position()
        button = event.button()
        if button == Qt.MouseButton.LeftButton and event.modifiers() & Qt.KeyboardModifier.ShiftModifier:
            point = t.to_patient(pos.x(), pos.y()) if t is not None else None
            if point is not None:
                widget.session.set_cursor(model, point)   # the viewer repaints every viewport on "cursor"
            return
        action = {Qt.MouseButton.LeftButton: self.tool, Qt.MouseButton.MiddleButton: self.buttons["middle"],
                  Qt.MouseButton.RightButton: self.buttons["right"]}.get(button)
        if action is None or t is None or model.renderer is None:
            return
        image_point = t.to_image(pos.x(), pos.y())
        if button == Qt.MouseButton.LeftButton:
            if self._drawing is not None and self._drawing.widget is widget:
                self._continue_drawing(image_point)
                return
            found = self._hit(widget, image_point, HIT_PIXELS / max(t.scale, 1e-6))
            if found is not None:
                annotation, handle = found
                self.selected = annotation.uid
                self._selected_in = widget.session
                self._edit = _Edit(widget, annotation.uid, handle, image_point, annotation)
                widget.update()
                return
            if self.selected is not None:
                self.selected = None
                widget.update()
        if action in DRAWING_TOOLS:
            self._start_drawing(widget, action, image_point)
            return
        if action == "crosshair":
            rotating = bool(event.modifiers() & Qt.KeyboardModifier.ControlModifier) and hasattr(widget.session, "rotate")
            if not rotating:
                point = t.to_patient(pos.x(), pos.y())
                if point is not None:
                    widget.session.set_cursor(model, point)
            self._drag = _Drag(widget, "rotate" if rotating else "crosshair", pos, None, model.view, model.index)
            return
        if action == "magnifier":
            self._magnifier = (widget, pos)
        elif action == "probe":
            self._probe = (widget, pos, self.describe(widget, pos))
        self._drag = _Drag(widget, action, pos, model.shown_window() or model.renderer.default_window,
                           model.view, model.index)
        widget.update()

    def move(self, widget, event: QMouseEvent) -> None:
        pos = event.position()
        self.probed.emit(self.describe(widget, pos))
        t = widget.view_transform()
        if self._edit is not None and self._edit.widget is widget and t is not None:
            self._move_edit(widget, t.to_image(pos.x(), pos.y()))
            return
        if self._drawing is not None and self._drawing.widget is widget and t is not None:
            self._drawing.cursor = t.to_image(pos.x(), pos.y())
            if event.buttons() & Qt.MouseButton.LeftButton and self._drawing.kind == "freehand":
                self._drawing.points.append(self._drawing.cursor)
            widget.update()
            return
        drag = self._drag
        if drag is None or drag.widget is not widget:
            return
        model = widget.model
        delta = pos - drag.start
        if drag.action == "window" and model.renderer is not None and drag.window is not None:
            low, high = model.renderer.value_range
            sensitivity = max(1.0, high - low) / 512.0
            width = max(1.0, drag.window.width + delta.x() * sensitivity)
            centre = drag.window.center + delta.y() * sensitivity
            model.set_window(Window(centre, width, drag.window.function))
        elif drag.action == "pan":
            model.set_view(drag.view.panned(delta.x(), delta.y()))
        elif drag.action == "zoom":
            model.set_view(drag.view.zoomed(1.01 ** (-delta.y())))
        elif drag.action == "scroll":
            model.set_index(drag.index + int(delta.y() / 4))
        elif drag.action == "crosshair":
            point = t.to_patient(pos.x(), pos.y()) if t is not None else None
            if point is not None:
                widget.session.set_cursor(model, point)
        elif drag.action == "rotate":
            self._rotate(widget, t, drag, pos)
        elif drag.action == "magnifier":
            self._magnifier = (widget, pos)
            widget.update()
        elif drag.action == "probe":
            self._probe = (widget, pos, self.describe(widget, pos))
            widget.update()

    def release(self, widget, event: QMouseEvent) -> None:
        if self._edit is not None:
            self._edit = None
            return
        if self._drawing is not None and self._drawing.widget is widget and event.button() == Qt.MouseButton.LeftButton:
            t = widget.view_transform()
            if t is not None:
                self._release_drawing(widget, t.to_image(event.position().x(), event.position().y()))
            return
        self._drag = None
        if self._magnifier is not None or self._probe is not None:
            self._magnifier = None
            self._probe = None
            widget.update()

    def _rotate(self, widget, t, drag: _Drag, pos: QPointF) -> None:
        """Ctrl+drag with the crosshair in MPR: the angle swept about the crosshair turns the other planes."""
        centre = widget.session.cursor_in(widget.model)
        if t is None or centre is None:
            return
        cx, cy = t.to_widget(*centre)
        before = math.atan2(drag.start.y() - cy, drag.start.x() - cx)
        after = math.atan2(pos.y() - cy, pos.x() - cx)
        degrees = math.degrees(after - before)
        if abs(degrees) >= 0.5:
            # y grows downwards on screen, so a growing angle is a clockwise sweep; a mirrored view
            # (one flip) shows the plane from behind, where that is a turn the other way
            mirrored = float(np.linalg.det(t.matrix[:, :2])) < 0
            widget.session.rotate(widget.model, -degrees if mirrored else degrees)
            drag.start = pos

    # --- drawing ------------------------------------------------------------------------------

    def _start_drawing(self, widget, kind: str, point) -> None:
        if kind == "text":
            text, ok = QInputDialog.getText(widget, "Text", "Text to put on the image:")
            if ok and text.strip():
                self._commit(widget, "text", [point], text.strip())
            return
        self._drawing = _Drawing(widget, kind, [point], point)

    def _continue_drawing(self, point) -> None:
        """A press while drawing: the next point (a click, or the start of a dragged Cobb line)."""
        self._drawing.points.append(point)
        self._finish_if_complete()

    def _release_drawing(self, widget, point) -> None:
        """A release: after a drag it sets the next point; after a click the next press will."""
        drawing = self._drawing
        if drawing.kind == "freehand":
            if len(drawing.points) >= 3:
                self._commit(widget, "freehand", drawing.points)
            self._drawing = None
            widget.update()
            return
        if _far(drawing.points[-1], point, 3.0 / max(widget.view_transform().scale, 1e-6)):
            drawing.points.append(point)
        drawing.cursor = point
        self._finish_if_complete()
        widget.update()

    def _finish_if_complete(self) -> None:
        drawing = self._drawing
        if drawing is not None and len(drawing.points) >= POINTS[drawing.kind]:
            self._commit(drawing.widget, drawing.kind, drawing.points[:POINTS[drawing.kind]])
            self._drawing = None

    def _commit(self, widget, kind: str, points, text: str = "") -> None:
        model = widget.model
        ref, ds = model.shown, model.display_set
        if ref is None or ds is None:
            return
        annotation = new_annotation(kind, points, study_uid=ds.StudyInstanceUID, series_uid=ds.SeriesInstanceUID,
                                    sop_uid=ref.SOPInstanceUID, frame=ref.frame, plane=model.renderer.plane
                                    if model.renderer is not None else ref.plane,
                                    frame_of_reference=ds.FrameOfReferenceUID, text=text)
        widget.session.annotations.add(annotation)
        self.selected = annotation.uid
        self._selected_in = widget.session
        widget.update()

    # --- editing ------------------------------------------------------------------------------

    def _hit(self, widget, point, tolerance: float):
        ref = widget.model.shown
        if ref is None:
            return None
        for annotation in reversed(widget.session.annotations.for_frame(ref.SOPInstanceUID, ref.frame)):
            handle = hit(annotation, point, tolerance)
            if handle is not None:
                return annotation, handle
        return None

    def _move_edit(self, widget, point) -> None:
        edit = self._edit
        original = edit.original
        plane = widget.model.renderer.plane if widget.model.renderer is not None else None
        if edit.handle == "body":
            changed = original.moved(point[0] - edit.start[0], point[1] - edit.start[1], plane)
        else:
            points = list(original.points)
            points[edit.handle] = point
            changed = original.with_points(points, plane)
        widget.session.annotations.replace(changed)
        widget.update()

    def delete_selected(self) -> bool:
        if self.selected is None:
            return False
        self._selected_in.annotations.remove(self.selected)
        self.selected = None
        return True

    # --- probe, magnifier, previews -----------------------------------------------------------

    def describe(self, widget, pos: QPointF) -> str:
        """The pixel under a widget point: stored value, modality value with unit, patient position."""
        model = widget.model
        t = widget.view_transform()
        r = model.renderer
        if t is None or r is None:
            return ""
        pixel = t.pixel(pos.x(), pos.y())
        if pixel is None:
            return ""
        column, row = pixel
        parts = [f"x {column}  y {row}"]
        stored = r.stored_value(column, row)
        if r.is_color:
            parts.append(f"RGB {stored[0]} {stored[1]} {stored[2]}")
        else:
            value = r.modality_value(column, row)
            if stored is not None:
                parts.append(f"stored {stored}")
            unit = f" {r.unit}" if r.unit else ""
            parts.append(f"value {value:.6g}{unit}" if value is not None else "outside the volume")
        point = t.to_patient(pos.x(), pos.y())
        if point is not None:
            parts.append("LPS {:.1f} {:.1f} {:.1f} mm".format(*point))
        return "   ".join(parts)

    def paint(self, widget, p: QPainter, t) -> None:
        drawing = self._drawing
        if drawing is not None and drawing.widget is widget:
            points = list(drawing.points)
            if drawing.cursor is not None and drawing.kind != "freehand":
                points.append(drawing.cursor)
            preview = Annotation("preview", drawing.kind, "", "", "", 0, tuple(points[:max(2, POINTS.get(drawing.kind, 99))]))
            painting.draw_annotation(p, t, preview, painting.SELECTED)
        if self._magnifier is not None and self._magnifier[0] is widget:
            widget.paint_magnified(p, self._magnifier[1])
        if self._probe is not None and self._probe[0] is widget and self._probe[2]:
            _, pos, text = self._probe
            fm = p.fontMetrics()
            box = fm.boundingRect(text).adjusted(-6, -4, 6, 4)
            box.moveTopLeft((pos + QPointF(14, 14)).toPoint())
            p.fillRect(box, QColor(0, 0, 0, 190))
            painting.shadowed_text(p, box.left() + 6, box.top() + 4 + fm.ascent(), text)


def _far(a, b, distance: float) -> bool:
    return abs(a[0] - b[0]) > distance or abs(a[1] - b[1]) > distance
