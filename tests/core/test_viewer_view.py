"""The view transform: image <-> widget <-> patient, with aspect, zoom, pan, rotation and flips."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest

from workstation.core.dicom.geometry import ImagePlane, orientation_labels, plane_from_dataset
from workstation.core.viewer.view import ViewState, ViewTransform


def plane(row_dir, col_dir, spacing=(0.5, 0.5), rows=512, columns=512, position=(-128.0, -100.0, 40.0)):
    return ImagePlane(np.array(position, float), np.array(row_dir, float), np.array(col_dir, float),
                      spacing, rows, columns)


AXIAL = plane((1, 0, 0), (0, 1, 0))
CORONAL = plane((1, 0, 0), (0, 0, -1))
SAGITTAL = plane((0, 1, 0), (0, 0, -1))


def test_a_fitted_square_image_maps_pixel_centres_and_back():
    t = ViewTransform.build(512, 512, (512, 512))
    assert t.to_widget(0, 0) == pytest.approx((0.5, 0.5))
    assert t.to_widget(511, 511) == pytest.approx((511.5, 511.5))
    assert t.to_image(*t.to_widget(123.25, 77.5)) == pytest.approx((123.25, 77.5))
    assert t.pixel(0.1, 0.1) == (0, 0) and t.pixel(511.9, 0.2) == (511, 0) and t.pixel(-1, 3) is None


def test_unequal_spacing_shows_square_millimetres_and_the_image_is_centred():
    # rows 1.0 mm apart, columns 0.5 mm apart: 100 rows are as tall as 200 columns are wide
    t = ViewTransform.build(200, 100, (400, 400), pixel_spacing=(1.0, 0.5))
    x0, y0 = t.to_widget(-0.5, -0.5)
    x1, y1 = t.to_widget(199.5, 99.5)
    assert (x1 - x0) == pytest.approx(y1 - y0) == pytest.approx(400)
    assert ((x0 + x1) / 2, (y0 + y1) / 2) == pytest.approx((200, 200))


def test_zoom_keeps_the_centre_and_pan_moves_it():
    base = ViewTransform.build(512, 512, (600, 400))
    zoomed = ViewTransform.build(512, 512, (600, 400), ViewState().zoomed(2))
    assert zoomed.scale == pytest.approx(2 * base.scale)
    assert zoomed.to_widget(255.5, 255.5) == pytest.approx((300, 200))
    panned = ViewTransform.build(512, 512, (600, 400), ViewState().zoomed(2).panned(30, -10))
    assert panned.to_widget(255.5, 255.5) == pytest.approx((330, 190))


def test_rotation_and_flips_move_the_corners_where_a_reader_expects():
    size = (512, 512)
    cw = ViewTransform.build(512, 512, size, ViewState().rotated(1))
    assert cw.to_widget(-0.5, -0.5) == pytest.approx((512, 0))        # top-left corner to top-right
    ccw = ViewTransform.build(512, 512, size, ViewState().rotated(-1))
    assert ccw.to_widget(-0.5, -0.5) == pytest.approx((0, 512))       # to bottom-left
    h = ViewTransform.build(512, 512, size, ViewState().flipped(horizontal=True))
    assert h.to_widget(-0.5, -0.5) == pytest.approx((512, 0))
    v = ViewTransform.build(512, 512, size, ViewState().flipped(horizontal=False))
    assert v.to_widget(-0.5, -0.5) == pytest.approx((0, 512))


def test_a_turn_under_a_mirror_still_turns_the_picture_clockwise_on_screen():
    size = (512, 512)
    state = ViewState().flipped(horizontal=True)
    before = ViewTransform.build(512, 512, size, state).matrix[:, :2]
    after = ViewTransform.build(512, 512, size, state.rotated(1)).matrix[:, :2]
    clockwise = np.array([[0, -1], [1, 0]])
    assert np.allclose(after, clockwise @ before)


@pytest.mark.parametrize(("p", "labels"), [
    (AXIAL, {"left": "R", "right": "L", "top": "A", "bottom": "P"}),
    (CORONAL, {"left": "R", "right": "L", "top": "H", "bottom": "F"}),
    (SAGITTAL, {"left": "A", "right": "P", "top": "H", "bottom": "F"}),
])
def test_orientation_labels_follow_rotation_and_flips(p, labels):
    size = (512, 512)
    assert ViewTransform.build(512, 512, size, plane=p).orientation_labels() == labels == orientation_labels(p)
    cw = ViewTransform.build(512, 512, size, ViewState().rotated(1), plane=p).orientation_labels()
    assert cw == {"top": labels["left"], "right": labels["top"], "bottom": labels["right"], "left": labels["bottom"]}
    h = ViewTransform.build(512, 512, size, ViewState().flipped(True), plane=p).orientation_labels()
    assert h == {**labels, "left": labels["right"], "right": labels["left"]}
    v = ViewTransform.build(512, 512, size, ViewState().flipped(False).rotated(2), plane=p).orientation_labels()
    assert v == {**labels, "left": labels["right"], "right": labels["left"]}   # flip V + half turn = flip H


def test_widget_points_reach_the_patient_and_come_back_with_their_distance_from_the_plane(samples):
    ds = pydicom.dcmread(sorted((samples / "dcm_qa_ct/In/Philips/S21570/S2020").iterdir())[70])
    p = plane_from_dataset(ds)
    t = ViewTransform.build(p.columns, p.rows, (700, 500), ViewState().zoomed(1.7).panned(12, -40).rotated(1), plane=p)
    point = t.to_patient(321.0, 123.0)
    expected = p.pixel_to_patient(*reversed(t.to_image(321.0, 123.0)))
    assert np.allclose(point, expected)
    x, y, distance = t.from_patient(point + 5.0 * p.normal)
    assert (x, y) == pytest.approx((321.0, 123.0)) and distance == pytest.approx(5.0)
    # the first pixel's centre is ImagePositionPatient
    assert np.allclose(t.to_patient(*t.to_widget(0, 0)), [float(v) for v in ds.ImagePositionPatient])


def test_a_projection_image_is_labelled_from_its_patient_orientation(samples):
    """A CR has no Image Orientation (Patient) but says where its rows and columns point: R\\F."""
    from workstation.core.pixels.image import ImageSource
    from workstation.core.pixels.render import FrameRenderer

    renderer = FrameRenderer(ImageSource.open(samples / "nema_wg04/J2KR/RG3_J2KR"))
    assert renderer.plane is None and renderer.patient_orientation == ("R", "F")
    t = ViewTransform.build(100, 80, (500, 400), patient_orientation=renderer.patient_orientation)
    assert t.orientation_labels() == {"left": "L", "right": "R", "top": "H", "bottom": "F"}
    turned = ViewTransform.build(100, 80, (500, 400), ViewState().rotated(1).flipped(True),
                                 patient_orientation=("R", "F"))
    # a clockwise turn brings the left edge (L) to the top; the mirror then swaps left and right
    assert turned.orientation_labels() == {"top": "L", "bottom": "R", "left": "H", "right": "F"}
