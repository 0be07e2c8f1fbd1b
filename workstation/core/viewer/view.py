"""What a viewport shows and how: its view state, and the one transform between image, widget and
patient coordinates that painting, tools, reference lines and print all use. Qt-free.

Image coordinates are (column, row) with pixel centres at whole numbers, so the image covers
[-0.5, columns - 0.5] x [-0.5, rows - 0.5]; widget coordinates are pixels from the top-left;
patient coordinates are LPS millimetres. A fitted view shows the whole image centred with square
millimetres (row and column spacing may differ); zoom multiplies the fitted scale, pan moves the
image's centre in widget pixels, and rotation (quarter turns clockwise) and flips apply on screen.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from workstation.core.dicom.geometry import ImagePlane, direction_label, opposite_direction
from workstation.core.pixels.voi import Window


@dataclass(frozen=True)
class ViewState:
    """A viewport's state: which frame, which window, and the view on it."""

    frame: int = 0
    window: Window | None = None     # None: the image's own VOI
    zoom: float = 1.0                # 1 = fitted to the viewport
    pan: tuple[float, float] = (0.0, 0.0)   # widget pixels the image centre is moved by
    rotation: int = 0                # quarter turns clockwise on screen: 0..3
    flip_horizontal: bool = False    # mirrored left-right on screen (after rotation)
    flip_vertical: bool = False
    invert: bool = False
    scale: float | None = None       # widget pixels per image column step; None: fitted x zoom
    interpolate: bool = True         # smooth when magnified or reduced; off shows the pixels as blocks

    def rotated(self, quarter_turns: int) -> ViewState:
        """Turn the picture on screen by quarter turns clockwise (negative: anticlockwise)."""
        if self.flip_horizontal != self.flip_vertical:   # under one mirror a turn goes the other way
            quarter_turns = -quarter_turns
        return replace(self, rotation=(self.rotation + quarter_turns) % 4)

    def flipped(self, horizontal: bool) -> ViewState:
        if horizontal:
            return replace(self, flip_horizontal=not self.flip_horizontal)
        return replace(self, flip_vertical=not self.flip_vertical)

    def zoomed(self, factor: float) -> ViewState:
        if self.scale is not None:
            return replace(self, scale=min(64.0, max(1 / 64, self.scale * factor)))
        return replace(self, zoom=min(64.0, max(1 / 64, self.zoom * factor)))

    def at_scale(self, scale: float | None) -> ViewState:
        """A fixed scale (1.0: one screen pixel per image pixel); None goes back to fitting."""
        return replace(self, scale=scale, zoom=1.0)

    def fitted(self) -> ViewState:
        """The whole image in the viewport, centred; rotation and flips stay."""
        return replace(self, zoom=1.0, scale=None, pan=(0.0, 0.0))

    def reset(self) -> ViewState:
        """Fitted, centred, upright, unmirrored; inversion and interpolation stay as they are."""
        return ViewState(invert=self.invert, interpolate=self.interpolate)

    def panned(self, dx: float, dy: float) -> ViewState:
        return replace(self, pan=(self.pan[0] + dx, self.pan[1] + dy))


@dataclass(frozen=True)
class ViewTransform:
    """The affine map image (column, row) -> widget (x, y) of one view, and its inverse.

    `matrix` is 2x3: widget = matrix[:, :2] @ (column, row) + matrix[:, 2].
    """

    matrix: np.ndarray
    columns: int
    rows: int
    plane: ImagePlane | None = None
    patient_orientation: tuple[str, str] | None = None   # (rows, columns) directions without a plane

    @classmethod
    def build(cls, columns: int, rows: int, widget_size: tuple[float, float], state: ViewState | None = None,
              pixel_spacing: tuple[float, float] | None = None, plane: ImagePlane | None = None,
              patient_orientation: tuple[str, str] | None = None) -> ViewTransform:
        """`pixel_spacing` (row spacing, column spacing) in mm; None or unknown: square pixels."""
        state = state or ViewState()
        spacing = pixel_spacing or (plane.pixel_spacing if plane is not None else None)
        if not spacing or spacing[0] <= 0 or spacing[1] <= 0:
            spacing = (1.0, 1.0)
        sx, sy = 1.0, spacing[0] / spacing[1]          # a row step is this many column steps tall
        turn = state.rotation % 4
        rot = np.array([[1, 0], [0, 1]], float)
        for _ in range(turn):                           # clockwise on screen (y grows downwards)
            rot = np.array([[0, -1], [1, 0]], float) @ rot
        flip = np.diag([-1.0 if state.flip_horizontal else 1.0, -1.0 if state.flip_vertical else 1.0])
        linear = flip @ rot @ np.diag([sx, sy])        # image offsets -> screen offsets, before scaling
        corners = np.array([[-0.5, -0.5], [columns - 0.5, -0.5], [-0.5, rows - 0.5], [columns - 0.5, rows - 0.5]])
        extent = corners @ linear.T
        width = extent[:, 0].max() - extent[:, 0].min()
        height = extent[:, 1].max() - extent[:, 1].min()
        ww, wh = widget_size
        if state.scale is not None:
            scale = state.scale
        else:
            scale = min(ww / width, wh / height) * state.zoom if width > 0 and height > 0 else 1.0
        linear = linear * scale
        centre_image = np.array([(columns - 1) / 2, (rows - 1) / 2])
        centre_widget = np.array([ww / 2 + state.pan[0], wh / 2 + state.pan[1]])
        offset = centre_widget - linear @ centre_image
        return cls(np.hstack([linear, offset[:, None]]), columns, rows, plane, patient_orientation)

    @property
    def scale(self) -> float:
        """Widget pixels per image column step."""
        return float(math.hypot(*self.matrix[:, 0]))

    def to_widget(self, column: float, row: float) -> tuple[float, float]:
        x, y = self.matrix[:, :2] @ (column, row) + self.matrix[:, 2]
        return float(x), float(y)

    def to_image(self, x: float, y: float) -> tuple[float, float]:
        column, row = np.linalg.solve(self.matrix[:, :2], np.array([x, y]) - self.matrix[:, 2])
        return float(column), float(row)

    def to_patient(self, x: float, y: float) -> np.ndarray | None:
        """LPS mm of a widget point on this frame's plane; None without geometry."""
        if self.plane is None:
            return None
        column, row = self.to_image(x, y)
        return self.plane.pixel_to_patient(row, column)

    def from_patient(self, point: np.ndarray) -> tuple[float, float, float] | None:
        """Widget (x, y) of a patient point projected on this plane, and its distance from it in mm."""
        if self.plane is None:
            return None
        row, column, distance = self.plane.patient_to_pixel(point)
        x, y = self.to_widget(column, row)
        return x, y, distance

    def pixel(self, x: float, y: float) -> tuple[int, int] | None:
        """(column, row) of the pixel under a widget point, None outside the image."""
        column, row = self.to_image(x, y)
        c, r = int(math.floor(column + 0.5)), int(math.floor(row + 0.5))
        return (c, r) if 0 <= c < self.columns and 0 <= r < self.rows else None

    def orientation_labels(self) -> dict[str, str]:
        """Patient directions at the widget's four edges, following rotation and flips: from the plane,
        else from Patient Orientation (projection images); {} without either."""
        inverse = np.linalg.inv(self.matrix[:, :2])   # widget offsets -> image offsets
        p, po = self.plane, self.patient_orientation
        if p is None and po is None:
            return {}

        def towards(dx: float, dy: float) -> str:
            dc, dr = inverse @ (dx, dy)
            if p is None:
                along_row = abs(dc) >= abs(dr)
                label = po[0] if along_row else po[1]
                return label if (dc if along_row else dr) > 0 else opposite_direction(label)
            return direction_label(dc * p.pixel_spacing[1] * p.row_direction + dr * p.pixel_spacing[0] * p.column_direction)

        return {"left": towards(-1, 0), "right": towards(1, 0), "top": towards(0, -1), "bottom": towards(0, 1)}
