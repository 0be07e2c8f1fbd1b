"""Shared fixtures: sample data, a fresh workstation home per test, and the real peers."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.samples import require_samples

pytest_plugins = ["tests.peers"]


@pytest.fixture(scope="session")
def samples() -> Path:
    return require_samples()


@pytest.fixture(autouse=True)
def workstation_home(tmp_path, monkeypatch) -> Path:
    """Every test gets its own home (settings, cache, logs) and never touches the user's."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("WORKSTATION_HOME", str(home))
    return home


@pytest.fixture(autouse=True)
def child_start_method():
    """A window built by one test chooses the fork server for its children; the next test starts afresh."""
    from workstation.core import children

    yield
    children.use_start_method(None)
