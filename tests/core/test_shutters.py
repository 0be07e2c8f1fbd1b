"""Display shutters (PS3.3 C.7.6.11 and the Frame Display Shutter functional group).

No sample carries a shutter, so each test makes a copy of a real image with shutter attributes added
(an RF image, a MONOCHROME1 CR, an enhanced multi-frame MR) and compares the rendered output with the
same image rendered without them, outside a mask computed here in numpy from the standard's
conventions: rows and columns count from 1 at the upper left pixel's centre, the left and right
vertical edges are columns and the upper and lower horizontal edges rows, a pixel shows when its centre
lies inside or on the border of every shape given.
"""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from workstation.core.pixels import FrameRenderer, ImageSource
from workstation.core.pixels.shutters import Shutter, read_shutter, shutter_mask

pytestmark = pytest.mark.samples

RF = "orthanc_tests/Database/KarstenHilbertRF.dcm"          # 464 x 512, native, with a Modality LUT
CR = "orthanc_tests/Database/Issue44/Monochrome1-Jpeg.dcm"  # MONOCHROME1, JPEG baseline
ENHANCED = "dcm_qa_enh/In/Siemens/XA10/6_1.dcm"              # enhanced MR, 6 frames of 64 x 64


def _centres(rows: int, columns: int) -> tuple[np.ndarray, np.ndarray]:
    return np.mgrid[1:rows + 1, 1:columns + 1]   # 1-based row and column of each pixel centre


def _rectangle(shape, left, right, upper, lower) -> np.ndarray:
    r, c = _centres(*shape)
    return (left <= c) & (c <= right) & (upper <= r) & (r <= lower)


def _circle(shape, row, column, radius) -> np.ndarray:
    r, c = _centres(*shape)
    return (r - row) ** 2 + (c - column) ** 2 <= radius ** 2


def _convex(shape, vertices) -> np.ndarray:
    """Inside a convex polygon: on the inner side of (or on) every edge, whatever the vertex order."""
    r, c = _centres(*shape)
    sides = []
    for (r0, c0), (r1, c1) in zip(vertices, vertices[1:] + vertices[:1], strict=True):
        sides.append(np.sign((r1 - r0) * (c - c0) - (c1 - c0) * (r - r0)))
    sides = np.stack(sides)
    return np.all(sides >= 0, axis=0) | np.all(sides <= 0, axis=0)


def _copy(samples, rel, tmp_path, change) -> tuple[FrameRenderer, FrameRenderer]:
    ds = pydicom.dcmread(samples / rel)
    change(ds)
    out = tmp_path / "shuttered.dcm"
    ds.save_as(out, enforce_file_format=True)
    return FrameRenderer(ImageSource.open(samples / rel)), FrameRenderer(ImageSource.open(out))


def _check(plain: FrameRenderer, shuttered: FrameRenderer, visible: np.ndarray, grey: int) -> None:
    assert 0 < visible.sum() < visible.size
    np.testing.assert_array_equal(shuttered.render(), np.where(visible, plain.render(), np.uint8(grey)))
    window = plain.default_window
    np.testing.assert_array_equal(shuttered.render(window), np.where(visible, plain.render(window), np.uint8(grey)))


def test_rectangular_shutter_with_a_presentation_value(samples, tmp_path):
    def change(ds):
        ds.ShutterShape = "RECTANGULAR"
        ds.ShutterLeftVerticalEdge, ds.ShutterRightVerticalEdge = 40, 400      # columns
        ds.ShutterUpperHorizontalEdge, ds.ShutterLowerHorizontalEdge = 25, 300  # rows
        ds.ShutterPresentationValue = 0x8000

    plain, shuttered = _copy(samples, RF, tmp_path, change)
    assert shuttered.source.is_native_file   # group 0018: the fast path's header has it
    assert shuttered.shutter == Shutter(("RECTANGULAR",), rectangle=(40, 400, 25, 300), presentation_value=0x8000)
    _check(plain, shuttered, _rectangle((464, 512), 40, 400, 25, 300), round(0x8000 * 255 / 0xFFFF))


def test_circular_shutter_is_black_without_a_value(samples, tmp_path):
    def change(ds):
        ds.ShutterShape = "CIRCULAR"
        ds.CenterOfCircularShutter = [230, 260]   # row, column
        ds.RadiusOfCircularShutter = 180

    plain, shuttered = _copy(samples, RF, tmp_path, change)
    assert shuttered.shutter.grey == 0
    _check(plain, shuttered, _circle((464, 512), 230, 260, 180), 0)


def test_polygonal_shutters_convex_and_concave(samples, tmp_path):
    triangle = [(20, 30), (400, 60), (200, 500)]   # (row, column) vertices

    def convex(ds):
        ds.ShutterShape = "POLYGONAL"
        ds.VerticesOfThePolygonalShutter = [v for vertex in triangle for v in vertex]
        ds.ShutterPresentationValue = 0xFFFF

    plain, shuttered = _copy(samples, RF, tmp_path, convex)
    _check(plain, shuttered, _convex((464, 512), triangle), 255)

    ell = [(10, 10), (10, 100), (200, 100), (200, 300), (400, 300), (400, 10)]   # an L, concave at (200, 100)

    def concave(ds):
        ds.ShutterShape = "POLYGONAL"
        ds.VerticesOfThePolygonalShutter = [v for vertex in ell for v in vertex]

    plain, shuttered = _copy(samples, RF, tmp_path, concave)
    union = _rectangle((464, 512), 10, 100, 10, 400) | _rectangle((464, 512), 100, 300, 200, 400)
    _check(plain, shuttered, union, 0)


def test_combined_shapes_show_only_what_all_leave_visible_on_monochrome1(samples, tmp_path):
    """RECTANGULAR\\CIRCULAR: the least of the image stays visible. On a MONOCHROME1 CR the shutter's
    P-value is not inverted with the image: 0 stays black."""
    def change(ds):
        ds.ShutterShape = ["RECTANGULAR", "CIRCULAR"]
        ds.ShutterLeftVerticalEdge, ds.ShutterRightVerticalEdge = 300, 1800
        ds.ShutterUpperHorizontalEdge, ds.ShutterLowerHorizontalEdge = 200, 2300
        ds.CenterOfCircularShutter = [1200, 1000]
        ds.RadiusOfCircularShutter = 1000
        ds.ShutterPresentationValue = 0

    plain, shuttered = _copy(samples, CR, tmp_path, change)
    assert shuttered.invert
    shape = (2446, 2010)
    _check(plain, shuttered, _rectangle(shape, 300, 1800, 200, 2300) & _circle(shape, 1200, 1000, 1000), 0)


def test_frame_display_shutter_functional_group(samples, tmp_path):
    """Enhanced objects keep a frame's shutter in Frame Display Shutter Sequence: a per-frame item for
    frame 2, the shared item for the others."""
    def item(left, right, upper, lower, value):
        shutter = Dataset()
        shutter.ShutterShape = "RECTANGULAR"
        shutter.ShutterLeftVerticalEdge, shutter.ShutterRightVerticalEdge = left, right
        shutter.ShutterUpperHorizontalEdge, shutter.ShutterLowerHorizontalEdge = upper, lower
        shutter.ShutterPresentationValue = value
        return Sequence([shutter])

    def change(ds):
        ds.SharedFunctionalGroupsSequence[0].FrameDisplayShutterSequence = item(5, 60, 10, 50, 0xFFFF)
        ds.PerFrameFunctionalGroupsSequence[2].FrameDisplayShutterSequence = item(20, 30, 1, 64, 0)

    ds = pydicom.dcmread(samples / ENHANCED)
    change(ds)
    out = tmp_path / "enhanced.dcm"
    ds.save_as(out, enforce_file_format=True)
    plain, shuttered = ImageSource.open(samples / ENHANCED), ImageSource.open(out)
    for frame in range(6):
        expected = (20, 30, 1, 64) if frame == 2 else (5, 60, 10, 50)
        renderer = FrameRenderer(shuttered, frame)
        assert renderer.shutter.rectangle == expected
        _check(FrameRenderer(plain, frame), renderer, _rectangle((64, 64), *expected), 0 if frame == 2 else 255)


def test_no_shutter_and_unusable_coordinates(samples):
    assert FrameRenderer(ImageSource.open(samples / RF)).shutter is None
    ds = Dataset()
    ds.ShutterShape = "POLYGONAL"
    ds.VerticesOfThePolygonalShutter = [1, 1, 5, 5]   # two vertices: not a polygon
    assert read_shutter(ds) is None
    assert shutter_mask((3, 4), None).all()
