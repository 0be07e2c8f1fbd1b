"""The first window, driven as a user would: import, search, open, scroll, window/level."""

from __future__ import annotations

import shutil
import sys

import pytest
from PySide6.QtCore import QPoint, Qt

from workstation.core.cache import files
from workstation.ui.browser.study_table import STUDY_ROLE

pytestmark = pytest.mark.timeout(120)

PHANTOM_STUDY = "dcm_qa_ct/In/Philips/S21570"
PHANTOM_AXIAL = "dcm_qa_ct/In/Philips/S21570/S2020"


def import_and_wait(qtbot, win, paths, open_first=False):
    with qtbot.waitSignal(win.import_ended, timeout=60000) as blocker:
        assert win.import_paths([str(p) for p in paths], open_first=open_first) is not None
    return blocker.args[0]


def wait_for_viewer(qtbot, win):
    """The viewer tab opened on a display set: its active viewport."""
    qtbot.waitUntil(lambda: win.viewer is not None and win.viewer.viewport.display_set is not None, timeout=10000)
    return win.viewer.viewport


def wait_for_image(qtbot, viewport):
    qtbot.waitUntil(lambda: viewport.image is not None or bool(viewport.error), timeout=20000)
    assert not viewport.error, viewport.error


def test_import_lists_the_study_and_opens_its_series(qtbot, window, samples):
    qtbot.waitUntil(window.browser.empty_hint.isVisible, timeout=5000)  # a new user is told how to start
    report = import_and_wait(qtbot, window, [samples / PHANTOM_AXIAL], open_first=True)
    assert report.imported == 140 and not report.rejected
    qtbot.waitUntil(lambda: window.browser.model.rowCount() == 1, timeout=10000)
    study = window.browser.model.studies[0]
    assert not window.browser.empty_hint.isVisible()
    assert study.PatientID == "PLASTIC"
    assert study.NumberOfStudyRelatedInstances == 140

    viewport = wait_for_viewer(qtbot, window)
    assert window.tabs.currentWidget() is window.viewer
    assert len(viewport.display_set) == 140
    wait_for_image(qtbot, viewport)
    corners = viewport.corner_texts()
    assert "PLASTIC" in corners["top_left"]
    assert any(line.startswith("2015-02-06") for line in corners["top_left"])
    assert "Image 1 / 140" in corners["bottom_left"]
    # The Philips files carry WindowCenter 40 / WindowWidth 80 (multi-valued): the first is used.
    assert corners["bottom_right"][0] == "W 80 L 40"
    assert viewport.image.width() == 512 and viewport.image.height() == 512


def test_wheel_scrolls_and_drag_changes_window(qtbot, window, samples):
    import_and_wait(qtbot, window, [samples / PHANTOM_AXIAL], open_first=True)
    viewport = wait_for_viewer(qtbot, window)
    wait_for_image(qtbot, viewport)
    first = viewport.image.copy()

    qtbot.keyClick(viewport, Qt.Key.Key_Down)
    qtbot.keyClick(viewport, Qt.Key.Key_Down)
    assert viewport.index == 2
    qtbot.waitUntil(lambda: viewport.shown_index == 2, timeout=10000)
    assert viewport.image != first
    assert "Image 3 / 140" in viewport.corner_texts()["bottom_left"]

    before = viewport.window or viewport.renderer.default_window
    centre = viewport.rect().center()
    qtbot.mousePress(viewport, Qt.MouseButton.LeftButton, pos=centre)
    qtbot.mouseMove(viewport, centre + QPoint(60, 30))
    qtbot.mouseRelease(viewport, Qt.MouseButton.LeftButton, pos=centre + QPoint(60, 30))
    assert viewport.window.width > before.width
    assert viewport.window.center > before.center
    assert viewport.corner_texts()["bottom_right"][0] == f"W {viewport.window.width:.0f} L {viewport.window.center:.0f}"


def test_bad_files_are_reported_and_the_rest_imported(qtbot, window, samples, tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    shutil.copy(samples / "dcm_qa_ct/In/GE/01.dcm", folder / "good.dcm")
    shutil.copy(samples / "pydicom_testfiles/pydicom/MR_truncated.dcm", folder / "truncated.dcm")
    (folder / "notes.txt").write_text("not an image")
    report = import_and_wait(qtbot, window, [folder])
    assert report.imported == 1
    assert sorted(r.path.rsplit("/", 1)[-1] for r in report.rejected) == ["notes.txt", "truncated.dcm"]
    box = window.findChild(object, "rejected_files_box")
    assert box is not None
    qtbot.waitUntil(box.isVisible, timeout=5000)
    assert "truncated.dcm: pixel data is 8130 bytes" in box.detailedText()
    assert "1 rejected" not in window.status_label.text() and "2 rejected" in window.status_label.text()


def test_search_bar_filters_and_double_click_opens(qtbot, window, samples):
    import_and_wait(qtbot, window, [samples / "tcia_covid19_ny_sbu", samples / PHANTOM_STUDY])
    browser = window.browser
    qtbot.waitUntil(lambda: browser.model.rowCount() == 7, timeout=10000)
    qtbot.keyClicks(browser.search_bar.search_edit, "A0679")
    qtbot.waitUntil(lambda: browser.model.rowCount() == 2, timeout=10000)
    assert {s.PatientID for s in browser.model.studies} == {"A067967"}

    browser.search_bar.search_edit.clear()
    qtbot.keyClicks(browser.search_bar.search_edit, "plastic")
    qtbot.waitUntil(lambda: [s.PatientID for s in browser.model.studies] == ["PLASTIC"], timeout=10000)
    browser.search_bar.search_edit.clear()
    qtbot.waitUntil(lambda: browser.model.rowCount() == 7, timeout=10000)
    # Sort by image count, descending: the phantom's 141-image study comes first.
    browser.table.sortByColumn(10, Qt.SortOrder.DescendingOrder)
    index = browser.proxy.index(0, 0)
    rect = browser.table.visualRect(index)
    qtbot.mouseClick(browser.table.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    with qtbot.waitSignal(window.display_set_shown, timeout=10000) as shown:
        qtbot.mouseDClick(browser.table.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    display_set = shown.args[0]
    assert display_set.study.PatientID == "PLASTIC"
    # The study opens on its stack (series 202, 140 images), not on its one-image localizer (100).
    assert display_set.series.SeriesNumber == 202 and len(display_set) == 140

    # With a series selected, Open opens that series.
    qtbot.waitUntil(lambda: browser.series_table.rowCount() == 2, timeout=10000)
    row = next(r for r in range(2) if browser.series_table.item(r, 1).text() == "100")
    browser.series_table.selectRow(row)
    with qtbot.waitSignal(window.display_set_shown, timeout=10000) as shown:
        browser.open_button.click()
    assert shown.args[0].series.SeriesNumber == 100 and len(shown.args[0]) == 1


VTK_CHECK = """
import json, os, pkgutil, sys, importlib
os.environ["QT_QPA_PLATFORM"] = "offscreen"
names = ["workstation.app", "workstation.cli", "workstation.ui.main_window"]
for package in ("workstation.ui.browser", "workstation.ui.viewer", "workstation.services"):
    names += [m.name for m in pkgutil.walk_packages(importlib.import_module(package).__path__, package + ".")]
for name in names:
    importlib.import_module(name)
names += sys.argv[2:]
for name in sys.argv[2:]:
    importlib.import_module(name)
from PySide6.QtWidgets import QApplication
from workstation.app import build, shutdown
from workstation.core.settings import Settings, save_settings
app = QApplication([])
save_settings(sys.argv[1], Settings(port=int(os.environ["FREE_PORT"])))
window, services = build(sys.argv[1])
window.show()
for _ in range(20):
    app.processEvents()
shutdown(services)
vtk = sorted(n for n in sys.modules if n == "vtk" or n.startswith(("vtk.", "vtkmodules")))
print(json.dumps({"imported": names, "vtk": vtk}))
"""


def _modules_after_start_up(home, *extra):
    """Start-up in a fresh interpreter (nothing else has loaded anything): import the composition root,
    the command line, the browser, the 2D viewer and the services, build and show the window."""
    import json
    import os
    import subprocess

    from tests.peers import free_port

    env = {**os.environ, "FREE_PORT": str(free_port())}
    out = subprocess.run([sys.executable, "-c", VTK_CHECK, str(home), *extra], capture_output=True, text=True,
                         env=env, timeout=90)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_vtk_is_not_imported_by_start_up_the_browser_or_the_2d_viewer(tmp_path):
    found = _modules_after_start_up(tmp_path / "home")
    assert "workstation.ui.viewer.viewport" in found["imported"] and "workstation.ui.browser.study_table" in found["imported"]
    assert found["vtk"] == []
    seen = _modules_after_start_up(tmp_path / "home", "workstation.vtk3d.reslice")   # the check does see VTK
    assert "vtkmodules.vtkImagingCore" in seen["vtk"]


def test_presets_and_back_to_the_image_window(qtbot, window, samples):
    import_and_wait(qtbot, window, [samples / "dcm_qa_ct/In/GE"], open_first=True)
    viewport = wait_for_viewer(qtbot, window)
    wait_for_image(qtbot, viewport)
    own_window = viewport.renderer.default_window                      # the file's own (the CT head protocol
    own = [f"W {own_window.width:.0f} L {own_window.center:.0f}"]      # opened it in its brain window)
    box = window.viewer.preset_box
    qtbot.mouseClick(box, Qt.MouseButton.LeftButton)                  # the user opens the drop-down...
    box.hidePopup()
    box.textActivated.emit("Bone")                                     # ...and picks a preset
    assert not box.hasFocus() and viewport.hasFocus()                  # so the arrow keys still scroll
    bone = window.viewer.presets["Bone"]
    assert viewport.window == bone
    assert viewport.corner_texts()["bottom_right"][0] == f"W {bone.width:.0f} L {bone.center:.0f}"
    qtbot.keyClick(viewport, Qt.Key.Key_Down)
    qtbot.waitUntil(lambda: viewport.shown_index == 1, timeout=10000)
    assert viewport.window == bone  # a chosen window stays while scrolling
    window.viewer.preset_box.textActivated.emit("Window: from the image")
    qtbot.keyClick(viewport, Qt.Key.Key_Up)
    qtbot.waitUntil(lambda: viewport.shown_index == 0, timeout=10000)
    assert viewport.window is None and viewport.corner_texts()["bottom_right"][:1] == own


def test_drop_imports_and_cancel_keeps_the_cache_consistent(qtbot, window, samples):
    from PySide6.QtCore import QMimeData, QPointF, QUrl
    from PySide6.QtGui import QDropEvent

    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(samples / "dcm_qa_ct/In/GE"))])
    event = QDropEvent(QPointF(50, 50), Qt.DropAction.CopyAction, mime, Qt.MouseButton.NoButton,
                       Qt.KeyboardModifier.NoModifier)
    with qtbot.waitSignal(window.import_ended, timeout=60000) as done:
        window.dropEvent(event)
    assert done.args[0].imported == 28

    # Cancel from the progress signal once a few files are in: the import must stop part-way.
    folder = samples / "dcm_qa_deident"
    total = sum(1 for p in folder.rglob("*.dcm"))
    seen: list[str] = []

    def on_progress(done_files: int, _total: int, label: str) -> None:
        if done_files:
            seen.append(label)
        if len(seen) >= 5:
            window.cancel_import()

    with qtbot.waitSignal(window.import_ended, timeout=60000) as done:
        window.import_paths([str(folder)]).progressed.connect(on_progress)
    assert done.args[0] is None  # cancelled: no success report
    assert window.import_job is None and not window.progress.isVisible()
    assert "Import cancelled" in window.status_label.text()
    placed = [label for label in seen if label.endswith(".dcm")]  # progress follows each stored file
    assert 0 < len(placed) < total, f"{len(placed)} of {total} files imported: the cancel did not stop the import"
    cache = window.cache.cache
    assert cache.verify().ok
    leftovers = [p for p in cache.files.rglob("*") if p.is_file() and files.is_temp(p.name)]
    assert not leftovers, f"temporary files left after the cancel: {leftovers}"
    studies = {s.PatientID: s for s in cache.studies()}
    assert studies["QMNx85rKkkg"].NumberOfStudyRelatedInstances == 28
    fruit = studies["FRUIT"]
    stored = sum(len(cache.instances(s.SeriesInstanceUID)) for s in cache.series(fruit.StudyInstanceUID))
    assert fruit.NumberOfStudyRelatedInstances == stored == len(placed)
    assert f"Import cancelled: imported {stored} images" in window.status_label.text()   # the user learns what stayed


def test_pin_and_delete_from_the_browser(qtbot, window, samples, monkeypatch):
    from PySide6.QtWidgets import QMessageBox

    from workstation.ui.browser.study_table import COLUMNS

    import_and_wait(qtbot, window, [samples / "tcia_covid19_ny_sbu"])
    browser = window.browser
    qtbot.waitUntil(lambda: browser.model.rowCount() == 6, timeout=10000)
    study = browser.model.studies[0]
    browser.cache.pin_study(study.StudyInstanceUID, True)
    qtbot.waitUntil(lambda: any(s.pinned for s in browser.model.studies), timeout=10000)
    row = next(i for i, s in enumerate(browser.model.studies) if s.pinned)
    kept = [key for _, key in COLUMNS].index("pinned")
    assert browser.model.index(row, kept).data() == "pinned"
    assert len(window.cache.cache.evict(0).evicted_studies) == 5
    assert [s.StudyInstanceUID for s in window.cache.cache.studies()] == [study.StudyInstanceUID]

    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.StandardButton.Yes)
    browser.confirm_delete(study)
    qtbot.waitUntil(lambda: browser.model.rowCount() == 0, timeout=10000)
    assert window.cache.cache.studies() == []


def test_an_import_from_the_menu_shows_the_imported_studies_selected(qtbot, window, samples, monkeypatch):
    from PySide6.QtWidgets import QFileDialog

    browser = window.browser
    import_and_wait(qtbot, window, [samples / "dcm_qa_ct/In/GE"])
    qtbot.waitUntil(lambda: browser.model.rowCount() == 1, timeout=10000)
    window.open_study(browser.model.studies[0].StudyInstanceUID)   # the user was reading a study
    wait_for_viewer(qtbot, window)
    qtbot.keyClicks(browser.search_bar.name_edit, "nobody")        # a search that hides what comes next
    qtbot.waitUntil(lambda: browser.model.rowCount() == 0, timeout=10000)
    window.tabs.setCurrentWidget(window.viewer)
    folder = samples / "tcia_covid19_ny_sbu"
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *args, **kwargs: str(folder))
    with qtbot.waitSignal(window.import_ended, timeout=60000) as ended:
        window.choose_folder()                                     # File > Import folder…
    report = ended.args[0]
    imported = set(report.study_uids)
    assert len(imported) == 6 and report.imported == 18
    assert window.tabs.currentWidget() is window.browser
    qtbot.waitUntil(lambda: {s.StudyInstanceUID for s in browser.model.studies} >= imported, timeout=10000)
    assert browser.search_bar.name_edit.text() == ""               # the search that hid them was cleared
    first_imported = next(browser.proxy.index(row, 0).data(STUDY_ROLE) for row in range(browser.proxy.rowCount())
                          if browser.proxy.index(row, 0).data(STUDY_ROLE).StudyInstanceUID in imported)
    qtbot.waitUntil(lambda: browser.current_study() is not None, timeout=10000)
    assert browser.current_study().StudyInstanceUID == first_imported.StudyInstanceUID
    qtbot.waitUntil(lambda: browser.series_table.rowCount() == 3, timeout=10000)   # its series are listed
    assert window.status_label.text().startswith("Imported 18 images of 6 studies")
    assert len(window.viewers) == 1                                # nothing more was opened for the user


def test_a_drop_shows_the_dropped_study_among_the_others(qtbot, window, samples):
    from PySide6.QtCore import QMimeData, QPointF, QUrl
    from PySide6.QtGui import QDropEvent

    browser = window.browser
    import_and_wait(qtbot, window, [samples / "dcm_qa_ct/In/GE"])
    qtbot.waitUntil(lambda: browser.model.rowCount() == 1, timeout=10000)
    window.open_study(browser.model.studies[0].StudyInstanceUID)
    wait_for_viewer(qtbot, window)
    window.tabs.setCurrentWidget(window.viewer)
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(samples / PHANTOM_STUDY))])
    event = QDropEvent(QPointF(50, 50), Qt.DropAction.CopyAction, mime, Qt.MouseButton.NoButton,
                       Qt.KeyboardModifier.NoModifier)
    with qtbot.waitSignal(window.import_ended, timeout=60000) as ended:
        window.dropEvent(event)
    assert ended.args[0].imported == 141 and len(ended.args[0].study_uids) == 1
    assert window.tabs.currentWidget() is window.browser
    qtbot.waitUntil(lambda: browser.current_study() is not None and browser.current_study().PatientID == "PLASTIC",
                    timeout=10000)
    assert browser.model.rowCount() == 2
    qtbot.waitUntil(lambda: browser.series_table.rowCount() == 2, timeout=10000)
    assert window.status_label.text() == "Imported 141 images of 1 study."
