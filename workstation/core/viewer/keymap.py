"""The viewer's one keyboard and mouse map, as data: the toolbar and menus take their shortcuts from
it, the help dialog (F1) lists it, and the README's table is checked against it by a test."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Binding:
    action: str            # the action's id, as the viewer's toolbar and menus know it
    text: str              # what it does, in words
    keys: tuple[str, ...]  # Qt key sequences (portable text, e.g. "Ctrl+Shift+Z")
    group: str


TOOLS = (
    # (tool id, name, key, icon)
    ("window", "Window/level", "W"),
    ("pan", "Pan", "P"),
    ("zoom", "Zoom", "Z"),
    ("scroll", "Scroll through images", "S"),
    ("probe", "Pixel value", "V"),
    ("length", "Length", "L"),
    ("angle", "Angle", "A"),
    ("cobb", "Cobb angle", "C"),
    ("rectangle", "Rectangle ROI", "R"),
    ("ellipse", "Ellipse ROI", "E"),
    ("freehand", "Freehand ROI", "D"),
    ("arrow", "Arrow", "O"),
    ("text", "Text", "T"),
    ("magnifier", "Magnifying glass", "G"),
    ("crosshair", "Crosshair (3D cursor; in MPR Ctrl+drag turns the other planes)", "X"),
)

BINDINGS: tuple[Binding, ...] = (
    *(Binding(f"tool.{tool}", f"{name} tool on the left button", (key,), "Tools") for tool, name, key in TOOLS),
    Binding("frame.next", "Next image", ("Down", "Right"), "Images"),
    Binding("frame.previous", "Previous image", ("Up", "Left"), "Images"),
    Binding("frame.forward", "10 images on", ("PgDown",), "Images"),
    Binding("frame.back", "10 images back", ("PgUp",), "Images"),
    Binding("frame.first", "First image", ("Home",), "Images"),
    Binding("frame.last", "Last image", ("End",), "Images"),
    Binding("cine.toggle", "Play or stop cine", ("Space",), "Images"),
    Binding("cine.slower", "Cine slower", ("[",), "Images"),
    Binding("cine.faster", "Cine faster", ("]",), "Images"),
    Binding("series.next", "Next series into this viewport", ("Ctrl+Down",), "Images"),
    Binding("series.previous", "Previous series into this viewport", ("Ctrl+Up",), "Images"),
    *(Binding(f"window.preset{i}", f"Window preset {i} (CT presets; the file's own windows otherwise)", (str(i),),
              "Window") for i in range(1, 10)),
    Binding("window.own", "The image's own window", ("0",), "Window"),
    Binding("window.auto", "Automatic window from the histogram", ("Shift+W",), "Window"),
    Binding("view.invert", "Invert", ("I",), "Window"),
    Binding("view.fit", "Fit to the viewport", ("F",), "View"),
    Binding("view.actual", "One screen pixel per image pixel (1:1)", ("Ctrl+0",), "View"),
    Binding("view.true_size", "True size (millimetres on screen)", ("Ctrl+T",), "View"),
    Binding("view.zoom_in", "Zoom in", ("+", "Ctrl+="), "View"),
    Binding("view.zoom_out", "Zoom out", ("-", "Ctrl+-"), "View"),
    Binding("view.rotate_right", "Rotate 90° clockwise", ("Ctrl+R",), "View"),
    Binding("view.rotate_left", "Rotate 90° anticlockwise", ("Ctrl+Shift+R",), "View"),
    Binding("view.flip_horizontal", "Flip left-right", ("Ctrl+H",), "View"),
    Binding("view.flip_vertical", "Flip top-bottom", ("Ctrl+Shift+H",), "View"),
    Binding("view.interpolate", "Smooth pixels on or off", ("Ctrl+I",), "View"),
    Binding("view.reset", "Reset the view and window", ("Backspace",), "View"),
    Binding("layout.maximise", "Maximise the viewport, and back (or double-click)", ("M",), "Layout"),
    Binding("layout.next", "Next viewport", ("Tab",), "Layout"),
    Binding("layout.1x1", "Layout 1 x 1", ("Alt+1",), "Layout"),
    Binding("layout.1x2", "Layout 1 x 2", ("Alt+2",), "Layout"),
    Binding("layout.2x1", "Layout 2 x 1", ("Alt+3",), "Layout"),
    Binding("layout.2x2", "Layout 2 x 2", ("Alt+4",), "Layout"),
    Binding("mpr.toggle", "MPR of the series (axial, coronal, sagittal, 3D), and back", ("Ctrl+M",), "Layout"),
    Binding("link.scroll", "Linked scrolling on or off", ("Ctrl+L",), "Layout"),
    Binding("link.reference_lines", "Reference lines on or off", ("Ctrl+Shift+L",), "Layout"),
    Binding("key.toggle", "Mark or unmark a key image", ("K",), "Key images"),
    Binding("key.filter", "Show only key images", ("Shift+K",), "Key images"),
    Binding("edit.undo", "Undo", ("Ctrl+Z",), "Annotations"),
    Binding("edit.redo", "Redo", ("Ctrl+Shift+Z", "Ctrl+Y"), "Annotations"),
    Binding("edit.delete", "Delete the selected annotation", ("Delete",), "Annotations"),
    Binding("edit.cancel", "Cancel the drawing", ("Esc",), "Annotations"),
    Binding("export.viewport", "Export the viewport as PNG or JPEG", ("Ctrl+E",), "Export"),
    Binding("export.layout", "Export the whole layout", ("Ctrl+Shift+E",), "Export"),
    Binding("export.copy", "Copy the viewport to the clipboard", ("Ctrl+C",), "Export"),
    Binding("print.compose", "Print to film: the composer, with the current image", ("Ctrl+P",), "Export"),
    Binding("help", "This help", ("F1",), "Help"),
)

MOUSE: tuple[tuple[str, str], ...] = (
    ("Left drag", "The active tool (window/level: right = wider, down = higher centre)"),
    ("Middle drag", "Pan (configurable: pan, zoom, scroll or window/level)"),
    ("Right drag", "Zoom (configurable: pan, zoom, scroll or window/level)"),
    ("Wheel", "Previous or next image"),
    ("Ctrl + wheel", "Zoom about the pointer"),
    ("Shift + click", "3D cursor: the other viewports go to that point"),
    ("Double click", "Maximise the viewport, and back"),
    ("Drag a series from the strip", "Show it in the viewport it is dropped on"),
    ("Click an annotation", "Select it; drag its handles or its body to edit it"),
)

BUTTON_ACTIONS = ("pan", "zoom", "scroll", "window")
"""What the middle and right buttons may be set to do."""


def binding(action: str) -> Binding:
    for b in BINDINGS:
        if b.action == action:
            return b
    raise KeyError(action)


def shortcut_text(action: str) -> str:
    return " / ".join(binding(action).keys)
