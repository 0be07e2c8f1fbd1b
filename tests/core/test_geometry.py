"""Image plane geometry, per-frame functional groups and the orientation labels at the screen edges."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset

from workstation.core.dicom.geometry import (
    ImagePlane,
    orientation_labels,
    pixel_spacing,
    pixel_spacing_with_source,
    plane_from_dataset,
)
from workstation.core.pixels import ImageSource


def plane(row, col, position=(0, 0, 0), spacing=(1.0, 1.0)):
    return ImagePlane(np.array(position, float), np.array(row, float), np.array(col, float), spacing, 4, 4)


def test_axial_labels():
    assert orientation_labels(plane((1, 0, 0), (0, 1, 0))) == {
        "left": "R",
        "right": "L",
        "top": "A",
        "bottom": "P",
    }


def test_coronal_labels():
    assert orientation_labels(plane((1, 0, 0), (0, 0, -1))) == {
        "left": "R",
        "right": "L",
        "top": "H",
        "bottom": "F",
    }


def test_sagittal_labels():
    assert orientation_labels(plane((0, 1, 0), (0, 0, -1))) == {
        "left": "A",
        "right": "P",
        "top": "H",
        "bottom": "F",
    }


def test_oblique_labels_are_compound_largest_first():
    c, s = np.cos(np.radians(30)), np.sin(np.radians(30))
    labels = orientation_labels(plane((c, s, 0), (-s * 0.8, c * 0.8, -0.6)))
    assert labels["right"] == "LP" and labels["left"] == "RA"
    assert labels["bottom"] == "PFR" and labels["top"] == "AHL"


def test_normal_and_pixel_to_patient():
    p = plane((1, 0, 0), (0, 1, 0), position=(10, 20, 30), spacing=(0.5, 2.0))
    np.testing.assert_allclose(p.normal, [0, 0, 1])
    np.testing.assert_allclose(p.pixel_to_patient(row=2, column=3), [16, 21, 30])


@pytest.mark.samples
def test_corpus_labels(samples):
    sag = ImageSource.open(samples / "dcm_qa_deident/In/00001.dcm").plane()
    assert orientation_labels(sag) == {"left": "A", "right": "P", "top": "H", "bottom": "F"}
    tilted = ImageSource.open(samples / "dcm_qa_ct/In/GE/01.dcm").plane()
    assert orientation_labels(tilted) == {"left": "R", "right": "L", "top": "AH", "bottom": "PF"}
    localizer = ImageSource.open(samples / "dcm_qa_ct/In/Philips/S21570/S1000/I10").plane()
    assert orientation_labels(localizer)["bottom"] == "F"


@pytest.mark.samples
@pytest.mark.parametrize(
    "rel", ["dcm_qa_enh/In/Philips/IM_0027_fMAP.dcm", "dcm_qa_enh/In/Siemens/XA10/6_1.dcm"]
)
def test_enhanced_mr_per_frame_geometry(samples, rel):
    source = ImageSource.open(samples / rel)
    ds = source.dataset
    positions = []
    for i in range(source.number_of_frames):
        p = source.plane(i)
        item = ds.PerFrameFunctionalGroupsSequence[i].PlanePositionSequence[0]
        np.testing.assert_allclose(p.position, [float(v) for v in item.ImagePositionPatient])
        positions.append(float(np.dot(p.position, p.normal)))
        assert p.rows == 64 and p.columns == 64
    assert len({round(x, 3) for x in positions}) > 1, "frames must sit at different slice positions"
    groups = [ds.PerFrameFunctionalGroupsSequence[0], ds.SharedFunctionalGroupsSequence[0]]
    spacing = next(g.PixelMeasuresSequence[0].PixelSpacing for g in groups if "PixelMeasuresSequence" in g)
    assert source.plane(0).pixel_spacing == (float(spacing[0]), float(spacing[1]))


def test_pixel_spacing_sources():
    ds = Dataset()
    assert pixel_spacing(ds) is None
    ds.ImagerPixelSpacing = [0.143, 0.143]
    assert pixel_spacing_with_source(ds) == ((0.143, 0.143), "ImagerPixelSpacing")
    ds.PixelSpacing = [0.5, 0.25]
    assert pixel_spacing(ds) == (0.5, 0.25)
    assert pixel_spacing_with_source(ds)[1] == "PixelSpacing"


def test_plane_requires_position_and_orientation():
    ds = Dataset()
    ds.Rows, ds.Columns = 2, 3
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    assert plane_from_dataset(ds) is None
    ds.ImagePositionPatient = [1, 2, 3]
    p = plane_from_dataset(ds)
    assert p.rows == 2 and p.columns == 3 and p.pixel_spacing == (1.0, 1.0)
    ds.ImageOrientationPatient = [1, 0, 0, 1, 0, 0]
    assert plane_from_dataset(ds) is None


@pytest.mark.samples
def test_ct_plane_from_header(samples):
    ds = pydicom.dcmread(samples / "dcm_qa_ct/In/Philips/S21570/S2020/I10", stop_before_pixels=True)
    p = plane_from_dataset(ds)
    np.testing.assert_allclose(p.position, [float(v) for v in ds.ImagePositionPatient])
    assert p.pixel_spacing == (0.451171875, 0.451171875)
