"""Opening the window on a cache whose index is damaged: it asks, and rebuilds from the files on a worker."""

from __future__ import annotations

import os

import pytest
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication, QMessageBox

from workstation.app import build, shutdown
from workstation.core.cache import Cache

pytestmark = pytest.mark.timeout(120)


def _damaged_cache(home, samples) -> str:
    with Cache(home) as cache:
        cache.import_paths([samples / "dcm_qa_ct/In/GE", samples / "tcia_covid19_ny_sbu"])
        pinned = cache.studies()[2].StudyInstanceUID
        cache.pin(pinned)
    os.truncate(home / "cache" / "index.sqlite", 8192)
    return pinned


def _answer(button: QMessageBox.StandardButton, seen: list[str]) -> None:
    """Answer the question as a user would, once it is on screen."""

    def attempt() -> None:
        box = QApplication.activeModalWidget()
        if isinstance(box, QMessageBox) and box.objectName() == "index-damaged":
            seen.append(box.text())
            box.button(button).click()
        else:
            QTimer.singleShot(20, attempt)

    QTimer.singleShot(0, attempt)


def test_the_window_asks_and_rebuilds_a_damaged_index_keeping_pins(qtbot, workstation_home, samples):
    pinned = _damaged_cache(workstation_home, samples)
    seen: list[str] = []
    _answer(QMessageBox.StandardButton.Yes, seen)
    win, services = build(workstation_home)
    try:
        assert seen and "damaged" in seen[0]
        assert win is not None
        cache = services[0]
        studies = cache.studies()
        assert len(studies) == 7 and sum(s.NumberOfStudyRelatedInstances for s in studies) == 46
        assert [s.StudyInstanceUID for s in studies if s.pinned] == [pinned]
        assert cache.verify().ok
    finally:
        if services is not None:
            shutdown(services)


def test_declining_the_rebuild_opens_nothing_and_changes_nothing(qtbot, workstation_home, samples):
    _damaged_cache(workstation_home, samples)
    before = (workstation_home / "cache" / "index.sqlite").read_bytes()
    seen: list[str] = []
    _answer(QMessageBox.StandardButton.No, seen)
    assert build(workstation_home) == (None, None)
    assert seen and (workstation_home / "cache" / "index.sqlite").read_bytes() == before
