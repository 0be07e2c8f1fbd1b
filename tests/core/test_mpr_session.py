"""The MPR layout's model without Qt or VTK: planes through the crosshair as display sets of plane
positions, the crosshair moved by a click and by scrolling, planes turned about another's normal."""

from __future__ import annotations

import numpy as np
import pytest

from workstation.core.cache import Cache
from workstation.core.pixels.mpr import scroll_step
from workstation.core.pixels.volume import assemble_volume_from_headers
from workstation.core.viewer.mpr import MprSession

AXIAL = "dcm_qa_ct/In/Philips/S21570/S2020"


@pytest.fixture(scope="module")
def session(tmp_path_factory, samples):
    with Cache(tmp_path_factory.mktemp("home")) as cache:
        cache.import_paths([samples / AXIAL])
        series = next(s for s in cache.query("series") if s.NumberOfSeriesRelatedInstances == 140)
        volume = assemble_volume_from_headers(cache.volume_slices(series.SeriesInstanceUID))
    return lambda: MprSession(volume, series, None, "1.2.3")


def planes(s):
    return {o: s.viewport_of(o).current.plane for o in ("axial", "coronal", "sagittal")}


def test_the_three_planes_pass_through_the_crosshair_and_follow_a_click(session):
    s = session()
    for orientation, plane in planes(s).items():
        assert abs(plane.patient_to_pixel(s.point)[2]) <= scroll_step(s.volume, s.spec(orientation)) / 2 + 1e-6
    target = s.point + np.array([10.3, -20.6, 15.2])
    s.set_cursor(s.viewport_of("axial"), target)
    for orientation, plane in planes(s).items():
        assert abs(plane.patient_to_pixel(target)[2]) <= scroll_step(s.volume, s.spec(orientation)) / 2 + 1e-6
    spec, slab = s.make_frame(s.viewport_of("coronal").current)
    assert spec.orientation == "coronal" and slab is None
    assert spec.position == pytest.approx(s.viewport_of("coronal").current.plane.position @ spec.normal)
    # each plane shows the other two as crosshair lines
    assert all(len(s.reference_lines(s.viewport_of(o))) == 2 for o in ("axial", "coronal", "sagittal"))


def test_scrolling_a_plane_moves_the_crosshair_along_its_normal(session):
    s = session()
    axial, coronal = s.viewport_of("axial"), s.viewport_of("coronal")
    before_point, before_coronal = s.point.copy(), coronal.index
    before_plane = axial.current.plane.position[2]
    axial.scroll(5)
    assert axial.current.plane.position[2] == pytest.approx(before_plane + 5.0)   # 1 mm slices: 5 mm up
    assert s.point[2] == pytest.approx(before_plane + 5.0)           # the crosshair on the plane shown
    assert np.allclose(s.point[:2], before_point[:2]) and coronal.index == before_coronal


def test_turning_the_crosshair_in_the_axial_turns_the_other_planes_about_its_normal(session):
    s = session()
    s.rotate(s.viewport_of("axial"), 30)
    coronal = s.spec("coronal")
    assert coronal.oblique and not s.spec("axial").oblique
    assert coronal.normal @ np.array([0, 0, 1.0]) == pytest.approx(0, abs=1e-9)        # still upright
    assert coronal.normal @ np.array([0, 1.0, 0]) == pytest.approx(np.cos(np.radians(30)))
    assert s.viewport_of("coronal").display_set.orientation == "oblique"
    s.reset()
    assert not any(s.spec(o).oblique for o in ("axial", "coronal", "sagittal"))
