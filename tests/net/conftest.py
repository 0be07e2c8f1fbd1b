"""The network tests run with the transport tuning installed, as the CLI, the window and their children do."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True, scope="session")
def tuned_transport():
    from workstation.core.net import transport

    transport.install()
