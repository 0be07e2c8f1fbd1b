"""The viewer page: a viewport with a slice scroll bar and a window preset menu.

Later issues add layouts of several viewports, tools and hanging protocols here.
"""

from __future__ import annotations

from PySide6.QtCore import QSignalBlocker, Qt
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QScrollBar, QVBoxLayout, QWidget

from workstation.core.model.display_set import DisplaySet
from workstation.core.pixels.presets import load_presets
from workstation.services.frame_service import FrameService
from workstation.ui.viewer.viewport import ViewportWidget

DEFAULT_CHOICE = "Window: from the image"


class ViewerWidget(QWidget):
    def __init__(self, frames: FrameService, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewport = ViewportWidget(frames)
        self.scroll = QScrollBar(Qt.Orientation.Vertical)
        self.scroll.setRange(0, 0)
        self.presets = load_presets()
        self.preset_box = QComboBox()
        self.preset_box.addItem(DEFAULT_CHOICE)
        self.preset_box.addItems(sorted(self.presets))
        self.title = QLabel()

        top = QHBoxLayout()
        top.addWidget(self.title, 1)
        top.addWidget(self.preset_box)
        middle = QHBoxLayout()
        middle.setSpacing(0)
        middle.addWidget(self.viewport, 1)
        middle.addWidget(self.scroll)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(top)
        layout.addLayout(middle, 1)

        self.scroll.valueChanged.connect(self.viewport.set_index)
        self.viewport.frame_changed.connect(self._on_frame_changed)
        self.preset_box.textActivated.connect(self._on_preset)

    def show_display_set(self, display_set: DisplaySet) -> None:
        self._set_scroll(0, len(display_set))
        self.preset_box.setCurrentIndex(0)
        self._set_title(display_set)
        self.viewport.show_display_set(display_set)
        self.viewport.setFocus()

    def grow_display_set(self, display_set: DisplaySet) -> None:
        """More instances of the series shown arrived: the stack grows, the frame shown stays."""
        self.viewport.grow_display_set(display_set)
        self._set_scroll(self.viewport.index, len(display_set))
        self._set_title(display_set)

    def _set_title(self, display_set: DisplaySet) -> None:
        series = display_set.series
        count = f"{len(display_set)} image" + ("" if len(display_set) == 1 else "s")
        self.title.setText("  ".join(t for t in (series.Modality, series.SeriesDescription, f"({count})") if t))

    def _set_scroll(self, index: int, count: int | None = None) -> None:
        """Move the scroll bar to follow the viewport without sending the viewport there again."""
        with QSignalBlocker(self.scroll):
            if count is not None:
                self.scroll.setRange(0, max(0, count - 1))
            self.scroll.setValue(index)

    def _on_frame_changed(self, index: int) -> None:
        if self.scroll.value() != index:
            self._set_scroll(index)

    def _on_preset(self, name: str) -> None:
        if name == DEFAULT_CHOICE:
            self.viewport.set_window(None)
        elif name in self.presets:
            self.viewport.set_window(self.presets[name])
