"""The 3D view's camera (core/viewer/camera3d.py): the six views label the screen's edges as a reader
expects, a drag turns the volume the way the hand moves, zoom and pan keep points where they belong."""

from __future__ import annotations

import numpy as np
import pytest

from workstation.core.viewer.camera3d import VIEWS, Camera3D

BOX = np.array([[x, y, z] for x in (-100, 100) for y in (-80, 80) for z in (0, 300)], float)   # LPS mm


@pytest.mark.parametrize("view, labels", [
    ("anterior", {"left": "R", "right": "L", "top": "H", "bottom": "F"}),
    ("posterior", {"left": "L", "right": "R", "top": "H", "bottom": "F"}),
    ("left", {"left": "A", "right": "P", "top": "H", "bottom": "F"}),
    ("right", {"left": "P", "right": "A", "top": "H", "bottom": "F"}),
    ("inferior", {"left": "R", "right": "L", "top": "A", "bottom": "P"}),    # as an axial slice is read
    ("superior", {"left": "L", "right": "R", "top": "A", "bottom": "P"}),
])
def test_each_view_labels_the_screen_edges(view, labels):
    assert Camera3D.looking_at(BOX, view).orientation_labels() == labels


def test_the_whole_volume_is_in_view_and_centred():
    camera = Camera3D.looking_at(BOX, "anterior", aspect=1.0)
    assert np.allclose(camera.focal_point, (0, 0, 150))
    xy = np.array([camera.to_screen(c, 400, 400) for c in BOX])
    assert xy.min() >= 0 and xy.max() <= 400 and np.isclose(xy[:, 1].min(), 400 - xy[:, 1].max())
    wide = Camera3D.looking_at(BOX, "superior", aspect=0.5)   # a tall narrow screen: width decides
    xy = np.array([wide.to_screen(c, 200, 400) for c in BOX])
    assert xy[:, 0].min() >= 0 and xy[:, 0].max() <= 200 and xy[:, 0].min() < 10


def test_a_drag_turns_the_volume_the_way_the_hand_moves():
    front = Camera3D.looking_at(BOX, "anterior")
    # dragging to the right brings the patient's right side (on the screen's left) round to face us
    turned = front.rotated(90, 0)
    assert np.allclose(turned.direction, VIEWS["right"][0], atol=1e-9)
    assert turned.orientation_labels() == Camera3D.looking_at(BOX, "right").orientation_labels()
    # dragging up brings the feet into view, anterior at the top
    up = front.rotated(0, 90)
    assert np.allclose(up.direction, VIEWS["inferior"][0], atol=1e-9)
    assert np.allclose(up.view_up, VIEWS["inferior"][1], atol=1e-9)
    # a point on the patient's left moves towards the viewer's right... and behind, after a quarter turn
    left_point = np.array([100.0, 0, 150])
    x0 = front.to_screen(left_point, 400, 400)[0]
    x1 = front.rotated(30, 0).to_screen(left_point, 400, 400)[0]
    assert x0 > 200 and x1 < x0
    # turns stay orthonormal after many small steps
    c = front
    for _ in range(500):
        c = c.rotated(1.3, -0.7)
    assert np.isclose(np.linalg.norm(c.direction), 1) and abs(np.dot(c.direction, c.view_up)) < 1e-9


def test_zoom_and_pan():
    camera = Camera3D.looking_at(BOX, "anterior")
    p = np.array([50.0, 0, 200])
    x, y = camera.to_screen(p, 400, 400)
    zx, zy = camera.zoomed(2).to_screen(p, 400, 400)
    assert np.isclose(zx - 200, 2 * (x - 200)) and np.isclose(zy - 200, 2 * (y - 200))
    px, py = camera.panned(30, -12, 400).to_screen(p, 400, 400)
    assert np.isclose(px, x + 30) and np.isclose(py, y - 12)


def test_screen_and_patient_points_are_inverse():
    camera = Camera3D.looking_at(BOX, "left").rotated(20, -35).zoomed(1.7).panned(13, 4, 300)
    p = camera.to_patient(120.5, 33.5, 400, 300)
    assert np.allclose(camera.to_screen(p, 400, 300), (120.5, 33.5))
    assert abs((p - np.asarray(camera.focal_point)) @ np.asarray(camera.direction)) < 1e-9
