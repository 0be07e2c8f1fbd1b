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


# --- what the pixel spacing means (PS3.3 10.7.1, C.8.5.5) -----------------------------------------------

CR_DIRS = "pydicom/data/test_files/dicomdirtests/77654033"


def _spacing(samples, rel, frame=0):
    from workstation.core.pixels import FrameRenderer

    renderer = FrameRenderer(ImageSource.open(samples / rel), frame)   # computed on the worker, kept on the renderer
    return renderer.spacing


def test_spacing_of_ct_is_in_the_patient(samples):
    spacing = _spacing(samples, "dcm_qa_ct/In/Philips/S21570/S2020/I10")
    ds = pydicom.dcmread(samples / "dcm_qa_ct/In/Philips/S21570/S2020/I10")
    assert (spacing.kind, spacing.note) == ("patient", "")
    assert (spacing.row_mm, spacing.column_mm) == tuple(float(v) for v in ds.PixelSpacing)
    enhanced = _spacing(samples, "dcm_qa_enh/In/Siemens/XA10/6_1.dcm", 3)   # Pixel Measures functional group
    assert enhanced.kind == "patient" and enhanced.row_mm == 3.375


def test_pixel_spacing_equal_to_imager_pixel_spacing_is_at_the_detector(samples):
    """Monochrome1-Jpeg.dcm (CR) has both, equal (0.175): by PS3.3 10.7.1.1 Pixel Spacing equal to Imager
    Pixel Spacing means the image was not calibrated for geometric magnification, so the spacing is the
    detector's, whichever attribute is read."""
    spacing = _spacing(samples, "orthanc_tests/Database/Issue44/Monochrome1-Jpeg.dcm")
    assert (spacing.kind, spacing.row_mm, spacing.column_mm) == ("detector", 0.175, 0.175)
    assert spacing.note == "Spacing at the detector: distances are not corrected for magnification"


def test_imager_pixel_spacing_alone_is_at_the_detector():
    from pathlib import Path

    root = Path(pydicom.__file__).parent.parent / CR_DIRS
    paths = sorted(p for p in root.glob("CR*/*"))
    assert len(paths) == 3
    for path in paths:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        assert "PixelSpacing" not in ds and ds.Modality == "CR"
        spacing = ImageSource.open(path).spacing()
        assert (spacing.kind, spacing.row_mm, spacing.column_mm) == ("detector", *map(float, ds.ImagerPixelSpacing))


def test_ultrasound_regions_give_spacing_only_inside_them(samples):
    """Issue16.dcm has two regions: a 2D one in cm both ways (Physical Delta X/Y 0.02857 / 0.02286 cm)
    and a Doppler strip in seconds by nothing, which gives no distances."""
    spacing = _spacing(samples, "orthanc_tests/Database/Issue16.dcm", 5)
    item = pydicom.dcmread(samples / "orthanc_tests/Database/Issue16.dcm", stop_before_pixels=True).SequenceOfUltrasoundRegions[0]
    assert spacing.kind == "ultrasound" and len(spacing.regions) == 1
    region = spacing.regions[0]
    assert (region.min_column, region.min_row, region.max_column, region.max_row) == (42, 4, 438, 353)
    assert (spacing.row_mm, spacing.column_mm) == (item.PhysicalDeltaY * 10, item.PhysicalDeltaX * 10)
    assert spacing.spacing_at(100, 100) == (spacing.row_mm, spacing.column_mm)
    assert spacing.spacing_at(380, 100) is None and spacing.region_at(3, 100) is None
    assert spacing.note == "Spacing holds only inside the ultrasound region"
    for rel in ("orthanc_tests/Database/2023-04-21-RLEPlanarConfigurationYBR_FULL.dcm",
                "orthanc_tests/Database/Implicit-vr-us-palette.dcm"):
        assert _spacing(samples, rel).kind == "ultrasound"


def test_no_spacing_means_pixels(samples):
    spacing = _spacing(samples, "orthanc_tests/Database/KarstenHilbertRF.dcm")
    assert (spacing.kind, spacing.row_mm, spacing.column_mm) == ("unknown", None, None)
    assert spacing.spacing_at(10, 10) is None and "pixels" in spacing.note


def test_calibrated_and_magnification_corrected_spacing_is_in_the_patient():
    from workstation.core.dicom.geometry import spacing_info

    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"   # DX for presentation
    ds.Modality = "DX"
    ds.ImagerPixelSpacing = [0.15, 0.15]
    assert spacing_info(ds).kind == "detector"
    ds.EstimatedRadiographicMagnificationFactor = 1.25   # Imager Pixel Spacing / ERMF when no Pixel Spacing
    corrected = spacing_info(ds)
    assert corrected.kind == "patient" and corrected.row_mm == pytest.approx(0.12) and "1.25" in corrected.note
    ds.PixelSpacing = [0.13, 0.13]   # differs from Imager Pixel Spacing: corrected or calibrated (10.7.1.1)
    assert spacing_info(ds).kind == "patient" and spacing_info(ds).row_mm == 0.13
    ds.PixelSpacingCalibrationType = "GEOMETRY"
    assert "geometric magnification" in spacing_info(ds).note
    cr = Dataset()
    cr.Modality, cr.PixelSpacing = "CR", [0.2, 0.2]   # no Imager Pixel Spacing: whether corrected is unknown
    assert spacing_info(cr).kind == "patient" and "not known" in spacing_info(cr).note
