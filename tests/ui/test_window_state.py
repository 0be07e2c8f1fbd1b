"""The window as it was last closed, per home: size and place, splitter, the browser's source and the
import dialogs' folder come back when the window is built again; nothing is written outside the home."""

from __future__ import annotations

import pytest
from PySide6.QtCore import QRect
from PySide6.QtWidgets import QFileDialog

from workstation.app import build, shutdown
from workstation.core.model.node import Node
from workstation.core.settings import Settings, save_settings

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def open_window(qtbot, workstation_home):
    built = []

    def open_():
        win, services = build(workstation_home)
        built.append(services)
        qtbot.addWidget(win)
        win.show()
        qtbot.waitExposed(win)
        return win

    yield open_
    for services in built:
        shutdown(services)


def test_size_place_splitter_source_and_import_folder_come_back(qtbot, open_window, workstation_home, samples,
                                                               monkeypatch):
    save_settings(workstation_home, Settings(nodes=[Node("pacs", "PACS", "127.0.0.1", 104)]))
    first = open_window()
    first.setGeometry(QRect(40, 30, 700, 520))
    qtbot.waitUntil(lambda: first.size().width() == 700, timeout=5000)
    first.browser.splitter.setSizes([120, 260])
    sizes = first.browser.splitter.sizes()
    folder = samples / "dcm_qa_ct/In/GE"
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *args, **kwargs: str(folder))
    with qtbot.waitSignal(first.import_ended, timeout=60000):
        first.choose_folder()                                  # File > Import folder…
    first.browser.search_bar.set_source("pacs")
    geometry = first.geometry()
    first.close()
    assert (workstation_home / "window.ini").is_file()

    asked_at = []
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda parent, title, where="": asked_at.append(where))
    again = open_window()
    assert again.geometry().size() == geometry.size() and again.geometry().topLeft() == geometry.topLeft()
    assert again.browser.splitter.sizes() == sizes
    assert again.browser.current_node() is not None and again.browser.current_node().name == "pacs"
    assert not again.transfers_dock.isVisible()                 # restored docks: an empty panel stays hidden
    again.choose_folder()
    assert asked_at == [str(folder)]


def test_a_saved_place_off_every_screen_is_ignored(qtbot, open_window):
    first = open_window()
    default = first.size()
    first.setGeometry(QRect(20000, 20000, 640, 480))      # as on a monitor that is gone now
    qtbot.waitUntil(lambda: first.size().width() == 640, timeout=5000)
    first.close()
    again = open_window()
    assert again.size() == default and again.geometry().x() < 20000
