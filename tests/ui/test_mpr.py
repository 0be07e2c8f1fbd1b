"""MPR in the viewer tab as a reader uses it: opened from the active series with Ctrl+M, planes through
the crosshair moved by a click and by scrolling, turned to an oblique, a slab, a length in a plane in
mm, saving a plane as DICOM, and a series that is no volume said so."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from PySide6.QtCore import QPoint, Qt

from workstation.core.pixels.voi import Window

pytestmark = pytest.mark.timeout(180)

AXIAL = "dcm_qa_ct/In/Philips/S21570/S2020"


def imported(qtbot, win, paths):
    with qtbot.waitSignal(win.import_ended, timeout=60000):
        win.import_paths([str(p) for p in paths])


def open_mpr(qtbot, window, samples):
    imported(qtbot, window, [samples / AXIAL])
    window.open_study(window.cache.cache.studies()[0].StudyInstanceUID)
    qtbot.waitUntil(lambda: window.viewer is not None and window.viewer.viewport.image is not None, timeout=20000)
    viewer = window.viewer
    qtbot.keyClick(viewer.viewport, Qt.Key.Key_M, Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(lambda: viewer.showing_mpr, timeout=30000)
    mpr = viewer.mpr
    qtbot.waitUntil(lambda: all(c.image is not None for c in mpr.cells.values()), timeout=30000)
    return viewer, mpr


def slices(samples):
    return sorted((pydicom.dcmread(p) for p in (samples / AXIAL).iterdir()),
                  key=lambda ds: float(ds.ImagePositionPatient[2]))


def test_the_axial_plane_is_the_slice_and_a_click_moves_the_other_planes(qtbot, window, samples):
    viewer, mpr = open_mpr(qtbot, window, samples)
    axial = mpr.cells["axial"]
    shown = axial.model.shown
    z = shown.plane.position[2]
    ds = next(d for d in slices(samples) if abs(float(d.ImagePositionPatient[2]) - z) < 1e-3)
    hu = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    values = axial.model.renderer.modality_values().reshape(hu.shape)
    assert np.allclose(values, hu, atol=1e-3)                                  # the slice's own HU
    assert set(axial.view_transform().orientation_labels().values()) == {"R", "L", "A", "P"}
    # the crosshair tool: a click in the axial brings the coronal and sagittal through that point
    qtbot.keyClick(axial, Qt.Key.Key_X)
    t = axial.view_transform()
    target = QPoint(*[round(v) for v in t.to_widget(300, 200)])
    qtbot.mouseClick(axial, Qt.MouseButton.LeftButton, pos=target)
    point = t.to_patient(target.x(), target.y())
    qtbot.waitUntil(lambda: not mpr.cells["coronal"].model.loading, timeout=10000)
    for name in ("coronal", "sagittal"):
        plane = mpr.cells[name].model.current.plane
        assert abs(plane.patient_to_pixel(point)[2]) <= 0.451 / 2 + 1e-6
    # scrolling the coronal moves the crosshair along its normal: the axial plane stays where it is
    before = axial.model.index
    qtbot.keyClick(mpr.cells["coronal"], Qt.Key.Key_Down)
    assert axial.model.index == before and mpr.session.point[1] != pytest.approx(point[1])


def test_an_oblique_a_slab_a_length_in_mm_and_back_to_2d(qtbot, window, samples):
    viewer, mpr = open_mpr(qtbot, window, samples)
    mpr.session.rotate(mpr.session.viewport_of("axial"), 30)
    coronal = mpr.cells["coronal"]
    qtbot.waitUntil(lambda: coronal.model.renderer is not None and not coronal.model.loading, timeout=10000)
    labels = coronal.view_transform().orientation_labels()
    assert len(labels["left"]) > 1 and "oblique" in " ".join(coronal.corner_texts()["top_right"])   # e.g. "RA"
    thin = coronal.model.renderer.modality_values()
    mpr.slab_box.setCurrentIndex(1)                                            # MIP
    mpr.thickness.setValue(10.0)
    qtbot.waitUntil(lambda: coronal.model.renderer is not None and not coronal.model.loading
                    and coronal.model.current.SliceThickness == 10.0, timeout=10000)
    thick = coronal.model.renderer.modality_values()
    assert thick.mean() > thin.mean()                                          # a maximum over 10 mm
    assert "Thk 10 mm" in coronal.corner_texts()["bottom_left"]
    # a length in the coronal plane, in mm from the plane's own geometry
    from workstation.core.viewer.annotations import measure, new_annotation

    plane = coronal.model.renderer.plane
    a = new_annotation("length", [(100, 100), (200, 100)], study_uid="s", series_uid="se", sop_uid="x", frame=0,
                       plane=plane)
    assert measure(a, plane.pixel_spacing).value == pytest.approx(100 * 0.451171875)
    p, q = np.array(a.patient_points)
    assert np.linalg.norm(q - p) == pytest.approx(100 * 0.451171875)
    # the plane as PNG: the image alone at its own resolution, and the whole MPR layout
    import tempfile
    from pathlib import Path

    from PySide6.QtGui import QImage

    out = Path(tempfile.mkdtemp())
    mpr.session.layout.activate(mpr.session.layout.index_of(coronal.model))
    assert viewer.export_to(str(out / "coronal.png"), annotations=False) is None
    saved = QImage(str(out / "coronal.png"))
    assert (saved.width(), saved.height()) == (plane.columns, plane.rows)
    assert viewer.export_to(str(out / "layout.png"), whole_layout=True) is None
    assert QImage(str(out / "layout.png")).size() == mpr.size()
    qtbot.keyClick(coronal, Qt.Key.Key_M, Qt.KeyboardModifier.ControlModifier)
    assert not viewer.showing_mpr and viewer.viewport is viewer.grid.active


def test_a_plane_is_saved_as_a_derived_series(qtbot, window, samples, monkeypatch):
    from PySide6.QtWidgets import QInputDialog

    viewer, mpr = open_mpr(qtbot, window, samples)
    mpr.session.layout.activate(mpr.session.layout.index_of(mpr.session.viewport_of("sagittal")))
    monkeypatch.setattr(QInputDialog, "getItem", lambda *a, **k: ("This plane", True))
    study = window.cache.cache.studies()[0].StudyInstanceUID
    before = {s.SeriesInstanceUID for s in window.cache.cache.series(study)}
    mpr.save_dicom()
    qtbot.waitUntil(lambda: len(window.cache.cache.series(study)) == len(before) + 1, timeout=30000)
    (saved,) = [s for s in window.cache.cache.series(study) if s.SeriesInstanceUID not in before]
    assert saved.Modality == "CT" and "sagittal" in saved.SeriesDescription and saved.NumberOfSeriesRelatedInstances == 1


def test_a_series_that_is_no_volume_says_why(qtbot, window, samples):
    imported(qtbot, window, [samples / "nema_wg04/J2KR/RG3_J2KR"])
    window.open_study(window.cache.cache.studies()[0].StudyInstanceUID)
    qtbot.waitUntil(lambda: window.viewer is not None and window.viewer.viewport.image is not None, timeout=20000)
    window.viewer.toggle_mpr()
    assert not window.viewer.showing_mpr
    assert "not a stack of slices" in window.status_label.text()


def test_the_crosshair_drives_the_2d_viewports_3d_cursor(qtbot, window, samples):
    viewer, mpr = open_mpr(qtbot, window, samples)
    target = mpr.session.point + np.array([0.0, 0.0, 20.0])
    mpr.session.set_cursor(mpr.session.viewport_of("coronal"), target)
    assert viewer.session.cursor is not None and np.allclose(viewer.session.cursor.point, target)
    qtbot.keyClick(mpr.active, Qt.Key.Key_M, Qt.KeyboardModifier.ControlModifier)       # back to 2D
    stack = viewer.viewport.model
    assert abs(stack.current.plane.position[2] - target[2]) <= 0.5
    # the slice is painted a moment later; the cursor is drawn in it once it is shown
    qtbot.waitUntil(lambda: stack.shown is not None and stack.shown == stack.current, timeout=10000)
    assert viewer.session.cursor_in(stack) is not None


def frame_array(view) -> np.ndarray:
    image = view.frame
    return np.frombuffer(image.constBits(), np.uint8).reshape(image.height(), image.bytesPerLine())[
        :, :image.width() * 3].reshape(image.height(), image.width(), 3).copy()


def differ(a: np.ndarray, b: np.ndarray) -> float:
    """Mean difference of two frames over their common top-left part (the quarter may have been resized)."""
    h, w = min(a.shape[0], b.shape[0]), min(a.shape[1], b.shape[1])
    return float(np.abs(a[:h, :w].astype(int) - b[:h, :w].astype(int)).mean())


def test_the_3d_quarter_renders_turns_with_the_mouse_and_clips(qtbot, window, samples):
    viewer, mpr = open_mpr(qtbot, window, samples)
    view = mpr.view3d
    qtbot.waitUntil(lambda: view.final, timeout=60000)
    first, _ = view.rendered[0]
    assert not first.shade and first.fast and view.frame_state.shade     # a quick preview, then the shaded frame
    assert view.preset.name == "CT soft tissue"
    assert view.camera.orientation_labels() == {"left": "R", "right": "L", "top": "H", "bottom": "F"}
    front = frame_array(view)
    assert front.shape[:2] == (view.canvas.height(), view.canvas.width()) and front.max() > 100
    # a drag to the right turns the volume: seen from the patient's right, anterior on the right
    canvas = view.canvas
    start = canvas.rect().center()
    qtbot.mousePress(canvas, Qt.MouseButton.LeftButton, pos=start)
    for dx in range(10, 181, 10):
        qtbot.mouseMove(canvas, start + QPoint(dx, 0))
    qtbot.waitUntil(lambda: view.frame_state is not None and view.frame_state.fast, timeout=20000)
    qtbot.mouseRelease(canvas, Qt.MouseButton.LeftButton, pos=start + QPoint(180, 0))
    qtbot.waitUntil(lambda: view.final, timeout=30000)
    assert view.camera.orientation_labels()["right"] == "A" and view.camera.orientation_labels()["left"] == "P"
    side = frame_array(view)
    assert differ(side, front) > 5
    # another preset, then the 3D MIP in the planes' window (grey)
    view.set_preset("CT bone")
    qtbot.waitUntil(lambda: view.final and view.frame_state.preset.name == "CT bone", timeout=30000)
    view.set_mip(True)
    qtbot.waitUntil(lambda: view.final and view.frame_state.mip, timeout=30000)
    mip = frame_array(view).astype(int)
    assert np.array_equal(mip[..., 0], mip[..., 1]) and mip.max() > 100
    # the MIP is in the active plane's window, and follows it
    active = mpr.active_model
    assert view.frame_state.preset.color[0][0] == pytest.approx(active.shown_window().center - active.shown_window().width / 2)
    active.set_window(Window(1000.0, 3000.0))
    qtbot.waitUntil(lambda: view.final and view.frame_state.preset.color[-1][0] == pytest.approx(2500.0), timeout=30000)
    mip = frame_array(view).astype(int)
    # the clipping box: the upper half of the slider range of the first axis cut away
    view.clip_box.setChecked(True)
    view.sliders[0][1].setValue(50)
    qtbot.waitUntil(lambda: view.final and view.frame_state.clip.high[0] == 0.5, timeout=30000)
    assert differ(frame_array(view), mip) > 1
    # Backspace: from the front again; a double click: the 3D view alone
    qtbot.keyClick(canvas, Qt.Key.Key_Backspace)
    assert view.camera.orientation_labels()["left"] == "R"
    quarter = view.size()
    qtbot.mouseDClick(canvas, Qt.MouseButton.LeftButton, pos=start)
    assert all(not c.isVisible() for c in mpr.cells.values()) and view.isVisible()
    qtbot.waitUntil(lambda: view.width() > 1.8 * quarter.width() and view.height() > 1.8 * quarter.height())
    qtbot.mouseDClick(canvas, Qt.MouseButton.LeftButton, pos=start)          # and back to the 2x2
    qtbot.waitUntil(lambda: abs(view.width() - quarter.width()) <= 2 and all(c.isVisible() for c in mpr.cells.values()))


def test_closing_the_tab_stops_mprs_workers_and_the_3d_renderer(qtbot, window, samples):
    import threading

    viewer, mpr = open_mpr(qtbot, window, samples)
    qtbot.waitUntil(lambda: mpr.view3d.thread is not None, timeout=20000)
    assert any(t.name == "volume-render" for t in threading.enumerate())
    window.close_tab(window.tabs.indexOf(viewer))
    assert mpr.view3d.thread is None and not any(t.name == "volume-render" for t in threading.enumerate())
