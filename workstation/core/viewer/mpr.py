"""The MPR layout's state without Qt or VTK: one volume, a crosshair point, each plane's turn, a slab.

An `MprSession` is a reading session whose three viewports show the axial, coronal and sagittal
planes through the crosshair as display sets of plane positions (virtual frames, each with its
ImagePlane), so the 2D viewport, its tools, corners, labels and measurements serve MPR unchanged.
Moving the crosshair (the 3D cursor: click or drag) brings every plane through the point;
scrolling a plane moves the point along that plane's normal; turning the crosshair in one plane
turns the two others about that plane's normal (oblique, and double oblique after a second turn).
`make_frame(ref)` says which plane a virtual frame is (`PlaneSpec` and slab), for the reslicer.
"""

from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass, replace

import numpy as np

from workstation.core.model.display_set import DisplaySet, FrameRef
from workstation.core.model.records import Series, Study
from workstation.core.pixels.mpr import (
    ORIENTATIONS,
    PlaneSpec,
    Slab,
    plane_geometry,
    rotation_matrix,
    scroll_positions,
    scroll_step,
    volume_centre,
)
from workstation.core.pixels.volume import Volume
from workstation.core.viewer.layout import ViewerLayout
from workstation.core.viewer.session import Cursor, Links, ReadingSession
from workstation.core.viewer.sync import reference_line

_TOKENS = itertools.count(1)
PREFIX = "mpr:"


@dataclass(frozen=True)
class PlaneFrames:
    """One generation of a plane's virtual frames: its spec (without position) and where each sits."""

    spec: PlaneSpec
    positions: tuple[float, ...]
    slab: Slab | None


class MprSession(ReadingSession):
    def __init__(self, volume: Volume, series: Series, study: Study | None, frame_of_reference: str = "") -> None:
        super().__init__(ViewerLayout(1, 3))
        self.links = Links(scroll=False, reference_lines=True)
        self.volume = volume
        self.series = series
        self.source_study = study
        self.frame_of_reference = frame_of_reference
        self.token = next(_TOKENS)
        self.point = volume_centre(volume)
        self.rotations = {o: np.eye(3) for o in ORIENTATIONS}
        self.slab: Slab | None = None
        self._generation = dict.fromkeys(ORIENTATIONS, 0)
        self._frames: dict[str, PlaneFrames] = {}   # "orientation:generation" -> its frames (read by workers)
        self._lock = threading.Lock()
        self._moving = False
        self.cursor = Cursor(tuple(self.point), frame_of_reference)
        self._moving = True   # showing the planes is not the reader scrolling them
        for orientation, viewport in zip(ORIENTATIONS, self.layout.viewports, strict=True):
            viewport.show(self._display_set(orientation))
            viewport.set_index(self._nearest(orientation))
        self._moving = False

    # --- the planes -----------------------------------------------------------------------------

    def spec(self, orientation: str) -> PlaneSpec:
        matrix = self.rotations[orientation]
        return PlaneSpec(orientation, tuple(float(v) for v in self.point), tuple(float(v) for v in matrix.reshape(-1)))

    def viewport_of(self, orientation: str):
        return self.layout.viewports[ORIENTATIONS.index(orientation)]

    def orientation_of(self, viewport) -> str | None:
        index = self.layout.index_of(viewport)
        return ORIENTATIONS[index] if index is not None and index < len(ORIENTATIONS) else None

    def _display_set(self, orientation: str) -> DisplaySet:
        spec = self.spec(orientation)
        positions = tuple(float(p) for p in scroll_positions(self.volume, spec))
        generation = self._generation[orientation]
        key = f"{orientation}:{generation}"
        with self._lock:
            self._frames[key] = PlaneFrames(spec, positions, self.slab)
        path = f"{PREFIX}{self.token}:{key}"
        thickness = self.slab.thickness if self.slab is not None and self.slab.thickness else scroll_step(self.volume, spec)
        frames = tuple(
            FrameRef(path, k, f"{self.series.SeriesInstanceUID}.mpr.{orientation}.{generation}.{k}",
                     plane_geometry(self.volume, spec.at(p)), k + 1, thickness)
            for k, p in enumerate(positions))
        name = orientation if not spec.oblique else f"oblique {orientation}"
        series = replace(self.series, SeriesInstanceUID=f"{self.series.SeriesInstanceUID}.mpr.{orientation}",
                         SeriesDescription=" ".join(t for t in (self.series.SeriesDescription, f"({name} MPR)") if t))
        return DisplaySet(series, self.source_study, frames, part=f"mpr-{orientation}", label=f"{name} MPR",
                          orientation="oblique" if spec.oblique else orientation,
                          FrameOfReferenceUID=self.frame_of_reference)

    def make_frame(self, ref: FrameRef) -> tuple[PlaneSpec, Slab | None]:
        """Which plane a virtual frame is: its spec at the frame's position, and the slab (any thread)."""
        if not ref.path.startswith(f"{PREFIX}{self.token}:"):
            raise LookupError(f"{ref.path} is not a plane of this MPR")
        key = ref.path.split(":", 2)[2]
        with self._lock:
            frames = self._frames[key]
        return frames.spec.at(frames.positions[ref.frame]), frames.slab

    def _nearest(self, orientation: str) -> int:
        spec = self.spec(orientation)
        positions = np.array([f.plane.position @ spec.normal for f in self.viewport_of(orientation).frames])
        return int(np.argmin(np.abs(positions - float(self.point @ spec.normal)))) if len(positions) else 0

    def _follow(self, skip=None) -> None:
        """Every plane (but `skip`) to the position nearest the point; the crosshair repainted."""
        self._moving = True
        try:
            for orientation in ORIENTATIONS:
                viewport = self.viewport_of(orientation)
                if viewport is not skip:
                    viewport.set_index(self._nearest(orientation))
        finally:
            self._moving = False
        self.cursor = Cursor(tuple(float(v) for v in self.point), self.frame_of_reference)
        self.changed.emit(frozenset({"cursor"}))

    # --- what the reader does -------------------------------------------------------------------

    def set_cursor(self, source, point: np.ndarray) -> None:
        """A click or drag of the crosshair: every plane through the point."""
        self.point = np.asarray(point, float)
        self._follow()

    def rotate(self, viewport, degrees: float) -> None:
        """Turn the two other planes about this plane's viewing axis (its row x column: into the
        screen when the view is not mirrored, so positive degrees look clockwise) through the point."""
        orientation = self.orientation_of(viewport)
        if orientation is None:
            return
        spec = self.spec(orientation)
        axis = np.cross(spec.row_direction, spec.column_direction)
        turn = rotation_matrix(axis, degrees)
        for other in ORIENTATIONS:
            if other != orientation:
                self.rotations[other] = turn @ self.rotations[other]
                self._regenerate(other)
        self._follow()

    def set_slab(self, slab: Slab | None) -> None:
        self.slab = slab if slab is not None and slab.thickness > 0 else None
        for orientation in ORIENTATIONS:
            self._regenerate(orientation)
        self._follow()
        self.changed.emit(frozenset({"slab"}))

    def reset(self) -> None:
        """The crosshair back at the volume's centre, every plane straight."""
        self.point = volume_centre(self.volume)
        for orientation in ORIENTATIONS:
            self.rotations[orientation] = np.eye(3)
            self._regenerate(orientation)
        self._follow()

    def _regenerate(self, orientation: str) -> None:
        self._generation[orientation] += 1
        viewport = self.viewport_of(orientation)
        moving, self._moving = self._moving, True
        try:
            viewport.grow(self._display_set(orientation))
        finally:
            self._moving = moving

    # --- following the viewports ----------------------------------------------------------------

    def _on_viewport(self, viewport, aspects) -> None:
        if "frame" in aspects and not self._moving and self.layout.index_of(viewport) is not None:
            orientation = self.orientation_of(viewport)
            current = viewport.current
            if orientation is not None and current is not None and current.plane is not None:
                normal = self.spec(orientation).normal
                offset = float(current.plane.position @ normal) - float(self.point @ normal)
                if abs(offset) > 1e-6:   # scrolled: the point moves along this plane's normal
                    self.point = self.point + offset * normal
                    self._follow(skip=viewport)
            return
        super()._on_viewport(viewport, aspects)

    def reference_lines(self, viewport):
        """The crosshair in a plane: where each other plane cuts it."""
        target = viewport.current.plane if viewport.current is not None else None
        if target is None or not self.links.reference_lines:
            return []
        lines = []
        for other in self.layout.viewports:
            if other is viewport or other.current is None or other.current.plane is None:
                continue
            line = reference_line(other.current.plane, target)
            if line is not None:
                lines.append(line)
        return lines

    def cursor_in(self, viewport):
        plane = viewport.current.plane if viewport.current is not None else None
        if plane is None:
            return None
        row, column, distance = plane.patient_to_pixel(self.point)
        orientation = self.orientation_of(viewport)
        step = scroll_step(self.volume, self.spec(orientation)) if orientation is not None else 1.0
        return (column, row) if abs(distance) <= step else None

