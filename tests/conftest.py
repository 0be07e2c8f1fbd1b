"""Shared fixtures: sample data, a fresh workstation home per test, and the real peers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest_plugins = ["tests.peers"]

SAMPLES = Path(__file__).resolve().parent.parent.parent / "shared" / "dicom-samples"


def require_samples() -> Path:
    """The shared sample corpus; skip when it is absent, but fail under CI where it must be."""
    if not SAMPLES.is_dir():
        reason = f"the shared DICOM samples are not at {SAMPLES} (they sit beside the checkout in ../shared)"
        if os.environ.get("CI"):
            pytest.fail(reason + " and CI is set, so this is an error")
        pytest.skip(reason)
    return SAMPLES


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
