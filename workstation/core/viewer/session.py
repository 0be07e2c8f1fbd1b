"""One reading session (a viewer tab) without Qt: the studies open together (the current one first,
then priors), their display sets, the viewport layout, the links between viewports, the 3D cursor,
the annotations and the key images.

Linked scrolling goes by patient position, never by index: when the active viewport moves, every
other viewport of the same Frame of Reference (or of another study with a user-set offset) goes to
its frame nearest the active image's centre. `changed(aspects)` with studies, links, cursor, keys.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from workstation.core.events import Event
from workstation.core.loading import StudySets
from workstation.core.model.display_set import DisplaySet
from workstation.core.viewer.annotations import AnnotationStore
from workstation.core.viewer.layout import ViewerLayout
from workstation.core.viewer.sync import centre, nearest_frame, reference_line, to_image
from workstation.core.viewer.viewport import ViewportModel


@dataclass(frozen=True)
class Links:
    scroll: bool = True             # linked scrolling by position (same frame of reference, or offsets)
    reference_lines: bool = True
    window: bool = False            # linked window/level between viewports of one modality
    zoom: bool = False              # linked zoom and pan


@dataclass(frozen=True)
class Cursor:
    point: tuple[float, float, float]
    FrameOfReferenceUID: str


class ReadingSession:
    def __init__(self, layout: ViewerLayout | None = None) -> None:
        self.changed = Event()
        self.studies: list[StudySets] = []
        self.layout = layout or ViewerLayout()
        self.annotations = AnnotationStore()
        self.key_images: dict[str, frozenset[tuple[str, int]]] = {}
        self.links = Links()
        self.offsets: dict[tuple[str, str], np.ndarray] = {}
        self.cursor: Cursor | None = None
        self.protocol = ""          # the hanging protocol the session was arranged by
        self._syncing = False
        self._watched: set[int] = set()
        self.layout.changed.connect(self._on_layout)
        self._on_layout(frozenset({"cells"}))

    # --- studies ------------------------------------------------------------------------------

    @property
    def current(self) -> StudySets | None:
        return self.studies[0] if self.studies else None

    def study(self, study_uid: str) -> StudySets | None:
        return next((s for s in self.studies if s.StudyInstanceUID == study_uid), None)

    def add_study(self, sets: StudySets) -> None:
        """A study joins the session (the first is the current one; later ones are priors)."""
        if self.study(sets.StudyInstanceUID) is not None:
            self.update_study(sets)
            return
        self.studies.append(sets)
        self.changed.emit(frozenset({"studies"}))

    def update_study(self, sets: StudySets) -> None:
        """More of a study arrived: each viewport showing one of its display sets grows in place."""
        for i, old in enumerate(self.studies):
            if old.StudyInstanceUID == sets.StudyInstanceUID:
                self.studies[i] = sets
                break
        else:
            return
        for viewport in self.layout.viewports:
            ds = viewport.display_set
            if ds is None or ds.StudyInstanceUID != sets.StudyInstanceUID:
                continue
            grown = sets.find(ds.key) or _containing(sets, ds, viewport)
            if grown is not None and (grown.key != ds.key or len(grown) != len(ds) or grown.frames != ds.frames):
                viewport.grow(grown)
        self.changed.emit(frozenset({"studies"}))

    def display_sets(self) -> list[DisplaySet]:
        return [d for s in self.studies for d in s.display_sets]

    def find(self, study_uid: str, key: str) -> DisplaySet | None:
        sets = self.study(study_uid)
        return sets.find(key) if sets is not None else None

    def show(self, display_set: DisplaySet, cell: int | None = None) -> ViewportModel:
        """Put a display set in a viewport (the active one by default) and make it active."""
        cell = self.layout.active if cell is None else cell
        viewport = self.layout.viewports[cell]
        viewport.show(display_set)
        viewport.set_key_images(self.key_images.get(display_set.StudyInstanceUID, frozenset()))
        self.layout.activate(cell)
        return viewport

    def arrange(self, rows: int, columns: int, cells, protocol: str = "") -> None:
        """Lay the viewports out as a hanging protocol says: `cells` holds (study uid, display set key)
        or None per viewport, row by row."""
        self.layout.maximised = None
        self.layout.set_grid(rows, columns)
        for i, viewport in enumerate(self.layout.viewports):
            wanted = cells[i] if i < len(cells) else None
            ds = self.find(*wanted) if wanted is not None else None
            if ds is not None:
                viewport.show(ds)
                viewport.set_key_images(self.key_images.get(ds.StudyInstanceUID, frozenset()))
            else:
                viewport.show(None)
        self.layout.activate(0)
        self.protocol = protocol
        self.changed.emit(frozenset({"studies"}))

    # --- links --------------------------------------------------------------------------------

    def set_links(self, **options) -> None:
        self.links = replace(self.links, **options)
        self.changed.emit(frozenset({"links"}))

    def link_studies(self, a: ViewportModel, b: ViewportModel) -> bool:
        """Scroll two viewports of different frames of reference together from now on, keeping the
        offset between what they show now (the user first brings both to the same anatomy)."""
        pa, pb = _plane(a), _plane(b)
        fa, fb = _frame_of_reference(a), _frame_of_reference(b)
        if pa is None or pb is None or not fa or not fb or fa == fb:
            return False
        offset = centre(pb) - centre(pa)
        self.offsets[(fa, fb)] = offset
        self.offsets[(fb, fa)] = -offset
        self.changed.emit(frozenset({"links"}))
        return True

    def unlink_studies(self) -> None:
        self.offsets.clear()
        self.changed.emit(frozenset({"links"}))

    def _map(self, point: np.ndarray, source: str, target: str) -> np.ndarray | None:
        """A patient point of one frame of reference in another: the same one, or through an offset."""
        if not source or not target:
            return None
        if source == target:
            return point
        offset = self.offsets.get((source, target))
        return None if offset is None else point + offset

    def sync_from(self, source: ViewportModel) -> None:
        """Bring every other viewport to the frame nearest the source's image (by position)."""
        plane = _plane(source, current=True)
        if plane is None or not self.links.scroll:
            return
        point = centre(plane)
        fa = _frame_of_reference(source)
        self._syncing = True
        try:
            for viewport in self.layout.viewports:
                if viewport is source or viewport.display_set is None:
                    continue
                target = self._map(point, fa, _frame_of_reference(viewport))
                if target is None:
                    continue
                index = nearest_frame(viewport.frames, target, plane.normal)
                if index is not None:
                    viewport.set_index(index)
        finally:
            self._syncing = False

    def reference_lines(self, viewport: ViewportModel) -> list[tuple[tuple[float, float], tuple[float, float]]]:
        """Lines in `viewport`'s image (column, row) where the active image's plane cuts it."""
        active = self.layout.current
        if not self.links.reference_lines or viewport is active:
            return []
        source, target = _plane(active), _plane(viewport)
        if source is None or target is None:
            return []
        fa, fb = _frame_of_reference(active), _frame_of_reference(viewport)
        if not fa or fa != fb:
            return []
        line = reference_line(source, target)
        return [line] if line is not None else []

    # --- 3D cursor ----------------------------------------------------------------------------

    def set_cursor(self, source: ViewportModel, point: np.ndarray) -> None:
        """Shift-click: a patient point; every other viewport that can show it goes to its nearest frame."""
        self.move_cursor(point, _frame_of_reference(source), source)

    def move_cursor(self, point: np.ndarray, frame_of_reference: str, source: ViewportModel | None = None) -> None:
        """The 3D cursor at a patient point of a frame of reference (from a viewport, or MPR's crosshair)."""
        fa = frame_of_reference
        self.cursor = Cursor(tuple(float(v) for v in point), fa)
        self._syncing = True
        try:
            for viewport in self.layout.viewports:
                if viewport is source or viewport.display_set is None:
                    continue
                target = self._map(np.asarray(point, float), fa, _frame_of_reference(viewport))
                if target is None:
                    continue
                index = nearest_frame(viewport.frames, target)
                if index is not None:
                    viewport.set_index(index)
        finally:
            self._syncing = False
        self.changed.emit(frozenset({"cursor"}))

    def cursor_in(self, viewport: ViewportModel) -> tuple[float, float] | None:
        """The cursor in a viewport's image (column, row) when it lies within a slice of its plane."""
        if self.cursor is None:
            return None
        plane = _plane(viewport)
        if plane is None:
            return None
        point = self._map(np.asarray(self.cursor.point), self.cursor.FrameOfReferenceUID, _frame_of_reference(viewport))
        if point is None:
            return None
        thickness = viewport.shown.SliceThickness if viewport.shown is not None else None
        if abs(float((point - plane.position) @ plane.normal)) > max(thickness or 0.0, 1.0):
            return None
        return to_image(plane, point)

    # --- key images ---------------------------------------------------------------------------

    def set_key_images(self, study_uid: str, keys: frozenset[tuple[str, int]]) -> None:
        self.key_images[study_uid] = frozenset(keys)
        for viewport in self.layout.viewports:
            if viewport.display_set is not None and viewport.display_set.StudyInstanceUID == study_uid:
                viewport.set_key_images(self.key_images[study_uid])
        self.changed.emit(frozenset({"keys"}))

    def toggle_key_image(self, viewport: ViewportModel) -> bool | None:
        """Mark or unmark the frame the viewport is on as a key image; its new state, None without one."""
        ref, ds = viewport.current, viewport.display_set
        if ref is None or ds is None:
            return None
        keys = set(self.key_images.get(ds.StudyInstanceUID, frozenset()))
        item = (ref.SOPInstanceUID, ref.frame)
        marked = item not in keys
        keys.add(item) if marked else keys.discard(item)
        self.set_key_images(ds.StudyInstanceUID, frozenset(keys))
        return marked

    # --- following the viewports --------------------------------------------------------------

    def _on_layout(self, aspects) -> None:
        for viewport in self.layout.viewports:
            if id(viewport) not in self._watched:
                self._watched.add(id(viewport))
                viewport.changed.connect(lambda aspects, v=viewport: self._on_viewport(v, aspects))

    def _on_viewport(self, viewport: ViewportModel, aspects) -> None:
        if self._syncing or self.layout.index_of(viewport) is None:
            return
        if "frame" in aspects and viewport is self.layout.current and self.links.scroll:
            self.sync_from(viewport)
        if "window" in aspects and self.links.window and viewport is self.layout.current:
            self._share_window(viewport)
        if "view" in aspects and self.links.zoom and viewport is self.layout.current:
            self._share_view(viewport)

    def _share_window(self, source: ViewportModel) -> None:
        modality = source.display_set.series.Modality if source.display_set else ""
        self._syncing = True
        try:
            for viewport in self.layout.viewports:
                if viewport is not source and viewport.display_set is not None and \
                        viewport.display_set.series.Modality == modality:
                    viewport.set_window(source.window)
        finally:
            self._syncing = False

    def _share_view(self, source: ViewportModel) -> None:
        self._syncing = True
        try:
            for viewport in self.layout.viewports:
                if viewport is not source and viewport.display_set is not None:
                    viewport.set_view(replace(viewport.view, zoom=source.view.zoom, pan=source.view.pan,
                                              scale=source.view.scale))
        finally:
            self._syncing = False


def _plane(viewport: ViewportModel, current: bool = False):
    """The plane of the frame a viewport shows (or is on, with `current`)."""
    ref = viewport.current if current else (viewport.shown or viewport.current)
    return ref.plane if ref is not None else None


def _frame_of_reference(viewport: ViewportModel) -> str:
    ds = viewport.display_set
    return ds.FrameOfReferenceUID if ds is not None else ""


def _containing(sets: StudySets, old: DisplaySet, viewport: ViewportModel) -> DisplaySet | None:
    """The display set of a regrouped series that holds the frame a viewport is on."""
    ref = viewport.current
    candidates = sets.of_series(old.SeriesInstanceUID)
    if ref is not None:
        for ds in candidates:
            if ref in ds.frames:
                return ds
    return candidates[0] if candidates else None

