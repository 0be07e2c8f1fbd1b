"""The reading viewer driven as a reader would: layouts, the strip, tools drawn with the mouse, keys,
linked viewports, key images, export, and the rule that a viewport never shows another study's
image than the one its corners name."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QDropEvent, QImage

from workstation.app import build, shutdown
from workstation.core.viewer.keymap import BINDINGS

pytestmark = pytest.mark.timeout(180)

PHANTOM = "dcm_qa_ct/In/Philips/S21570"
TCIA = "tcia_covid19_ny_sbu/data-sample/A002304"


def imported(qtbot, win, paths):
    with qtbot.waitSignal(win.import_ended, timeout=60000) as blocker:
        win.import_paths([str(p) for p in paths])
    return blocker.args[0]


def open_study(qtbot, win, study_uid):
    with qtbot.waitSignal(win.display_set_shown, timeout=20000):
        win.open_study(study_uid)
    viewer = win.viewer
    qtbot.waitUntil(lambda: all(c.model.display_set is None or c.image is not None or c.model.error
                                for c in viewer.grid.cells), timeout=20000)
    return viewer


def study_uid_of(path: Path) -> str:
    first = next(p for p in sorted(path.rglob("*")) if p.is_file()) if path.is_dir() else path
    return pydicom.dcmread(first, stop_before_pixels=True).StudyInstanceUID


def assert_each_viewport_shows_its_own_study(viewer):
    """What is on screen belongs to the display set (and so the study) its corners name."""
    for cell in viewer.grid.cells:
        model = cell.model
        if model.renderer is None:
            continue
        assert model.shown in model.display_set.frames
        ds = pydicom.dcmread(model.shown.path, stop_before_pixels=True)
        assert ds.StudyInstanceUID == model.display_set.StudyInstanceUID
        corners = cell.corner_texts()
        assert model.display_set.study.PatientID in corners["top_left"]
        assert ds.PatientID == model.display_set.study.PatientID


def test_a_study_opens_by_its_protocol_and_the_strip_puts_series_where_they_are_dropped(qtbot, window, samples):
    imported(qtbot, window, [samples / PHANTOM])
    viewer = open_study(qtbot, window, study_uid_of(samples / PHANTOM))
    assert viewer.arrangement.protocol == "CT head"
    assert (viewer.session.layout.rows, viewer.session.layout.columns) == (1, 1)
    assert len(viewer.viewport.display_set) == 140
    window.viewer.set_grid(1, 2)
    strip = viewer.strip
    scout_row = next(i for i in range(strip.count()) if "1 image" in strip.item(i).text())
    mime = strip.mimeData([strip.item(scout_row)])
    target = viewer.grid.cells[1]
    event = QDropEvent(QPointF(20, 20), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                       Qt.KeyboardModifier.NoModifier)
    target.dropEvent(event)
    assert target.model.display_set.is_localizer
    qtbot.waitUntil(lambda: target.image is not None, timeout=10000)
    # double click maximises a viewport and back
    qtbot.mouseDClick(target, Qt.MouseButton.LeftButton, pos=QPoint(40, 40))
    assert viewer.session.layout.maximised == 1 and not viewer.grid.cells[0].isVisible()
    qtbot.mouseDClick(target, Qt.MouseButton.LeftButton, pos=QPoint(40, 40))
    assert viewer.session.layout.maximised is None and viewer.grid.cells[0].isVisible()
    assert viewer.session.layout.active == 1 and target.active


def test_a_length_drawn_with_the_mouse_measures_millimetres_and_undo_removes_it(qtbot, window, samples, tmp_path):
    src = pydicom.dcmread(sorted((samples / PHANTOM / "S2020").iterdir())[60])
    src.PixelSpacing = [0.5, 0.5]                 # a derived copy with a round spacing
    src.save_as(tmp_path / "half.dcm")
    imported(qtbot, window, [tmp_path / "half.dcm"])
    viewer = open_study(qtbot, window, src.StudyInstanceUID)
    viewport = viewer.viewport
    viewport.model.set_view(viewport.model.view.at_scale(1.0))     # one screen pixel per image pixel
    t = viewport.view_transform()
    start = QPoint(*[round(v) for v in t.to_widget(150, 200)])
    end = QPoint(*[round(v) for v in t.to_widget(250, 200)])
    qtbot.keyClick(viewport, Qt.Key.Key_L)                          # the length tool
    assert viewer.tools.tool == "length"
    qtbot.mousePress(viewport, Qt.MouseButton.LeftButton, pos=start)
    qtbot.mouseMove(viewport, start + QPoint(40, 0))
    qtbot.mouseMove(viewport, end)
    qtbot.mouseRelease(viewport, Qt.MouseButton.LeftButton, pos=end)
    (length,) = viewer.session.annotations.for_study(src.StudyInstanceUID)
    from workstation.core.viewer.annotations import measure

    assert measure(length, viewport.model.renderer.plane.pixel_spacing).lines == ("50.0 mm",)
    qtbot.keyClick(viewport, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert viewer.session.annotations.for_study(src.StudyInstanceUID) == []
    qtbot.keyClick(viewport, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
    assert len(viewer.session.annotations.for_study(src.StudyInstanceUID)) == 1
    # select it with a click on it and delete it
    qtbot.keyClick(viewport, Qt.Key.Key_W)
    qtbot.mouseClick(viewport, Qt.MouseButton.LeftButton, pos=QPoint((start.x() + end.x()) // 2, start.y()))
    assert viewer.tools.selected == length.uid
    qtbot.keyClick(viewport, Qt.Key.Key_Delete)
    assert viewer.session.annotations.for_study(src.StudyInstanceUID) == []


def test_keys_choose_presets_invert_rotate_and_the_labels_follow(qtbot, window, samples):
    imported(qtbot, window, [samples / "dcm_qa_ct/In/GE"])
    viewer = open_study(qtbot, window, study_uid_of(samples / "dcm_qa_ct/In/GE"))
    viewport = viewer.viewport
    qtbot.keyClick(viewport, Qt.Key.Key_4)                       # CT: 4 is the lung window
    assert viewport.model.window == viewer.presets["Lung"]
    qtbot.keyClick(viewport, Qt.Key.Key_0)
    assert viewport.model.window is None
    before = viewport.view_transform().orientation_labels()
    qtbot.keyClick(viewport, Qt.Key.Key_R, Qt.KeyboardModifier.ControlModifier)
    after = viewport.view_transform().orientation_labels()
    assert after["top"] == before["left"] and after["right"] == before["top"]   # turned clockwise
    qtbot.keyClick(viewport, Qt.Key.Key_H, Qt.KeyboardModifier.ControlModifier)
    assert viewport.view_transform().orientation_labels()["left"] == after["right"]
    qtbot.keyClick(viewport, Qt.Key.Key_I)
    assert viewport.model.view.invert and "inverted" in " ".join(viewport.corner_texts()["bottom_right"])
    qtbot.keyClick(viewport, Qt.Key.Key_Backspace)
    assert viewport.model.view.rotation == 0 and not viewport.model.view.flip_horizontal
    qtbot.keyClick(viewport, Qt.Key.Key_End)
    assert viewport.model.index == len(viewport.model.frames) - 1
    qtbot.keyClick(viewport, Qt.Key.Key_PageUp)
    assert viewport.model.index == len(viewport.model.frames) - 11


def test_key_images_are_marked_and_filtered(qtbot, window, samples):
    imported(qtbot, window, [samples / PHANTOM / "S2020"])
    viewer = open_study(qtbot, window, study_uid_of(samples / PHANTOM))
    viewport = viewer.viewport
    for index in (10, 40):
        viewport.model.set_index(index)
        qtbot.keyClick(viewport, Qt.Key.Key_K)
    marked = [viewport.model.display_set.frames[i] for i in (10, 40)]
    qtbot.waitUntil(lambda: not viewport.model.loading, timeout=10000)
    assert "KEY IMAGE" in viewport.corner_texts()["top_right"]
    qtbot.keyClick(viewport, Qt.Key.Key_K, Qt.KeyboardModifier.ShiftModifier)
    assert list(viewport.model.frames) == marked
    qtbot.keyClick(viewport, Qt.Key.Key_K, Qt.KeyboardModifier.ShiftModifier)
    assert len(viewport.model.frames) == 140


def test_viewports_never_show_another_studys_image_while_swapped_and_arriving(qtbot, window, samples, tmp_path):
    folder = samples / TCIA
    imported(qtbot, window, [folder])
    studies = sorted(window.cache.cache.studies(), key=lambda s: s.StudyDate)
    viewer = open_study(qtbot, window, studies[-1].StudyInstanceUID)
    window.open_prior(viewer, studies[0])
    qtbot.waitUntil(lambda: len(viewer.session.studies) == 2, timeout=20000)
    viewer.set_grid(2, 2)
    layout = viewer.session.layout
    qtbot.waitUntil(lambda: all(c.model.display_set is None or c.image is not None for c in viewer.grid.cells),
                    timeout=20000)
    assert {c.model.display_set.StudyInstanceUID for c in viewer.grid.cells if c.model.display_set} == \
        {s.StudyInstanceUID for s in studies}
    for a, b in ((0, 1), (1, 3), (2, 0), (3, 2)):
        layout.swap(a, b)
        assert_each_viewport_shows_its_own_study(viewer)
        qtbot.wait(20)
        assert_each_viewport_shows_its_own_study(viewer)
    # a study arriving while shown: more slices join the stack on screen, whose corners stay its own
    files = sorted((samples / PHANTOM / "S2020").iterdir())
    imported(qtbot, window, files[:5])
    phantom = open_study(qtbot, window, study_uid_of(samples / PHANTOM))
    for chunk in (files[5:30], files[30:60]):
        phantom.viewport.model.set_index(len(phantom.viewport.model.frames) - 1)
        window.import_paths([str(p) for p in chunk])
        qtbot.waitUntil(lambda: window.import_job is None, timeout=30000)
        assert_each_viewport_shows_its_own_study(phantom)
    qtbot.waitUntil(lambda: len(phantom.viewport.model.frames) == 60, timeout=20000)
    qtbot.waitUntil(lambda: not phantom.viewport.model.loading, timeout=20000)
    assert_each_viewport_shows_its_own_study(phantom)


def test_export_writes_the_rendered_image_and_the_viewport(qtbot, window, samples, tmp_path):
    imported(qtbot, window, [samples / "dcm_qa_ct/In/GE"])
    viewer = open_study(qtbot, window, study_uid_of(samples / "dcm_qa_ct/In/GE"))
    plain = tmp_path / "image.png"
    assert viewer.export_to(str(plain), annotations=False) is None
    image = QImage(str(plain)).convertToFormat(QImage.Format.Format_Grayscale8)
    buffer = np.frombuffer(image.constBits(), np.uint8).reshape(image.height(), image.bytesPerLine())[:, :image.width()]
    assert np.array_equal(buffer, viewer.active_model.render())       # the pipeline's pixels, not a screen grab
    shot = tmp_path / "viewport.jpg"
    assert viewer.export_to(str(shot), annotations=True) is None
    assert QImage(str(shot)).size() == viewer.viewport.size()
    assert "choose a .png or .jpg" in viewer.export_to(str(tmp_path / "x.bmp"))


def test_the_help_lists_every_binding_and_the_readme_agrees(qtbot, window):
    from workstation.ui.viewer.help_dialog import help_html

    html = help_html()
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    missing = []
    for binding in BINDINGS:
        for key in binding.keys:
            assert key.replace("&", "&amp;") in html
            if not re.search(rf"`{re.escape(key)}`", readme):
                missing.append(f"{key} ({binding.text})")
    assert not missing, f"the README's keyboard table lacks: {missing}"


def test_annotations_and_key_images_survive_closing_and_reopening_the_study(qtbot, window, samples):
    from workstation.core.dicom.key_objects import load_key_object
    from workstation.core.viewer.annotations import new_annotation

    imported(qtbot, window, [samples / PHANTOM / "S2020"])
    uid = study_uid_of(samples / PHANTOM)
    viewer = open_study(qtbot, window, uid)
    model = viewer.viewport.model
    model.set_index(30)
    qtbot.waitUntil(lambda: not model.loading, timeout=10000)
    ref, ds = model.shown, model.display_set
    drawn = new_annotation("ellipse", [(200, 200), (260, 240)], study_uid=uid, series_uid=ds.SeriesInstanceUID,
                           sop_uid=ref.SOPInstanceUID, frame=ref.frame, plane=ref.plane)
    viewer.session.annotations.add(drawn)
    qtbot.keyClick(viewer.viewport, Qt.Key.Key_K)
    cache = window.cache.cache
    qtbot.waitUntil(lambda: cache.key_objects(uid) != [], timeout=10000)     # a KOS document in the cache
    (document,) = cache.key_objects(uid)
    assert load_key_object(document.path).keys == [(ref.SOPInstanceUID, None)]
    window.close_tab(window.tabs.indexOf(viewer))                            # saves what is not saved yet
    qtbot.waitUntil(lambda: cache.annotations(uid) != [], timeout=10000)
    assert window.viewer is None
    again = open_study(qtbot, window, uid)
    qtbot.waitUntil(lambda: again.session.annotations.for_study(uid) == [drawn], timeout=10000)
    qtbot.waitUntil(lambda: again.session.key_images.get(uid) == frozenset({(ref.SOPInstanceUID, 0)}), timeout=10000)
    assert len(again.viewport.model.frames) == 140            # the key-image document is no image to scroll
    again.viewport.model.set_index(ds.frames.index(ref))
    qtbot.waitUntil(lambda: not again.viewport.model.loading, timeout=10000)
    assert "KEY IMAGE" in again.viewport.corner_texts()["top_right"]
    # unmarking writes a new document without it
    qtbot.keyClick(again.viewport, Qt.Key.Key_K)
    qtbot.waitUntil(lambda: cache.key_objects(uid) == [], timeout=10000)


def test_the_mouse_buttons_set_by_the_reader_are_kept_for_the_next_window(qtbot, workstation_home, samples):
    from PySide6.QtCore import QPoint

    def open_window():
        win, services = build(workstation_home)
        qtbot.addWidget(win)
        win.show()
        return win, services

    win, services = open_window()
    try:
        imported(qtbot, win, [samples / "dcm_qa_ct/In/GE"])
        viewer = open_study(qtbot, win, study_uid_of(samples / "dcm_qa_ct/In/GE"))
        viewer.tools.set_button("right", "scroll")
        viewport = viewer.viewport
        start = viewport.model.index
        centre = viewport.rect().center()
        qtbot.mousePress(viewport, Qt.MouseButton.RightButton, pos=centre)
        qtbot.mouseMove(viewport, centre + QPoint(0, 40))
        qtbot.mouseRelease(viewport, Qt.MouseButton.RightButton, pos=centre + QPoint(0, 40))
        assert viewport.model.index == start + 10                     # dragging down 40 px: ten images on
        win.close()
    finally:
        shutdown(services)
    win, services = open_window()
    try:
        viewer = open_study(qtbot, win, study_uid_of(samples / "dcm_qa_ct/In/GE"))
        assert viewer.tools.buttons == {"middle": "pan", "right": "scroll"}
    finally:
        shutdown(services)
