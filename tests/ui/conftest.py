"""Windows for the UI tests, built as the application builds them, on the test's own home."""

from __future__ import annotations

import pytest

from tests.peers import WORKSTATION_AET, free_port
from workstation.app import build, shutdown
from workstation.core.model.node import Node
from workstation.core.settings import Settings, save_settings


def pacs_node(orthanc, name: str = "pacs") -> Node:
    return Node(name, orthanc.aet, "127.0.0.1", orthanc.port, connect_timeout=3, network_timeout=20)


@pytest.fixture
def window(qtbot, workstation_home):
    """The window on a fresh home with no nodes, shown (1400 x 900, room for a 2x2 layout)."""
    win, services = build(workstation_home)
    qtbot.addWidget(win)
    win.resize(1400, 900)
    win.show()
    qtbot.waitExposed(win)
    yield win
    shutdown(services)


@pytest.fixture
def make_window(qtbot, workstation_home):
    built = []

    def make(orthanc=None, nodes=(), port=None, **settings_values):
        port = port or (orthanc.workstation_port if orthanc else free_port())
        settings = Settings(**{"ae_title": WORKSTATION_AET, "port": port, "nodes": list(nodes), **settings_values})
        save_settings(workstation_home, settings)
        win, services = build(workstation_home)
        built.append(services)
        qtbot.addWidget(win)
        win.show()
        qtbot.waitExposed(win)
        network = services[-1]
        qtbot.waitUntil(lambda: network.storage.server is not None or "Not receiving" in network.storage.status, timeout=10000)
        return win

    yield make
    for services in built:
        shutdown(services)


