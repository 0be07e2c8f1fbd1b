"""The viewport paints through the view transform: at one screen pixel per image pixel its pixels are
the core's render output, upright and turned."""

from __future__ import annotations

import numpy as np
from PySide6.QtGui import QImage

from workstation.core.model.display_set import DisplaySet, FrameRef
from workstation.core.model.records import Series
from workstation.services.frame_service import FrameService
from workstation.ui.viewer.viewport import ViewportWidget

SAFE = slice(90, 420)   # clear of the corner texts and edge labels


def grab_grey(widget) -> np.ndarray:
    image = widget.grab().toImage().convertToFormat(QImage.Format.Format_Grayscale8)
    buffer = np.frombuffer(image.constBits(), np.uint8).reshape(image.height(), image.bytesPerLine())
    return buffer[:, :image.width()].copy()


def test_screen_pixels_are_the_render_output_upright_and_turned(qtbot, samples):
    path = sorted((samples / "dcm_qa_ct/In/Philips/S21570/S2020").iterdir())[70]
    frames = FrameService()
    try:
        viewport = ViewportWidget(frames)
        qtbot.addWidget(viewport)
        viewport.setFixedSize(512, 512)
        viewport.show()
        qtbot.waitExposed(viewport)
        ref = FrameRef(str(path), 0, "x")
        viewport.show_display_set(DisplaySet(Series(SeriesInstanceUID="1.2"), None, (ref,)))
        qtbot.waitUntil(lambda: viewport.renderer is not None, timeout=10000)
        expected = viewport.renderer.render(viewport.window)
        assert expected.shape == (512, 512)
        shown = grab_grey(viewport)
        assert np.array_equal(shown[SAFE, SAFE], expected[SAFE, SAFE])
        viewport.model.rotate(1)
        viewport.repaint()
        turned = grab_grey(viewport)
        assert np.array_equal(turned[SAFE, SAFE], np.rot90(expected, -1)[SAFE, SAFE])   # clockwise
        assert not np.array_equal(turned[SAFE, SAFE], shown[SAFE, SAFE])
    finally:
        frames.shutdown()


def test_a_series_keeps_its_first_images_window_while_scrolling(qtbot, samples):
    """MR files often carry a window per image (here W 9, then W 7, ...): scrolling must not make the
    picture jump; the first image's window holds until the user chooses another."""
    from workstation.core.pixels.voi import Window

    files = sorted((samples / "dcm_qa_deident/In").glob("*.dcm"))[:4]
    frames = FrameService()
    try:
        viewport = ViewportWidget(frames)
        qtbot.addWidget(viewport)
        viewport.show_display_set(DisplaySet(Series(SeriesInstanceUID="1.2"), None,
                                             tuple(FrameRef(str(p), 0, p.name) for p in files)))
        qtbot.waitUntil(lambda: viewport.renderer is not None and viewport.shown_index == 0, timeout=10000)
        first = viewport.renderer.default_window
        corner = viewport.corner_texts()["bottom_right"]
        viewport.set_index(2)
        qtbot.waitUntil(lambda: viewport.shown_index == 2, timeout=10000)
        assert viewport.renderer.default_window.width != first.width   # this image's own window differs
        assert viewport.corner_texts()["bottom_right"] == corner
        assert np.array_equal(viewport.renderer.render(viewport.shown_window()), viewport.renderer.render(first))
        viewport.set_window(Window(100.0, 50.0))
        assert viewport.shown_window() == Window(100.0, 50.0)
        viewport.set_window(None)                                           # back to the series' own
        assert viewport.shown_window() == first
    finally:
        frames.shutdown()
