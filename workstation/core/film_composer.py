"""The film composer's model (no Qt): the images to print in box order, the printer and the film's
options, and the films they make (`plans`: what the preview draws and the job sends). Images come
from the viewer as it shows them (window, rotation, flips), from a frame reference and a view."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace

from workstation.core.events import Event
from workstation.core.model.display_set import FrameRef
from workstation.core.model.printer import Printer
from workstation.core.pixels.voi import Window
from workstation.core.printing import FilmOptions, PlannedFilm, PrintItem, planned_films


def item_of(ref: FrameRef, window: Window | None = None, rotation: int = 0, flip_horizontal: bool = False,
            flip_vertical: bool = False, series: str = "", invert: bool = False) -> PrintItem:
    """A frame as a viewport shows it (a vertical flip after turning is a half turn more and a
    horizontal flip); `series` names its series in the composer's list."""
    if flip_vertical:
        rotation, flip_horizontal = rotation + 2, not flip_horizontal
    number = f"Im {ref.InstanceNumber}" if ref.InstanceNumber is not None else ref.SOPInstanceUID[-8:]
    label = f"{series} {number}".strip() + (f" frame {ref.frame + 1}" if ref.frame else "")
    return PrintItem(ref.path, ref.frame, window, rotation % 4, flip_horizontal, label, invert)


def every_nth(frames: Sequence[FrameRef], first: int, last: int, step: int, window: Window | None = None,
              rotation: int = 0, flip_horizontal: bool = False, flip_vertical: bool = False,
              series: str = "", invert: bool = False) -> list[PrintItem]:
    """Frames first..last (1-based, both included) every `step`th, as print items."""
    first, last = max(1, first), min(len(frames), last)
    return [item_of(f, window, rotation, flip_horizontal, flip_vertical, series, invert)
            for f in frames[first - 1:last:max(1, step)]]


class FilmComposer:
    """`changed` after every change; `plans()` lays the items out on films."""

    def __init__(self, printer: Printer | None = None, options: FilmOptions | None = None) -> None:
        self.printer = printer
        self.options = options or FilmOptions(auto=True)
        self.items: list[PrintItem] = []
        self.changed = Event()

    def set_printer(self, printer: Printer | None) -> None:
        self.printer = printer
        if printer is not None:   # a size or format this printer does not take goes back to its own
            values = {"medium": "", "orientation": "", "copies": 0}   # the new printer's defaults
            if self.options.film_size and self.options.film_size not in printer.film_sizes:
                values["film_size"] = ""
            if self.options.display_format and self.options.display_format not in printer.formats:
                values["display_format"] = ""
            if values:
                self.options = replace(self.options, **values)
        self.changed.emit()

    def set_options(self, **values) -> None:
        self.options = replace(self.options, **values)
        self.changed.emit()

    def add(self, items: Iterable[PrintItem]) -> None:
        self.items.extend(items)
        self.changed.emit()

    def remove(self, indices: Iterable[int]) -> None:
        gone = set(indices)
        self.items = [item for i, item in enumerate(self.items) if i not in gone]
        self.changed.emit()

    def move(self, source: int, destination: int) -> None:
        """The item at `source` to `destination` (the boxes after it move along)."""
        if 0 <= source < len(self.items):
            item = self.items.pop(source)
            self.items.insert(max(0, min(destination, len(self.items))), item)
            self.changed.emit()

    def reorder(self, order: Sequence[int]) -> None:
        """The items in a new order (a permutation of their indices, as a list view's drag leaves it)."""
        if sorted(order) == list(range(len(self.items))):
            self.items = [self.items[i] for i in order]
            self.changed.emit()

    def clear(self) -> None:
        self.items = []
        self.changed.emit()

    def plans(self) -> list[PlannedFilm]:
        if self.printer is None or not self.items:
            return []
        return planned_films(self.printer, self.items, self.options)
