"""What a viewport paints over its image: DICOM overlay planes, annotations with their measurements,
reference lines, the 3D cursor, the four corners, orientation labels, the scale bar and warnings.
Geometry comes from the view transform; the texts from the core's models."""

from __future__ import annotations

import math

import numpy as np
from PySide6.QtCore import QLineF, QPointF, QRectF, Qt
from PySide6.QtGui import QBrush, QColor, QFont, QImage, QPainter, QPen, QPolygonF, QTransform

from workstation.core.viewer.annotations import Annotation, measure
from workstation.core.viewer.view import ViewTransform

TEXT = QColor(235, 235, 235)
SHADOW = QColor(0, 0, 0)
ANNOTATION = QColor(255, 214, 80)
SELECTED = QColor(80, 220, 255)
REFERENCE = QColor(255, 150, 40)
CURSOR = QColor(255, 60, 60)
OVERLAY = QColor(255, 255, 255)
WARNING = QColor(255, 180, 120)
MARGIN = 6


def shadowed_text(p: QPainter, x: float, y: float, text: str, colour: QColor = TEXT) -> None:
    p.setPen(SHADOW)
    p.drawText(QPointF(x + 1, y + 1), text)
    p.setPen(colour)
    p.drawText(QPointF(x, y), text)


def _widget(t: ViewTransform, column: float, row: float) -> QPointF:
    return QPointF(*t.to_widget(column, row))


def image_rect(t: ViewTransform) -> QRectF:
    corners = [t.to_widget(c, r) for c in (-0.5, t.columns - 0.5) for r in (-0.5, t.rows - 0.5)]
    xs, ys = [x for x, _ in corners], [y for _, y in corners]
    return QRectF(min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys))


# --- layers on the image ----------------------------------------------------------------------


def overlay_planes(p: QPainter, t: ViewTransform, renderer) -> None:
    """DICOM overlay planes (60xx) of the frame, as a white layer in image coordinates."""
    overlays = getattr(renderer, "overlays", None) or ()
    for overlay in overlays:
        bitmap = np.ascontiguousarray(overlay.bitmap, dtype=bool)
        rgba = np.zeros(bitmap.shape + (4,), np.uint8)
        rgba[bitmap] = (255, 255, 255, 255)
        image = QImage(rgba.data, bitmap.shape[1], bitmap.shape[0], bitmap.shape[1] * 4,
                       QImage.Format.Format_RGBA8888).copy()
        m = t.matrix
        p.save()
        p.setTransform(QTransform(m[0, 0], m[1, 0], m[0, 1], m[1, 1], m[0, 2], m[1, 2]), True)
        p.drawImage(QRectF(overlay.column - 0.5, overlay.row - 0.5, bitmap.shape[1], bitmap.shape[0]), image)
        p.restore()


def reference_lines(p: QPainter, t: ViewTransform, lines) -> None:
    pen = QPen(REFERENCE, 1.2)
    pen.setStyle(Qt.PenStyle.DashLine)
    p.setPen(pen)
    for (c0, r0), (c1, r1) in lines:
        p.drawLine(QLineF(_widget(t, c0, r0), _widget(t, c1, r1)))


def cursor(p: QPainter, t: ViewTransform, at: tuple[float, float]) -> None:
    centre = _widget(t, *at)
    p.setPen(QPen(CURSOR, 1.5))
    for dx, dy in ((1, 0), (-1, 0), (0, 1), (0, -1)):
        p.drawLine(QLineF(centre + QPointF(4 * dx, 4 * dy), centre + QPointF(14 * dx, 14 * dy)))


def annotations(p: QPainter, t: ViewTransform, items: list[Annotation], model, selected: str | None) -> None:
    renderer = model.renderer
    spacing = _spacing(renderer)
    unit = getattr(renderer, "unit", "") if renderer is not None else ""
    distance_unit = length_unit(renderer)
    p.setRenderHint(QPainter.RenderHint.Antialiasing, True)
    for a in items:
        colour = SELECTED if a.uid == selected else ANNOTATION
        draw_annotation(p, t, a, colour)
        m = measure(a, spacing, renderer, unit, distance_unit)
        if m.lines and a.kind != "text":
            anchor = _label_anchor(t, a)
            fm = p.fontMetrics()
            for i, line in enumerate(m.lines):
                shadowed_text(p, anchor.x(), anchor.y() + i * fm.height(), line, colour)
        if a.uid == selected:
            handles(p, t, a.points)
    p.setRenderHint(QPainter.RenderHint.Antialiasing, False)


UNIT_BY_KIND = {"patient": "mm", "detector": "mm at the detector", "ultrasound": "mm (ultrasound region)"}


def length_unit(renderer) -> str | None:
    """What a length on this frame is in, in words: mm, mm at the detector, ... or px without spacing."""
    info = getattr(renderer, "spacing", None) if renderer is not None else None
    if info is None:
        return None
    return UNIT_BY_KIND.get(info.kind, "px")


def _spacing(renderer):
    if renderer is None:
        return None
    info = getattr(renderer, "spacing", None)
    if info is not None and getattr(info, "kind", "") != "unknown" and getattr(info, "row_mm", None):
        return (info.row_mm, info.column_mm)
    if renderer.plane is not None:
        return renderer.plane.pixel_spacing
    return None


def _label_anchor(t: ViewTransform, a: Annotation) -> QPointF:
    points = [_widget(t, c, r) for c, r in a.points]
    right = max(points, key=lambda q: q.x())
    return right + QPointF(8, -4)


def draw_annotation(p: QPainter, t: ViewTransform, a: Annotation, colour: QColor) -> None:
    pen = QPen(colour, 1.5)
    p.setPen(pen)
    p.setBrush(Qt.BrushStyle.NoBrush)
    pts = [_widget(t, c, r) for c, r in a.points]
    kind = a.kind
    if kind == "length" and len(pts) >= 2:
        p.drawLine(QLineF(pts[0], pts[1]))
        _ticks(p, pts[0], pts[1])
    elif kind == "angle" and len(pts) >= 2:
        p.drawPolyline(QPolygonF(pts[:3]))
    elif kind == "cobb":
        for i in range(0, len(pts) - 1, 2):
            p.drawLine(QLineF(pts[i], pts[i + 1]))
    elif kind in ("rectangle", "ellipse") and len(pts) >= 2:
        corners = [_widget(t, c, r) for c, r in ((a.points[0][0], a.points[0][1]), (a.points[1][0], a.points[0][1]),
                                                  (a.points[1][0], a.points[1][1]), (a.points[0][0], a.points[1][1]))]
        if kind == "rectangle":
            p.drawPolygon(QPolygonF(corners))
        else:
            (c0, r0), (c1, r1) = a.points[0], a.points[1]
            cc, rc, ac, ar = (c0 + c1) / 2, (r0 + r1) / 2, abs(c1 - c0) / 2, abs(r1 - r0) / 2
            outline = [_widget(t, cc + ac * math.cos(u), rc + ar * math.sin(u)) for u in np.linspace(0, 2 * math.pi, 73)]
            p.drawPolygon(QPolygonF(outline))
    elif kind == "freehand" and len(pts) >= 2:
        p.drawPolygon(QPolygonF(pts)) if len(pts) > 2 else p.drawLine(QLineF(pts[0], pts[1]))
    elif kind == "arrow" and len(pts) >= 2:
        tip, tail = pts[0], pts[1]
        p.drawLine(QLineF(tail, tip))
        angle = math.atan2(tip.y() - tail.y(), tip.x() - tail.x())
        head = [tip, tip - QPointF(12 * math.cos(angle - 0.4), 12 * math.sin(angle - 0.4)),
                tip - QPointF(12 * math.cos(angle + 0.4), 12 * math.sin(angle + 0.4))]
        p.setBrush(QBrush(colour))
        p.drawPolygon(QPolygonF(head))
        p.setBrush(Qt.BrushStyle.NoBrush)
    elif kind == "text" and pts:
        shadowed_text(p, pts[0].x(), pts[0].y(), a.text or "…", colour)


def _ticks(p: QPainter, a: QPointF, b: QPointF) -> None:
    d = b - a
    n = math.hypot(d.x(), d.y())
    if n < 1:
        return
    normal = QPointF(-d.y() / n * 5, d.x() / n * 5)
    for q in (a, b):
        p.drawLine(QLineF(q - normal, q + normal))


def handles(p: QPainter, t: ViewTransform, points) -> None:
    p.setPen(QPen(SELECTED, 1))
    p.setBrush(QBrush(QColor(0, 0, 0, 160)))
    for c, r in points:
        q = _widget(t, c, r)
        p.drawRect(QRectF(q.x() - 4, q.y() - 4, 8, 8))
    p.setBrush(Qt.BrushStyle.NoBrush)


# --- corners, labels, scale bar ---------------------------------------------------------------


def font_for(widget) -> QFont:
    """The corners' font: a little larger in a big viewport, never below 7.5 points."""
    font = QFont(widget.font())
    font.setPointSizeF(max(7.5, min(11.0, widget.height() / 60)))
    return font


def corners(p: QPainter, widget, texts: dict[str, list[str]], t: ViewTransform | None) -> None:
    p.setFont(font_for(widget))
    metrics = p.fontMetrics()
    line = metrics.height()
    width, height = widget.width(), widget.height()
    for key, lines in texts.items():
        for i, text in enumerate(lines):
            x = MARGIN if key.endswith("left") else width - metrics.horizontalAdvance(text) - MARGIN
            if key.startswith("top"):
                y = MARGIN + line * (i + 1) - metrics.descent()
            else:
                y = height - MARGIN - line * (len(lines) - 1 - i) - metrics.descent()
            shadowed_text(p, x, y, text)
    if t is None:
        return
    labels = t.orientation_labels()
    if labels:   # at the edges of what is visible of the image, following rotation and flips
        rect = image_rect(t).intersected(QRectF(widget.rect()))
        cx, cy = rect.center().x(), rect.center().y()
        shadowed_text(p, rect.left() + MARGIN, cy, labels["left"])
        shadowed_text(p, rect.right() - metrics.horizontalAdvance(labels["right"]) - MARGIN, cy, labels["right"])
        shadowed_text(p, cx - metrics.horizontalAdvance(labels["top"]) / 2, rect.top() + line + MARGIN, labels["top"])
        shadowed_text(p, cx - metrics.horizontalAdvance(labels["bottom"]) / 2, rect.bottom() - MARGIN, labels["bottom"])
    renderer = widget.model.renderer
    spacing = _spacing(renderer)
    if spacing is not None:
        scale_bar(p, widget, t, spacing)
    note = spacing_note(renderer)
    if note:   # centred at the bottom edge, between the lower corners
        x = (width - metrics.horizontalAdvance(note)) / 2
        shadowed_text(p, max(MARGIN, x), height - MARGIN - metrics.descent(), note, WARNING)


def spacing_note(renderer) -> str:
    """The warning to show when distances cannot be trusted as millimetres in the patient."""
    if renderer is None:
        return ""
    info = getattr(renderer, "spacing", None)
    if info is not None:
        return getattr(info, "note", "") or ""
    if renderer.plane is None and renderer.patient_orientation is None:
        return "No pixel spacing: measurements are in pixels"
    return ""


NICE_MM = (1, 2, 5, 10, 20, 50, 100, 200, 500)


def scale_bar(p: QPainter, widget, t: ViewTransform, spacing: tuple[float, float]) -> None:
    """A bar of a round length in mm along the right edge, below the orientation label there (from 62 %
    of the height, at most a fifth of it long)."""
    px_per_mm = t.scale / spacing[1]   # widget pixels per mm along image columns (square mm on screen)
    if px_per_mm <= 0:
        return
    target = widget.height() / 5 / px_per_mm
    mm = max((n for n in NICE_MM if n <= target), default=0)
    length = mm * px_per_mm
    if not mm or length < 20:
        return
    x = widget.width() - MARGIN - 10
    y0 = widget.height() * 0.62
    p.setPen(QPen(TEXT, 1.5))
    p.drawLine(QLineF(x, y0, x, y0 + length))
    tenth = length / 10 if mm >= 10 else length / mm
    steps = int(round(length / tenth))
    for i in range(steps + 1):
        w = 8 if i in (0, steps) else 4
        p.drawLine(QLineF(x - w, y0 + i * tenth, x, y0 + i * tenth))
    label = f"{mm} mm"
    shadowed_text(p, x - p.fontMetrics().horizontalAdvance(label) - 12, y0 + length / 2 + p.fontMetrics().ascent() / 2,
                  label)


def error(p: QPainter, rect, reason: str) -> None:
    p.setPen(WARNING)
    p.drawText(QRectF(rect).adjusted(20, 20, -20, -20), Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap,
               f"Cannot show this image.\n{reason}\n\nThe other images are not affected. If a decoder plugin is "
               "named above, install it; otherwise ask the sender for an uncompressed or lossless copy.")


def hint(p: QPainter, rect, text: str) -> None:
    p.setPen(QColor(120, 120, 120))
    p.drawText(QRectF(rect), Qt.AlignmentFlag.AlignCenter, text)

