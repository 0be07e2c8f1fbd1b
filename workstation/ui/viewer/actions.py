"""The viewer's actions: one QAction per entry of the keyboard map (core/viewer/keymap.py), with its
icon, shortcut and a tooltip that names the shortcut; each runs a method of the viewer tab."""

from __future__ import annotations

import time

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QActionGroup, QIcon, QKeySequence

from workstation.core.resources import resource_path
from workstation.core.viewer.keymap import BINDINGS, TOOLS

ICONS = {
    "view.invert": "invert", "view.rotate_right": "rotate_right", "view.rotate_left": "rotate_left",
    "view.flip_horizontal": "flip_horizontal", "view.flip_vertical": "flip_vertical", "view.reset": "reset",
    "view.fit": "fit", "view.actual": "actual", "cine.toggle": "play", "link.scroll": "link",
    "link.reference_lines": "reference_lines", "key.toggle": "key", "key.filter": "key_filter",
    "export.viewport": "export", "help": "help", "view.zoom_in": "zoom", "mpr.toggle": "mpr",
}
CHECKABLE = {"link.scroll", "link.reference_lines", "key.filter", "view.interpolate", "cine.toggle", "mpr.toggle"}


def icon(name: str) -> QIcon:
    return QIcon(str(resource_path("icons", "viewer", f"{name}.svg")))


def build_actions(viewer) -> dict[str, QAction]:
    """Every binding as an action of `viewer` (shortcuts work anywhere inside the tab)."""
    actions: dict[str, QAction] = {}
    tools = QActionGroup(viewer)
    tools.setExclusive(True)
    for binding in BINDINGS:
        action = QAction(binding.text, viewer)
        action.setObjectName(binding.action)
        keys = [QKeySequence(k) for k in binding.keys]
        # the arrow keys, Home/End and Page Up/Down scroll in the viewport itself (with focus there)
        if binding.group != "Images" or binding.action.startswith(("cine", "series")):
            action.setShortcuts(keys)
            action.setShortcutContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
        action.setToolTip(f"{binding.text} ({' / '.join(binding.keys)})")
        if binding.action.startswith("tool."):
            tool = binding.action.split(".", 1)[1]
            action.setIcon(icon(tool))
            action.setCheckable(True)
            tools.addAction(action)
            action.triggered.connect(lambda checked=False, t=tool: viewer.tools.set_tool(t))
        else:
            if binding.action in ICONS:
                action.setIcon(icon(ICONS[binding.action]))
            action.setCheckable(binding.action in CHECKABLE)
            action.triggered.connect(lambda checked=False, a=binding.action: viewer.run(a))
        viewer.addAction(action)
        actions[binding.action] = action
    actions["tool.window"].setChecked(True)
    actions["link.scroll"].setChecked(True)
    actions["link.reference_lines"].setChecked(True)
    actions["view.interpolate"].setChecked(True)
    viewer.tools.tool_changed.connect(lambda tool: actions[f"tool.{tool}"].setChecked(True))
    return actions


TOOL_IDS = tuple(f"tool.{tool}" for tool, _, _ in TOOLS)


def run(viewer, action: str) -> None:
    """What each non-tool action does to the active viewport or the session."""
    model = viewer.active_model
    session = viewer.current_session
    simple = {
        "frame.next": lambda: model.scroll(1), "frame.previous": lambda: model.scroll(-1),
        "frame.forward": lambda: model.scroll(10), "frame.back": lambda: model.scroll(-10),
        "frame.first": lambda: model.set_index(0), "frame.last": lambda: model.set_index(len(model.frames) - 1),
        "view.invert": model.toggle_invert, "view.fit": lambda: model.set_view(model.view.fitted()),
        "view.actual": lambda: model.set_view(model.view.at_scale(1.0)),
        "view.true_size": viewer.true_size,
        "view.zoom_in": lambda: model.zoom(1.25), "view.zoom_out": lambda: model.zoom(0.8),
        "view.rotate_right": lambda: model.rotate(1), "view.rotate_left": lambda: model.rotate(-1),
        "view.flip_horizontal": lambda: model.flip(True), "view.flip_vertical": lambda: model.flip(False),
        "view.interpolate": model.toggle_interpolation,
        "view.reset": lambda: (model.reset_view(), model.set_window(None)),
        "window.own": lambda: model.set_window(None),
        "window.auto": viewer.auto_window,
        "layout.maximise": lambda: session.layout.toggle_maximised(),
        "layout.next": lambda: session.layout.activate((session.layout.active + 1) % len(session.layout.viewports)),
        "mpr.toggle": viewer.toggle_mpr,
        "layout.1x1": lambda: viewer.set_grid(1, 1), "layout.1x2": lambda: viewer.set_grid(1, 2),
        "layout.2x1": lambda: viewer.set_grid(2, 1), "layout.2x2": lambda: viewer.set_grid(2, 2),
        "link.scroll": lambda: session.set_links(scroll=not session.links.scroll),
        "link.reference_lines": lambda: session.set_links(reference_lines=not session.links.reference_lines),
        "key.toggle": viewer.toggle_key_image, "key.filter": viewer.toggle_key_filter,
        "edit.undo": session.annotations.undo, "edit.redo": session.annotations.redo,
        "edit.delete": viewer.tools.delete_selected, "edit.cancel": viewer.tools.cancel,
        "export.viewport": lambda: viewer.export(whole_layout=False),
        "export.layout": lambda: viewer.export(whole_layout=True),
        "export.copy": viewer.copy_to_clipboard,
        "print.compose": viewer.print_requested.emit,
        "help": viewer.show_help,
        "cine.toggle": lambda: model.stop() if model.cine.playing else model.play(time.monotonic()),
        "cine.slower": lambda: model.set_fps(model.cine.fps / 1.25, time.monotonic()),
        "cine.faster": lambda: model.set_fps(model.cine.fps * 1.25, time.monotonic()),
        "series.next": lambda: viewer.step_series(1), "series.previous": lambda: viewer.step_series(-1),
    }
    if action in simple:
        simple[action]()
    elif action.startswith("window.preset"):
        viewer.preset_key(int(action.removeprefix("window.preset")))
    viewer.sync_actions()
    viewer.grid.repaint_all()
