"""The viewer tab's toolbar: the tools, layouts, presets, view actions, cine, links, key images,
annotations, export and the mouse buttons' actions."""

from __future__ import annotations

import time

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QComboBox, QDoubleSpinBox, QMenu, QToolBar, QToolButton

from workstation.ui.viewer import actions as viewer_actions

DEFAULT_CHOICE = "Window: from the image"
GRIDS = ((1, 1), (1, 2), (2, 1), (2, 2), (3, 3), (4, 4))


def build_toolbar(self) -> QToolBar:
    """The viewer tab's toolbar; `self` is the StudyViewerWidget (its widgets become its attributes)."""
    bar = QToolBar()
    bar.setObjectName("viewer_toolbar")
    a = self.actions_by_id
    for action_id in viewer_actions.TOOL_IDS:
        bar.addAction(a[action_id])
    bar.addSeparator()
    layout_button = QToolButton()
    layout_button.setIcon(viewer_actions.icon("layout"))
    layout_button.setToolTip("Viewport layout (Alt+1 1x1, Alt+2 1x2, Alt+3 2x1, Alt+4 2x2)")
    layout_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
    menu = QMenu(layout_button)
    for rows, columns in GRIDS:
        menu.addAction(f"{rows} x {columns}", lambda r=rows, c=columns: self.set_grid(r, c))
    menu.addAction("Rows x columns…", self.ask_grid)
    menu.addSeparator()
    menu.addAction("Save this arrangement as a hanging protocol…", self.save_protocol)
    layout_button.setMenu(menu)
    bar.addWidget(layout_button)
    self.preset_box = QComboBox()
    self.preset_box.setObjectName("preset_box")
    self.preset_box.addItem(DEFAULT_CHOICE)
    self.preset_box.addItems(list(self.presets))
    self.preset_box.setFocusPolicy(Qt.FocusPolicy.NoFocus)   # the arrow keys keep scrolling the images
    self.preset_box.setToolTip("Window presets (number keys 1-9; 0: the image's own)")
    self.preset_box.textActivated.connect(self._on_preset)
    bar.addWidget(self.preset_box)
    for action_id in ("view.invert", "view.rotate_left", "view.rotate_right", "view.flip_horizontal",
                      "view.flip_vertical", "view.fit", "view.actual", "view.reset"):
        bar.addAction(a[action_id])
    bar.addSeparator()
    bar.addAction(a["cine.toggle"])
    self.fps_box = QDoubleSpinBox()
    self.fps_box.setRange(0.5, 120.0)
    self.fps_box.setDecimals(1)
    self.fps_box.setSuffix(" fps")
    self.fps_box.setFocusPolicy(Qt.FocusPolicy.ClickFocus)
    self.fps_box.setToolTip("Cine frame rate (the file's own rate by default; [ and ] change it)")
    self.fps_box.valueChanged.connect(lambda v: self.active_model.set_fps(v, time.monotonic())
                                      if abs(v - self.active_model.cine.fps) > 1e-6 else None)
    bar.addWidget(self.fps_box)
    bar.addSeparator()
    for action_id in ("link.scroll", "link.reference_lines"):
        bar.addAction(a[action_id])
    links = QToolButton(text="Links")
    links.setToolTip("What the viewports share")
    links.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
    menu = QMenu(links)
    self.link_window_action = menu.addAction("Window/level of the same modality", lambda: self.session.set_links(
        window=not self.session.links.window))
    self.link_zoom_action = menu.addAction("Zoom and pan", lambda: self.session.set_links(zoom=not self.session.links.zoom))
    for action in (self.link_window_action, self.link_zoom_action):
        action.setCheckable(True)
    menu.addSeparator()
    menu.addAction("Link the studies at their current positions", self.link_studies)
    menu.addAction("Unlink the studies", self.session.unlink_studies)
    links.setMenu(menu)
    bar.addWidget(links)
    for action_id in ("key.toggle", "key.filter"):
        bar.addAction(a[action_id])
    notes = QToolButton(text="Annotations")
    notes.setToolTip("The annotations of the studies open: choose one to go to its image")
    notes.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
    self.annotations_menu = QMenu(notes)
    self.annotations_menu.aboutToShow.connect(self._fill_annotations_menu)
    notes.setMenu(self.annotations_menu)
    bar.addWidget(notes)
    export_button = QToolButton()
    export_button.setIcon(viewer_actions.icon("export"))
    export_button.setToolTip("Export (Ctrl+E viewport, Ctrl+Shift+E layout, Ctrl+C copy)")
    export_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
    menu = QMenu(export_button)
    menu.addAction("Viewport with annotations…", lambda: self.export(False, True))
    menu.addAction("Image only, without annotations…", lambda: self.export(False, False))
    menu.addAction("Whole layout…", lambda: self.export(True, True))
    menu.addAction("Copy the viewport to the clipboard", self.copy_to_clipboard)
    export_button.setMenu(menu)
    bar.addWidget(export_button)
    mouse = QToolButton(text="Mouse")
    mouse.setToolTip("What the middle and right buttons do")
    mouse.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
    menu = QMenu(mouse)
    for button in ("middle", "right"):
        sub = menu.addMenu(f"{button.capitalize()} button")
        for choice in ("pan", "zoom", "scroll", "window"):
            act = sub.addAction(choice.capitalize(), lambda b=button, c=choice: self.tools.set_button(b, c))
            act.setCheckable(True)
            act.setChecked(self.tools.buttons[button] == choice)
            sub.aboutToShow.connect(lambda s=sub, b=button: [x.setChecked(x.text().lower() == self.tools.buttons[b])
                                                            for x in s.actions()])
    mouse.setMenu(menu)
    bar.addWidget(mouse)
    bar.addAction(a["mpr.toggle"])
    bar.addAction(a["help"])
    return bar
