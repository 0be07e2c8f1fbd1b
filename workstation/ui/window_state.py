"""How the window looked when it was closed, per home: size and place, docks, splitters, the browser's
source, the folder the import dialogs last chose. Restored when the window is built.

Kept with Qt's QSettings in HOME/window.ini, not in the typed settings (core/settings.py): it is the
window's own state, partly Qt's geometry and state blobs, written whenever the window closes and read
by nobody else; the typed settings are shared with the command line, which may change nodes or the
port while the window is open, and a window saving its copy at close would undo those changes.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QByteArray, QEvent, QObject, QRect, QSettings
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QMainWindow

FILE = "window.ini"
VISIBLE = 60
"""Pixels of a saved window that must fall on a screen, each way, for its geometry to be restored."""


def on_a_screen(rect: QRect) -> bool:
    """Whether enough of `rect` lies on one of the screens there are now to grab it."""
    for screen in QGuiApplication.screens():
        shared = screen.availableGeometry().intersected(rect)
        if shared.width() >= VISIBLE and shared.height() >= VISIBLE:
            return True
    return False


class WindowState(QObject):
    """Restores a main window from HOME/window.ini and saves it there when it closes."""

    def __init__(self, home: Path, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.settings = QSettings(str(Path(home) / FILE), QSettings.Format.IniFormat)

    # --- the import dialogs' folder ----------------------------------------------------------

    def import_folder(self) -> str:
        """Where the import dialogs open: the folder last chosen in them ("" the first time)."""
        folder = str(self.settings.value("import/folder", "") or "")
        return folder if folder and Path(folder).is_dir() else ""

    def remember_import(self, path: str) -> None:
        """A folder, or a file whose folder, was just chosen for an import."""
        chosen = Path(path)
        self.settings.setValue("import/folder", str(chosen if chosen.is_dir() else chosen.parent))
        self.settings.sync()

    # --- the viewer's mouse buttons -----------------------------------------------------------

    def viewer_buttons(self) -> dict[str, str]:
        """What the middle and right buttons were last set to do in the viewer ({} the first time)."""
        out = {}
        for button in ("middle", "right"):
            value = str(self.settings.value(f"viewer/{button}_button", "") or "")
            if value:
                out[button] = value
        return out

    def remember_viewer_buttons(self, buttons: dict) -> None:
        for button, action in buttons.items():
            self.settings.setValue(f"viewer/{button}_button", action)
        self.settings.sync()

    # --- the window ---------------------------------------------------------------------------

    def attach(self, window: QMainWindow) -> None:
        """Restore `window` now (before it is shown) and save it whenever it closes."""
        self.setParent(window)
        window.window_state = self
        self.restore(window)
        window.installEventFilter(self)

    def restore(self, window: QMainWindow) -> None:
        s = self.settings
        geometry, normal = s.value("window/geometry"), s.value("window/normal")
        if isinstance(geometry, QByteArray) and isinstance(normal, QRect) and on_a_screen(normal):
            window.restoreGeometry(geometry)   # off every screen now (a monitor gone): the default size and place
        state = s.value("window/state")
        if isinstance(state, QByteArray):
            window.restoreState(state)
        dock = getattr(window, "transfers_dock", None)
        if dock is not None:
            dock.place()   # an empty Transfers panel stays hidden, whatever it was at the last close
        browser = getattr(window, "browser", None)
        if browser is None:
            return
        splitter = s.value("browser/splitter")
        if isinstance(splitter, QByteArray):
            browser.splitter.restoreState(splitter)
        source = str(s.value("browser/source", "") or "")
        if source and source != browser.search_bar.source_box.currentText():
            try:
                browser.search_bar.set_source(source)
            except LookupError:
                pass   # that node was removed since

    def save(self, window: QMainWindow) -> None:
        s = self.settings
        s.setValue("window/geometry", window.saveGeometry())
        s.setValue("window/normal", window.normalGeometry())
        s.setValue("window/state", window.saveState())
        browser = getattr(window, "browser", None)
        if browser is not None:
            s.setValue("browser/splitter", browser.splitter.saveState())
            s.setValue("browser/source", browser.search_bar.source_box.currentText())
        s.sync()

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if event.type() == QEvent.Type.Close and isinstance(watched, QMainWindow):
            self.save(watched)
        return False
