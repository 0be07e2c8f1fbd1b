"""One viewport's state without Qt: the display set it shows, the frame, the window, the view, cine.

The widget observes `changed` (a set of aspects: display_set, frame, image, window, view, error,
cine) and paints; it asks the frame service for `wanted()` and hands back what arrives. A decoded
frame is taken only when it is the frame the viewport is on now (`frame_arrived` checks the
reference), so a late answer never puts another image, or another study's, under these corners.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from workstation.core.events import Event
from workstation.core.model.display_set import DisplaySet, FrameRef
from workstation.core.pixels.render import FrameRenderer
from workstation.core.pixels.voi import Window
from workstation.core.viewer.overlay import CornerLayout, display_value, load_layout
from workstation.core.viewer.view import ViewState, ViewTransform

DEFAULT_FPS = 15.0


@dataclass(frozen=True)
class Cine:
    playing: bool = False
    fps: float = DEFAULT_FPS
    started: float = 0.0         # clock time the loop (re)started at
    first: int = 0               # frame shown at `started`


class ViewportModel:
    def __init__(self, layouts=load_layout) -> None:
        self.changed = Event()
        self.display_set: DisplaySet | None = None
        self.frames: tuple[FrameRef, ...] = ()   # what scrolls: every frame, or only the key images
        self.index = 0
        self.shown: FrameRef | None = None       # the frame `renderer` belongs to
        self.renderer: FrameRenderer | None = None
        self.error = ""
        self.window: Window | None = None        # the user's window; None: the series' own
        self.series_window: Window | None = None # the first image's window, kept for the whole series
        self.view = ViewState()
        self.key_filter: frozenset[tuple[str, int]] | None = None
        self.cine = Cine()
        self.arriving: tuple[int, int] | None = None   # (here, expected) while the series still arrives
        self.key_images: frozenset[tuple[str, int]] = frozenset()
        self._layouts = layouts
        self._layout: CornerLayout | None = None

    # --- what to show -------------------------------------------------------------------------

    def show(self, display_set: DisplaySet | None, index: int = 0, view: ViewState | None = None) -> None:
        """Show another display set (or nothing): its own window, a fitted upright view unless `view` is
        given (smoothing stays as the user set it)."""
        self.display_set = display_set
        self.window = None
        self.series_window = None
        self.renderer = None
        self.shown = None
        self.cine = Cine(fps=(display_set.frame_rate if display_set and display_set.frame_rate else DEFAULT_FPS))
        self.view = view if view is not None else ViewState(interpolate=self.view.interpolate)
        self._layout = None
        self.frames = self._filtered()
        self.error = "" if display_set is None or len(display_set) else "this series has no images"
        self.index = max(0, min(index, len(self.frames) - 1))
        self.changed.emit(frozenset({"display_set", "frame", "image", "window", "view", "cine"}))

    def grow(self, display_set: DisplaySet) -> None:
        """The same display set with more (or re-ordered) frames: stay on the frame shown."""
        current = self.current
        self.display_set = display_set
        self.frames = self._filtered()
        if current is not None and current in self.frames:
            self.index = self.frames.index(current)
        else:
            self.index = max(0, min(self.index, len(self.frames) - 1))
        if self.error == "this series has no images" and self.frames:
            self.error = ""
        self.changed.emit(frozenset({"display_set", "frame"}))

    def set_key_filter(self, keys: frozenset[tuple[str, int]] | None) -> None:
        """Scroll only through these (SOP Instance UID, frame) pairs; None: every frame."""
        current = self.current
        self.key_filter = keys
        self.frames = self._filtered()
        self.index = self.frames.index(current) if current in self.frames else 0
        self.changed.emit(frozenset({"frame", "display_set"}))

    def set_key_images(self, keys: frozenset[tuple[str, int]]) -> None:
        self.key_images = keys
        if self.key_filter is not None:
            self.set_key_filter(keys)
        else:
            self.changed.emit(frozenset({"frame"}))

    def _filtered(self) -> tuple[FrameRef, ...]:
        if self.display_set is None:
            return ()
        if self.key_filter is None:
            return self.display_set.frames
        return tuple(f for f in self.display_set.frames if (f.SOPInstanceUID, f.frame) in self.key_filter)

    @property
    def current(self) -> FrameRef | None:
        return self.frames[self.index] if 0 <= self.index < len(self.frames) else None

    def set_index(self, index: int) -> None:
        if not self.frames:
            return
        index = max(0, min(int(index), len(self.frames) - 1))
        if index != self.index:
            self.index = index
            self.changed.emit(frozenset({"frame"}))

    def scroll(self, delta: int) -> None:
        self.set_index(self.index + delta)

    def wanted(self) -> FrameRef | None:
        """The frame to ask the frame service for: the current one, unless it is already on screen."""
        current = self.current
        return current if current is not None and current != self.shown else None

    @property
    def loading(self) -> bool:
        """The frame scrolled to is not decoded yet: the screen still shows `shown`, named as such."""
        return self.current is not None and self.current != self.shown and not self.error

    # --- frames arriving ----------------------------------------------------------------------

    def frame_arrived(self, ref: FrameRef, renderer: FrameRenderer) -> bool:
        """Take a decoded frame if it is the one this viewport is on; False (ignored) otherwise."""
        if ref != self.current:
            return False
        if self.series_window is None and renderer.windowed:
            # A series keeps one window while scrolling (MR files often carry a window per image).
            self.series_window = renderer.default_window
        self.renderer = renderer
        self.shown = ref
        self.error = ""
        self.changed.emit(frozenset({"image"}))
        return True

    def frame_failed(self, ref: FrameRef, reason: str) -> None:
        if ref != self.current:
            return
        self.renderer = None
        self.shown = ref
        self.error = reason
        self.changed.emit(frozenset({"image", "error"}))

    # --- window and view ----------------------------------------------------------------------

    def shown_window(self) -> Window | None:
        """The window on screen: the user's, else the series' own; None for a VOI LUT or colour frame."""
        if self.renderer is None or not self.renderer.windowed:
            return None if self.renderer is not None else self.window
        return self.window or self.series_window or self.renderer.default_window

    def set_window(self, window: Window | None) -> None:
        """A window for every frame from now on; None goes back to the series' own (its first image's)."""
        self.window = window
        self.changed.emit(frozenset({"window"}))

    def set_view(self, view: ViewState) -> None:
        if view != self.view:
            self.view = view
            self.changed.emit(frozenset({"view"}))

    def zoom(self, factor: float) -> None:
        self.set_view(self.view.zoomed(factor))

    def pan(self, dx: float, dy: float) -> None:
        self.set_view(self.view.panned(dx, dy))

    def rotate(self, quarter_turns: int) -> None:
        self.set_view(self.view.rotated(quarter_turns))

    def flip(self, horizontal: bool) -> None:
        self.set_view(self.view.flipped(horizontal))

    def toggle_invert(self) -> None:
        self.set_view(replace(self.view, invert=not self.view.invert))

    def toggle_interpolation(self) -> None:
        self.set_view(replace(self.view, interpolate=not self.view.interpolate))

    def reset_view(self) -> None:
        self.set_view(self.view.reset())

    def render(self) -> np.ndarray | None:
        """The 8-bit picture of the frame on screen with the window and inversion applied."""
        if self.renderer is None:
            return None
        buffer = self.renderer.render(self.shown_window())
        if self.view.invert:
            buffer = np.subtract(255, buffer, dtype=np.uint8)
        return buffer

    def transform(self, size: tuple[float, float]) -> ViewTransform | None:
        """Image <-> widget <-> patient for the frame on screen, in a widget of `size`."""
        r = self.renderer
        if r is None:
            return None
        rows, columns = r.shape[:2]
        return ViewTransform.build(columns, rows, size, self.view, plane=r.plane,
                                   patient_orientation=r.patient_orientation)

    # --- cine ---------------------------------------------------------------------------------

    def play(self, now: float, fps: float | None = None) -> None:
        self.cine = Cine(True, fps or self.cine.fps, now, self.index)
        self.changed.emit(frozenset({"cine"}))

    def stop(self) -> None:
        if self.cine.playing:
            self.cine = replace(self.cine, playing=False)
            self.changed.emit(frozenset({"cine"}))

    def set_fps(self, fps: float, now: float) -> None:
        fps = min(120.0, max(0.5, float(fps)))
        self.cine = Cine(self.cine.playing, fps, now, self.index)
        self.changed.emit(frozenset({"cine"}))

    def cine_tick(self, now: float) -> None:
        """Move to the frame the loop should be on at clock time `now` (frames are dropped, not slowed)."""
        if not self.cine.playing or len(self.frames) < 2:
            return
        elapsed = max(0.0, now - self.cine.started)
        self.set_index((self.cine.first + math.floor(elapsed * self.cine.fps)) % len(self.frames))

    # --- corner texts -------------------------------------------------------------------------

    def layout(self) -> CornerLayout:
        if self._layout is None:
            modality = self.display_set.series.Modality if self.display_set is not None else ""
            self._layout = self._layouts(modality)
        return self._layout

    def corner_values(self, transform: ViewTransform | None = None) -> dict[str, str]:
        """The fields the corners are filled from, for the frame on screen (not the one still loading)."""
        ds = self.display_set
        if ds is None:
            return {}
        values: dict[str, str] = {}
        study, series = ds.study, ds.series
        if study is not None:
            for keyword in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
                            "StudyDescription", "AccessionNumber", "ReferringPhysicianName", "StudyID"):
                values[keyword] = display_value(keyword, getattr(study, keyword))
        for keyword in ("Modality", "SeriesDescription", "BodyPartExamined", "SeriesDate", "SeriesTime"):
            values[keyword] = display_value(keyword, getattr(series, keyword))
        values["SeriesNumber"] = "" if series.SeriesNumber is None else str(series.SeriesNumber)
        values["part"] = ds.label
        shown = self.shown if self.shown is not None else self.current
        r = self.renderer
        if r is not None:
            for keyword, value in r.attributes.items():
                if value not in (None, "") and not values.get(keyword):
                    values[keyword] = display_value(keyword, value)
        if shown is not None and shown in self.frames:
            values["image"] = str(self.frames.index(shown) + 1)
            values["images"] = str(len(self.frames))
            if shown.location is not None:
                values["location"] = f"{shown.location:.2f}"
            if shown.SliceThickness:
                values["thickness"] = f"{shown.SliceThickness:.3g}"
            if (shown.SOPInstanceUID, shown.frame) in self.key_images:
                values["key"] = "KEY IMAGE"
        if r is not None and r.number_of_frames > 1:
            values["frame"] = str(r.frame + 1)
            values["frames"] = str(r.number_of_frames)
        if self.loading:
            values["loading"] = f"Loading image {self.index + 1}…"
        if self.arriving is not None:
            here, expected = self.arriving
            values["arriving"] = f"(arriving: {here} of {expected})"
        if r is not None and not r.is_color:
            shown_window = self.shown_window()
            values["window"] = "VOI LUT" if shown_window is None else (
                f"W {format_level(shown_window.width)} L {format_level(shown_window.center)}")
        if transform is not None:
            values["zoom"] = f"{transform.scale * 100:.0f}%"
        turns = [f"{90 * self.view.rotation}°"] if self.view.rotation else []
        if self.view.flip_horizontal:
            turns.append("flipped H")
        if self.view.flip_vertical:
            turns.append("flipped V")
        if self.view.invert:
            turns.append("inverted")
        values["rotation"] = ", ".join(turns)
        return values

    def corner_texts(self, transform: ViewTransform | None = None) -> dict[str, list[str]]:
        return self.layout().texts(self.corner_values(transform))


def format_level(value: float) -> str:
    """Window values as a reader wants them: whole numbers for CT/MR ranges, a few digits for small ones."""
    if abs(value) >= 20:
        return f"{value:.0f}"
    return f"{value:.3g}"
