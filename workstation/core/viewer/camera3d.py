"""The 3D view's camera as data (no VTK, no Qt): a parallel projection looking at a focal point in
patient space (LPS mm) along a direction, with a view-up and a half height in mm. The widget turns,
zooms and pans it on the GUI thread and labels the screen's edges from it; the render thread hands
a copy to VTK. Views from the six sides are the radiologists': from the front the patient's right
is on the screen's left, from the feet as an axial slice is seen."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from workstation.core.dicom.geometry import direction_label

# (direction of projection, view up) in LPS
VIEWS: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    "anterior": ((0, 1, 0), (0, 0, 1)),
    "posterior": ((0, -1, 0), (0, 0, 1)),
    "left": ((-1, 0, 0), (0, 0, 1)),
    "right": ((1, 0, 0), (0, 0, 1)),
    "superior": ((0, 0, -1), (0, -1, 0)),
    "inferior": ((0, 0, 1), (0, -1, 0)),
}


def _unit(v) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v)


def _turn(v: np.ndarray, axis: np.ndarray, degrees: float) -> np.ndarray:
    """v turned about a unit axis (Rodrigues)."""
    a = np.radians(degrees)
    return v * np.cos(a) + np.cross(axis, v) * np.sin(a) + axis * (axis @ v) * (1 - np.cos(a))


@dataclass(frozen=True)
class Camera3D:
    focal_point: tuple[float, float, float]
    direction: tuple[float, float, float]      # unit, from the eye into the scene
    view_up: tuple[float, float, float]        # unit, perpendicular to direction
    half_height: float                          # mm from the screen's centre to its top edge

    @classmethod
    def looking_at(cls, corners: np.ndarray, view: str = "anterior", aspect: float = 1.0) -> Camera3D:
        """From one side of the patient at the centre of the corners (N x 3 LPS), all of them in view
        on a screen `aspect` (width / height) wide."""
        direction, up = (_unit(v) for v in VIEWS[view])
        return cls((0.0, 0.0, 0.0), tuple(direction), tuple(up), 1.0).fitted(corners, aspect)

    def fitted(self, corners: np.ndarray, aspect: float = 1.0) -> Camera3D:
        """Looking the same way at the centre of the corners, all of them in view."""
        corners = np.asarray(corners, dtype=np.float64)
        centre = (corners.min(axis=0) + corners.max(axis=0)) / 2
        half_width = float(np.abs((corners - centre) @ self.right).max())
        half_height = float(np.abs((corners - centre) @ np.asarray(self.view_up)).max())
        return replace(self, focal_point=tuple(centre),
                       half_height=max(half_height, half_width / max(aspect, 1e-6), 1.0) * 1.05)

    @property
    def right(self) -> np.ndarray:
        return _unit(np.cross(self.direction, self.view_up))

    @property
    def down(self) -> np.ndarray:
        return -np.asarray(self.view_up, dtype=np.float64)

    def rotated(self, right_degrees: float, up_degrees: float) -> Camera3D:
        """As a drag turns the volume: to the right about the screen's vertical, upwards about its
        horizontal (the eye moves the other way round the focal point)."""
        direction = np.asarray(self.direction, dtype=np.float64)
        up = np.asarray(self.view_up, dtype=np.float64)
        direction = _turn(direction, up, -right_degrees)
        right = _unit(np.cross(direction, up))
        direction = _turn(direction, right, up_degrees)
        up = _turn(up, right, up_degrees)
        up = _unit(up - direction * (up @ direction))      # kept perpendicular
        return replace(self, direction=tuple(_unit(direction)), view_up=tuple(up))

    def zoomed(self, factor: float) -> Camera3D:
        return replace(self, half_height=self.half_height / max(factor, 1e-3))

    def panned(self, dx: float, dy: float, height: int) -> Camera3D:
        """The volume moved by screen pixels (right, down) on a screen `height` pixels high."""
        mm = 2.0 * self.half_height / max(height, 1)
        shift = -(self.right * dx + self.down * dy) * mm
        return replace(self, focal_point=tuple(np.asarray(self.focal_point) + shift))

    def to_screen(self, point, width: int, height: int) -> tuple[float, float]:
        """Where a patient point is drawn: pixel column and row from the top left."""
        mm = 2.0 * self.half_height / max(height, 1)
        d = np.asarray(point, dtype=np.float64) - np.asarray(self.focal_point)
        return width / 2 + float(d @ self.right) / mm, height / 2 + float(d @ self.down) / mm

    def to_patient(self, x: float, y: float, width: int, height: int) -> np.ndarray:
        """The patient point (LPS mm) in the focal plane drawn at screen position (x, y); a pixel's
        centre is at (column + 0.5, row + 0.5)."""
        mm = 2.0 * self.half_height / max(height, 1)
        return (np.asarray(self.focal_point, dtype=np.float64)
                + self.right * (x - width / 2) * mm + self.down * (y - height / 2) * mm)

    def orientation_labels(self) -> dict[str, str]:
        """The patient direction at each screen edge, as the 2D viewports label theirs."""
        right, down = self.right, self.down
        return {"left": direction_label(-right), "right": direction_label(right),
                "top": direction_label(-down), "bottom": direction_label(down)}
