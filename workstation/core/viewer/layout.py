"""The viewport grid without Qt: rows x columns of viewport models, the active one, the maximised one.

Changing the grid keeps what the first viewports show; swapping two cells moves their whole state
(display set, frame, window, view). `changed(aspects)` with grid, active, maximised, cells.
"""

from __future__ import annotations

from collections.abc import Callable

from workstation.core.events import Event
from workstation.core.viewer.viewport import ViewportModel

MAX_CELLS = 64


class ViewerLayout:
    def __init__(self, rows: int = 1, columns: int = 1, make: Callable[[], ViewportModel] = ViewportModel) -> None:
        self.changed = Event()
        self._make = make
        self.rows, self.columns = 1, 1
        self.viewports: list[ViewportModel] = [make()]
        self.active = 0
        self.maximised: int | None = None
        self.set_grid(rows, columns)

    def __len__(self) -> int:
        return self.rows * self.columns

    def set_grid(self, rows: int, columns: int) -> None:
        rows, columns = max(1, int(rows)), max(1, int(columns))
        if rows * columns > MAX_CELLS:
            raise ValueError(f"a layout has at most {MAX_CELLS} viewports")
        if (rows, columns) == (self.rows, self.columns) and len(self.viewports) == rows * columns:
            return
        n = rows * columns
        while len(self.viewports) < n:
            self.viewports.append(self._make())
        dropped = self.viewports[n:]
        del self.viewports[n:]
        for viewport in dropped:
            viewport.show(None)   # let go of its frames
        self.rows, self.columns = rows, columns
        self.active = min(self.active, n - 1)
        if self.maximised is not None and self.maximised >= n:
            self.maximised = None
        self.changed.emit(frozenset({"grid", "cells", "active", "maximised"}))

    @property
    def current(self) -> ViewportModel:
        return self.viewports[self.active]

    def activate(self, index: int) -> None:
        if 0 <= index < len(self.viewports) and index != self.active:
            self.active = index
            self.changed.emit(frozenset({"active"}))

    def toggle_maximised(self, index: int | None = None) -> None:
        """Double click: this viewport alone fills the grid, and back."""
        index = self.active if index is None else index
        self.maximised = None if self.maximised == index else index
        self.activate(index)
        self.changed.emit(frozenset({"maximised"}))

    def visible(self) -> list[int]:
        return [self.maximised] if self.maximised is not None else list(range(len(self.viewports)))

    def swap(self, a: int, b: int) -> None:
        if a == b:
            return
        self.viewports[a], self.viewports[b] = self.viewports[b], self.viewports[a]
        if self.active in (a, b):
            self.active = b if self.active == a else a
        self.changed.emit(frozenset({"cells", "active"}))

    def index_of(self, viewport: ViewportModel) -> int | None:
        for i, v in enumerate(self.viewports):
            if v is viewport:
                return i
        return None
