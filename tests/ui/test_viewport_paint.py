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
        viewport.view_state = viewport.view_state.rotated(1)
        viewport.repaint()
        turned = grab_grey(viewport)
        assert np.array_equal(turned[SAFE, SAFE], np.rot90(expected, -1)[SAFE, SAFE])   # clockwise
        assert not np.array_equal(turned[SAFE, SAFE], shown[SAFE, SAFE])
    finally:
        frames.shutdown()
