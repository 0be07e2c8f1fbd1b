"""The viewport grid: one `ViewportWidget` per cell of the session's `ViewerLayout`, the active one
framed, a maximised one alone. Cells rebind when the grid changes or two viewports are swapped."""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QGridLayout, QWidget

from workstation.services.frame_service import FrameService
from workstation.ui.viewer.viewport import ViewportWidget

MAX_SIDE = 8


class ViewportGridWidget(QWidget):
    display_set_dropped = Signal(int, str, str)   # cell, StudyInstanceUID, display set key

    def __init__(self, frames: FrameService, session, tools, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.frames = frames
        self.session = session
        self.tools = tools
        self.cells: list[ViewportWidget] = []
        self.grid = QGridLayout(self)
        self.grid.setContentsMargins(0, 0, 0, 0)
        self.grid.setSpacing(2)
        self.setStyleSheet("background: #202020;")
        session.layout.changed.connect(self._on_layout)
        self._rebuild()

    @property
    def active(self) -> ViewportWidget:
        return self.cells[self.session.layout.active]

    def _on_layout(self, aspects) -> None:
        if aspects & {"grid", "cells", "maximised"}:
            self._rebuild()
        else:
            self._mark_active()

    def _rebuild(self) -> None:
        layout = self.session.layout
        n = len(layout.viewports)
        while len(self.cells) < n:
            cell = ViewportWidget(self.frames, layout.viewports[len(self.cells)], self.session, self.tools, self)
            cell.activated.connect(lambda c=cell: self._activate(c))
            cell.maximise_requested.connect(lambda c=cell: self._maximise(c))
            cell.display_set_dropped.connect(lambda study, key, c=cell: self._dropped(c, study, key))
            self.cells.append(cell)
        while len(self.cells) > n:
            cell = self.cells.pop()
            self.grid.removeWidget(cell)
            cell.hide()
            cell.deleteLater()
        for cell in self.cells:
            self.grid.removeWidget(cell)
        for i in range(MAX_SIDE):
            self.grid.setRowStretch(i, 0)
            self.grid.setColumnStretch(i, 0)
        visible = set(layout.visible())
        for i, cell in enumerate(self.cells):
            cell.bind(layout.viewports[i])
            if layout.maximised is not None:
                if i in visible:
                    self.grid.addWidget(cell, 0, 0)
            else:
                self.grid.addWidget(cell, i // layout.columns, i % layout.columns)
            cell.setVisible(i in visible)
        rows, columns = (1, 1) if layout.maximised is not None else (layout.rows, layout.columns)
        for i in range(rows):
            self.grid.setRowStretch(i, 1)
        for i in range(columns):
            self.grid.setColumnStretch(i, 1)
        self._mark_active()

    def _mark_active(self) -> None:
        active = self.session.layout.active
        several = len(self.cells) > 1
        for i, cell in enumerate(self.cells):
            cell.set_active(several and i == active)
            cell.update()

    def _activate(self, cell: ViewportWidget) -> None:
        index = self.cells.index(cell)
        self.session.layout.activate(index)

    def _maximise(self, cell: ViewportWidget) -> None:
        self.session.layout.toggle_maximised(self.cells.index(cell))

    def _dropped(self, cell: ViewportWidget, study_uid: str, key: str) -> None:
        self.display_set_dropped.emit(self.cells.index(cell), study_uid, key)

    def repaint_all(self) -> None:
        for cell in self.cells:
            cell.update()
