"""The viewer page: a viewport with a slice scroll bar and a window preset menu.

Later issues add layouts of several viewports, tools and hanging protocols here.
"""

from __future__ import annotations

from PySide6.QtCore import QSignalBlocker, Qt, Signal
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QScrollBar, QVBoxLayout, QWidget

from workstation.core.model.display_set import DisplaySet
from workstation.core.pixels.presets import load_presets
from workstation.services.frame_service import FrameService
from workstation.services.study_loader_service import SeriesWatch, StudyLoaderService
from workstation.ui.viewer.viewport import ViewportWidget

DEFAULT_CHOICE = "Window: from the image"


class ViewerWidget(QWidget):
    display_set_grown = Signal(object)   # the DisplaySet shown, with more images than before

    def __init__(self, frames: FrameService, loader: StudyLoaderService | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.loader = loader
        self._watch: SeriesWatch | None = None   # the shown series, as it grows in the cache
        self.viewport = ViewportWidget(frames)
        self.scroll = QScrollBar(Qt.Orientation.Vertical)
        self.scroll.setRange(0, 0)
        self.presets = load_presets()
        self.preset_box = QComboBox()
        self.preset_box.addItem(DEFAULT_CHOICE)
        self.preset_box.addItems(sorted(self.presets))
        self.preset_box.setFocusPolicy(Qt.FocusPolicy.NoFocus)   # the arrow keys keep scrolling the slices
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
        if self._watch is not None:
            self._watch.close()
            self._watch = None
        if self.loader is not None:
            self._watch = self.loader.watch(display_set.key, display_set)
            self._watch.grown.connect(self._on_grown)
            self.destroyed.connect(self._watch.close)   # a closed viewer stops watching
        self._set_scroll(0, len(display_set))
        self.preset_box.setCurrentIndex(0)
        self._set_title(display_set)
        self.viewport.show_display_set(display_set)
        self.viewport.setFocus()

    def _on_grown(self, display_set: DisplaySet) -> None:
        shown = self.viewport.display_set
        if shown is not None and shown.key == display_set.key:
            self.grow_display_set(display_set)
            self.display_set_grown.emit(display_set)

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
        self.viewport.setFocus()
