"""Reformatted planes stored as derived CT, MR and Secondary Capture images, checked by pydicom, DCMTK's
dcmdump, dicom3tools' dciodvfy, the project's own display sets and volume assembly, and a real Orthanc.

The planes are made here with numpy from the real slices, not by the project's reslicer: an axial
plane is a slice itself, and a coronal (or, for the sagittal MR, an axial) plane through voxel
centres is a column of voxels of every slice stacked, so its values and geometry need no
interpolation and are known exactly.
"""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
from datetime import datetime
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.pixels import apply_modality_lut
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid

import workstation
from tests.peers import require_binary
from tests.test_cli import ws
from workstation.core.cache import Cache
from workstation.core.dicom.derived import (
    CT_IMAGE,
    MR_IMAGE,
    MULTIFRAME_GRAYSCALE_WORD_SC,
    SourceImage,
    derived_image,
    derived_series,
)
from workstation.core.dicom.geometry import ImagePlane
from workstation.core.dicom.key_objects import to_part10
from workstation.core.model.display_set import build_display_sets
from workstation.core.pixels.slice_reader import read_slice_record
from workstation.core.pixels.volume import assemble_volume_from_headers
from workstation.core.reformats import store_derived_series
from workstation.core.tasks import Cancelled, CancelToken

pytestmark = pytest.mark.samples

PHILIPS = "dcm_qa_ct/In/Philips/S21570/S2020"   # 140 axial CT slices, 512 x 512, 1 mm apart
SAGITTAL_MR = "dcm_qa_deident/In"               # 196 sagittal MR slices, 256 x 256, 1.2 mm apart
PET = "orthanc_tests/Database/Issue94.dcm"      # one PET slice (Bq/ml, fractional values)
DCMDUMP = shutil.which("dcmdump") or "/usr/bin/dcmdump"
DCIODVFY = shutil.which("dciodvfy") or "/usr/bin/dciodvfy"
WHEN = datetime(2026, 1, 2, 3, 4, 5)


class Stack:
    """A series read with pydicom alone: headers sorted along the normal, modality values, geometry."""

    def __init__(self, folder: Path) -> None:
        dss = [pydicom.dcmread(p) for p in sorted(folder.iterdir()) if p.is_file()]
        iop = np.array(dss[0].ImageOrientationPatient, float)
        self.row, self.column = iop[:3], iop[3:]
        self.normal = np.cross(self.row, self.column)
        dss.sort(key=lambda d: float(np.array(d.ImagePositionPatient, float) @ self.normal))
        self.headers = dss
        self.values = np.stack([apply_modality_lut(d.pixel_array, d).astype(np.float32) for d in dss])
        self.positions = np.array([d.ImagePositionPatient for d in dss], float)
        self.spacing = tuple(float(v) for v in dss[0].PixelSpacing)   # (between rows, between columns)
        steps = np.diff(self.positions @ self.normal)
        assert np.allclose(steps, steps[0], atol=1e-3), "the sample must be evenly spaced"
        self.step = float(steps[0])

    def slice_plane(self, k: int) -> tuple[np.ndarray, ImagePlane]:
        d = self.headers[k]
        return self.values[k], ImagePlane(self.positions[k], self.row, self.column, self.spacing, d.Rows, d.Columns)

    def across(self, r: int) -> tuple[np.ndarray, ImagePlane]:
        """The plane through image row `r` of every slice: its rows run against the normal (last slice
        first, so for axial CT slices the head is at the top), its columns along the slices' rows."""
        values = self.values[::-1, r, :]
        position = self.positions[-1] + r * self.spacing[0] * self.column
        plane = ImagePlane(position, self.row, -self.normal, (self.step, self.spacing[1]), len(self.headers),
                           values.shape[1])
        return values, plane


@pytest.fixture(scope="module")
def ct(samples) -> Stack:
    return Stack(samples / PHILIPS)


@pytest.fixture(scope="module")
def mr(samples) -> Stack:
    return Stack(samples / SAGITTAL_MR)


def write(ds, tmp_path: Path, name: str = "derived.dcm") -> Path:
    path = tmp_path / name
    path.write_bytes(to_part10(ds))
    return path


def modality_values(path: Path) -> np.ndarray:
    ds = pydicom.dcmread(path)
    return apply_modality_lut(ds.pixel_array, ds).astype(np.float64)


def assert_geometry(ds, plane: ImagePlane) -> None:
    assert np.allclose(np.array(ds.ImagePositionPatient, float), plane.position, atol=1e-9)
    assert np.allclose(np.array(ds.ImageOrientationPatient, float),
                       np.concatenate([plane.row_direction, plane.column_direction]), atol=1e-12)
    assert np.allclose(np.array(ds.PixelSpacing, float), plane.pixel_spacing, atol=1e-12)
    assert (ds.Rows, ds.Columns) == (plane.rows, plane.columns)
    assert float(ds.SliceLocation) == pytest.approx(float(plane.position @ plane.normal), abs=1e-9)


def codes_of(ds) -> list[tuple[str, str, str]]:
    return [(c.CodeValue, c.CodingSchemeDesignator, c.CodeMeaning) for c in ds.DerivationCodeSequence]


def code(concept) -> tuple[str, str, str]:
    return concept.value, concept.scheme_designator, concept.meaning


def dciodvfy(path: Path) -> list[str]:
    require_binary(DCIODVFY, "dicom3tools")   # make test installs it; its absence fails under CI
    check = subprocess.run([DCIODVFY, "-new", str(path)], capture_output=True, text=True)
    return (check.stdout + check.stderr).splitlines()


def errors(lines: list[str]) -> list[str]:
    return [line for line in lines if line.startswith("Error")]


# ---------------------------------------------------------------------------------------------- CT


def test_an_axial_plane_at_a_slice_reads_back_as_that_slice_with_its_geometry(ct, tmp_path):
    values, plane = ct.slice_plane(70)
    source = ct.headers[70]
    uid = generate_uid()
    ds = derived_image(values, plane, source, series_uid=uid, series_number=901, instance_number=1,
                       description="Axial MPR", window=(40, 80), when=WHEN)
    back = pydicom.dcmread(write(ds, tmp_path))
    assert back.SOPClassUID == back.file_meta.MediaStorageSOPClassUID == CT_IMAGE
    assert back.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"
    assert np.array_equal(modality_values(tmp_path / "derived.dcm"), values), "whole HU are kept exactly"
    assert (back.BitsAllocated, back.BitsStored, back.PixelRepresentation) == (16, 16, 1)
    assert (float(back.RescaleSlope), float(back.RescaleIntercept), back.RescaleType) == (1.0, 0.0, "HU")
    assert_geometry(back, plane)
    assert list(back.ImageType) == ["DERIVED", "SECONDARY", "AXIAL"]
    assert codes_of(back) == [code(codes.DCM.MultiplanarReformatting)]
    assert "Multiplanar reformat of series 202" in back.DerivationDescription
    # the study, patient and frame of reference are the source's; the series is ours
    for keyword in ("StudyInstanceUID", "FrameOfReferenceUID", "PatientName", "PatientID", "PatientSex",
                    "StudyDate", "StudyTime", "StudyID", "AccessionNumber", "StudyDescription", "Modality",
                    "PatientPosition", "KVP"):
        assert back[keyword].value == source[keyword].value, keyword
    assert back.SeriesInstanceUID == uid != source.SeriesInstanceUID
    assert back.SOPInstanceUID not in (source.SOPInstanceUID, uid)
    assert (back.SeriesNumber, back.InstanceNumber, back.SeriesDescription) == (901, 1, "Axial MPR")
    assert (back.SeriesDate, back.ContentDate) == ("20260102", "20260102")
    assert (back.Manufacturer, back.SoftwareVersions) == ("workstation", workstation.__version__)
    assert (float(back.WindowCenter), float(back.WindowWidth)) == (40.0, 80.0)
    refs = back.SourceImageSequence
    assert [(r.ReferencedSOPClassUID, r.ReferencedSOPInstanceUID) for r in refs] == [(CT_IMAGE, source.SOPInstanceUID)]
    assert code(codes.DCM.SourceImageForImageProcessingOperation) == tuple(
        getattr(refs[0].PurposeOfReferenceCodeSequence[0], k) for k in ("CodeValue", "CodingSchemeDesignator", "CodeMeaning"))
    assert back.ReferencedSeriesSequence[0].SeriesInstanceUID == source.SeriesInstanceUID
    assert "GantryDetectorTilt" not in back and "XRayTubeCurrent" not in back


def test_a_coronal_plane_through_voxel_centres_keeps_every_hu_and_references_every_slice(ct, tmp_path):
    values, plane = ct.across(256)
    assert plane.rows == 140 and np.allclose(plane.normal, [0, 1, 0])   # coronal: head at the top
    sources = [SourceImage(d.SOPClassUID, d.SOPInstanceUID, ImagePlane(p, ct.row, ct.column, ct.spacing, 512, 512))
               for d, p in zip(ct.headers, ct.positions, strict=True)]
    ds = derived_image(values, plane, ct.headers[0], series_uid=generate_uid(), series_number=902,
                       instance_number=1, description="Coronal MPR", sources=sources)
    path = write(ds, tmp_path)
    back = pydicom.dcmread(path)
    assert np.array_equal(modality_values(path), values)
    assert_geometry(back, plane)
    assert back.SliceThickness is None and "SliceThickness" in back and "SpacingBetweenSlices" not in back
    assert {r.ReferencedSOPInstanceUID for r in back.SourceImageSequence} == {d.SOPInstanceUID for d in ct.headers}
    # without a window from the viewer, the source's own (in HU, as ours are)
    assert (back.WindowCenter, back.WindowWidth) == (ct.headers[0].WindowCenter, ct.headers[0].WindowWidth)
    # an axial plane at a slice is made of that slice alone; halfway between two, of those two; a 3 mm
    # slab there, of the slices less than 1 mm (the slice spacing) from its faces
    values, at_slice = ct.slice_plane(70)
    halfway = ImagePlane(at_slice.position + 0.5 * ct.step * ct.normal, ct.row, ct.column, ct.spacing, 512, 512)
    for plane, slab, chosen in ((at_slice, None, [70]), (halfway, None, [70, 71]), (halfway, ("avg", 3), range(69, 73))):
        axial = derived_image(values, plane, ct.headers[70], series_uid=generate_uid(), series_number=902,
                              instance_number=2, description="Axial MPR", sources=sources, slab=slab)
        assert [r.ReferencedSOPInstanceUID for r in axial.SourceImageSequence] == [
            ct.headers[k].SOPInstanceUID for k in chosen]


def test_an_average_slab_keeps_its_fractions_to_a_tenth_of_a_hu(ct, tmp_path):
    rows = ct.values[::-1, 250:255, :]                       # five coronal rows of voxel centres
    values = rows.mean(axis=1, dtype=np.float64).astype(np.float32)
    _, centre = ct.across(252)
    thickness = 5 * ct.spacing[0]
    ds = derived_image(values, centre, ct.headers[0], series_uid=generate_uid(), series_number=903,
                       instance_number=1, description="Coronal average", slab=("avg", thickness))
    path = write(ds, tmp_path)
    back = pydicom.dcmread(path)
    slope = float(back.RescaleSlope)
    assert not np.allclose(values, np.rint(values)), "the mean of five voxels is fractional"
    assert 0 < slope <= 0.1
    assert np.max(np.abs(modality_values(path) - values)) <= slope / 2 + 1e-3
    assert float(back.SliceThickness) == pytest.approx(thickness)
    assert codes_of(back) == [code(codes.DCM.MultiplanarReformatting), code(codes.DCM.PixelByPixelMean)]
    assert "2.25586 mm average slab" in back.DerivationDescription
    # a MIP of whole HU stays whole, with slope 1
    mip = rows.max(axis=1)
    ds = derived_image(mip, centre, ct.headers[0], series_uid=generate_uid(), series_number=904,
                       instance_number=1, description="Coronal MIP", slab=("mip", thickness))
    path = write(ds, tmp_path, "mip.dcm")
    assert np.array_equal(modality_values(path), mip) and pydicom.dcmread(path).RescaleSlope == 1
    assert codes_of(pydicom.dcmread(path)) == [code(codes.DCM.MultiplanarReformatting),
                                               code(codes.DCM.MaximumIntensityProjection)]
    minip = derived_image(rows.min(axis=1), centre, ct.headers[0], series_uid=generate_uid(), series_number=905,
                          instance_number=1, description="Coronal MinIP", slab=("minip", thickness))
    assert codes_of(minip)[1] == code(codes.DCM.MinimumIntensityProjection)


def test_values_beyond_16_bits_move_the_intercept_and_keep_their_precision(ct, tmp_path):
    values, plane = ct.across(256)
    shifted = values + 40000                                 # whole, but above int16: another intercept
    ds = derived_image(shifted, plane, ct.headers[0], series_uid=generate_uid(), series_number=908,
                       instance_number=1, description="Shifted")
    path = write(ds, tmp_path)
    assert float(pydicom.dcmread(path).RescaleIntercept) != 0 and np.array_equal(modality_values(path), shifted)
    far = values * 0.5 + 100000                              # fractional and far from zero
    ds = derived_image(far, plane, ct.headers[0], series_uid=generate_uid(), series_number=908,
                       instance_number=2, description="Far")
    path = write(ds, tmp_path, "far.dcm")
    slope = float(pydicom.dcmread(path).RescaleSlope)
    assert slope <= 2.5 * float(np.ptp(far)) / 65533
    assert np.max(np.abs(modality_values(path) - far)) <= slope / 2 + 1e-6


def test_samples_outside_the_volume_become_the_lowest_value(ct, mr, tmp_path):
    values, plane = ct.across(256)
    values = values + 200                                    # no air left: the lowest value is -824 HU
    values[:, :40] = np.nan                                  # the reslicer's mark for "outside"
    ds = derived_image(values, plane, ct.headers[0], series_uid=generate_uid(), series_number=906,
                       instance_number=1, description="Coronal MPR")
    back = modality_values(write(ds, tmp_path))
    assert np.all(back[:, :40] == -1024), "outside a CT volume is air"
    assert np.array_equal(back[:, 40:], values[:, 40:])
    values, plane = mr.slice_plane(100)
    values = values + 100
    values[:20] = np.nan
    ds = derived_image(values, plane, mr.headers[100], series_uid=generate_uid(), series_number=906,
                       instance_number=1, description="Sagittal MPR")
    back = pydicom.dcmread(write(ds, tmp_path, "mr.dcm")).pixel_array
    assert np.all(back[:20] == 0) and np.array_equal(back[20:], values[20:]), "outside an MR volume is 0"


def test_dcmdump_and_dciodvfy_accept_a_derived_ct(ct, tmp_path):
    require_binary(DCMDUMP, "dcmtk")
    values, plane = ct.across(256)
    ds = derived_image(values, plane, ct.headers[0], series_uid=generate_uid(), series_number=907,
                       instance_number=1, description="Coronal MIP", slab=("mip", 5), window=(40, 80))
    path = write(ds, tmp_path)
    dump = subprocess.run([DCMDUMP, str(path)], capture_output=True, text=True)
    assert dump.returncode == 0 and dump.stderr == "", dump.stderr
    assert "(0002,0002) UI =CTImageStorage" in dump.stdout
    assert "(0008,0008) CS [DERIVED\\SECONDARY\\AXIAL]" in dump.stdout
    assert "(0020,0037) DS [1\\0\\0\\0\\0\\-1]" in dump.stdout
    assert "(0008,0100) SH [113078]" in dump.stdout
    lines = dciodvfy(path)
    assert "CTImage" in lines, lines
    assert errors(lines) == []
    # What it still says is about the sample's own patient name, not about what we wrote.
    assert [line for line in lines if line.startswith("Warning")] == [
        "Warning - </PatientName(0010,0010)[1]> - Value dubious for this VR [PN] = <HEAD> - Retired Person Name form"]


# ---------------------------------------------------------------------------------------------- series and cache


@pytest.fixture
def cache(workstation_home, samples):
    with Cache(workstation_home) as c:
        report = c.import_paths([samples / PHILIPS])
        assert report.imported == 140
        yield c


def philips_series(cache: Cache, ct: Stack) -> str:
    return ct.headers[0].SeriesInstanceUID


ROWS = [200, 203, 206, 209, 212, 215, 218, 221]
"""Coronal planes every 3 voxel rows (1.353515625 mm)."""


def test_a_stack_of_parallel_planes_is_one_series_numbered_along_the_normal(ct):
    planes = [ct.across(r) for r in ROWS]
    shuffled = [planes[i] for i in (3, 0, 7, 1, 6, 2, 5, 4)]
    uid = generate_uid()
    made = list(derived_series(shuffled, ct.headers[0], description="Coronal stack", series_uid=uid,
                               series_number=910, when=WHEN))
    assert [d.InstanceNumber for d in made] == list(range(1, 9))
    assert [float(d.ImagePositionPatient[1]) for d in made] == pytest.approx([p.position[1] for _, p in planes])
    assert {d.SeriesInstanceUID for d in made} == {uid} and len({d.SOPInstanceUID for d in made}) == 8
    step = 3 * ct.spacing[0]
    assert all(float(d.SpacingBetweenSlices) == pytest.approx(step) for d in made)
    assert all(float(d.SliceThickness) == pytest.approx(step) for d in made)
    assert {(str(d.RescaleSlope), str(d.RescaleIntercept)) for d in made} == {("1", "0")}


def test_a_stored_stack_imports_and_assembles_as_the_planes_it_was_made_of(ct, cache):
    source_uid = philips_series(cache, ct)
    planes = [ct.across(r) for r in ROWS]
    seen = []
    uid = store_derived_series(cache, source_uid, [planes[i] for i in (5, 1, 0, 7, 2, 4, 3, 6)],
                               "Coronal MPR 1.35 mm", window=(40, 80),
                               progress=lambda done, total, message: seen.append((done, total)))
    assert seen[-1] == (8, 8) and seen[0] == (1, 8)
    series = {s.SeriesInstanceUID: s for s in cache.series(ct.headers[0].StudyInstanceUID)}
    assert set(series) == {source_uid, uid}, "the derived series is in the source's study"
    derived = series[uid]
    assert (derived.Modality, derived.SeriesDescription, derived.NumberOfSeriesRelatedInstances) == (
        "CT", "Coronal MPR 1.35 mm", 8)
    assert derived.SeriesNumber == series[source_uid].SeriesNumber + 1
    records = cache.instance_records(uid)
    assert [i.SOPClassUID for i, _ in records] == [CT_IMAGE] * 8
    assert all(r.FrameOfReferenceUID == ct.headers[0].FrameOfReferenceUID for _, r in records)

    sets = build_display_sets(derived, records)
    assert len(sets) == 1 and sets[0].orientation == "coronal" and len(sets[0]) == 8
    assert [f.InstanceNumber for f in sets[0].frames] == list(range(1, 9))
    for frame, (_, plane) in zip(sets[0].frames, planes, strict=True):
        assert np.allclose(frame.plane.position, plane.position, atol=1e-9)
        assert np.allclose(frame.plane.normal, plane.normal)

    volume = assemble_volume_from_headers(cache.volume_slices(uid))
    assert volume.warnings == []
    assert np.array_equal(volume.array, np.stack([v for v, _ in planes]))
    assert volume.spacing == pytest.approx((3 * ct.spacing[0], ct.step, ct.spacing[1]))
    assert np.allclose(volume.origin, planes[0][1].position)
    assert np.allclose(volume.direction, np.column_stack([[1, 0, 0], [0, 0, -1], [0, 1, 0]]))
    # each derived image names the source slices it was sampled from: all of them, for a coronal plane
    first = pydicom.dcmread(cache.instances(uid)[0].path, stop_before_pixels=True)
    assert len(first.SourceImageSequence) == 140


def test_a_cancelled_export_stores_nothing(ct, cache):
    token = CancelToken()
    made = []

    def progress(done, total, message):
        made.append(done)
        if done == 3:
            token.cancel()

    with pytest.raises(Cancelled):
        store_derived_series(cache, philips_series(cache, ct), [ct.across(r) for r in ROWS], "Coronal",
                             progress=progress, cancel=token)
    assert made == [1, 2, 3], "no image is made once cancelled"
    assert [s.SeriesInstanceUID for s in cache.series(ct.headers[0].StudyInstanceUID)] == [philips_series(cache, ct)]


def test_orthanc_accepts_the_derived_series_beside_its_source(ct, cache, fresh_orthanc, workstation_home, samples):
    assert fresh_orthanc.upload(sorted((samples / PHILIPS).iterdir())) == 140
    uid = store_derived_series(cache, philips_series(cache, ct), [ct.across(r) for r in ROWS[:3]], "Coronal MPR",
                               slab=("mip", 2.0))
    ws("node", "add", "pacs", "--aet", fresh_orthanc.aet, "--host", "127.0.0.1", "--port", str(fresh_orthanc.port),
       "--connect-timeout", "3", "--timeout", "15", home=workstation_home)
    sent = ws("send", "pacs", "--study", ct.headers[0].StudyInstanceUID, "--series", uid, "--json",
              home=workstation_home)
    assert (json.loads(sent.stdout)["sent"], json.loads(sent.stdout)["failed"]) == (3, 0), sent.stdout
    found = fresh_orthanc.rest("POST", "/tools/lookup", uid.encode())
    assert [f["Type"] for f in found] == ["Series"]
    series = fresh_orthanc.rest("GET", f"/series/{found[0]['ID']}")
    assert len(series["Instances"]) == 3
    study = fresh_orthanc.rest("GET", f"/studies/{series['ParentStudy']}")
    assert study["MainDicomTags"]["StudyInstanceUID"] == ct.headers[0].StudyInstanceUID
    assert len(study["Series"]) == 2, "on the PACS too the derived series sits in the source's study"
    tags = fresh_orthanc.rest("GET", f"/instances/{series['Instances'][0]}/simplified-tags")
    assert tags["SOPClassUID"] == CT_IMAGE and tags["ImageType"] == "DERIVED\\SECONDARY\\AXIAL"
    assert tags["FrameOfReferenceUID"] == ct.headers[0].FrameOfReferenceUID


# ---------------------------------------------------------------------------------------------- MR and others


def test_an_mr_source_gives_derived_mr_images(mr, tmp_path, samples):
    source = mr.headers[100]
    values, plane = mr.slice_plane(100)
    ds = derived_image(values, plane, source, series_uid=generate_uid(), series_number=20, instance_number=1,
                       description="Sagittal MPR")
    path = write(ds, tmp_path, "sagittal.dcm")
    back = pydicom.dcmread(path)
    assert back.SOPClassUID == MR_IMAGE and back.Modality == "MR"
    assert list(back.ImageType) == ["DERIVED", "SECONDARY", "MPR"]
    assert np.array_equal(back.pixel_array, values), "whole values are stored as they are"
    assert "RescaleSlope" not in back, "the MR Image IOD has no Modality LUT"
    assert_geometry(back, plane)
    for keyword in ("ScanningSequence", "SequenceVariant", "EchoTime", "RepetitionTime", "MagneticFieldStrength"):
        assert back[keyword].value == source[keyword].value, keyword
    assert "InversionTime" not in back, "a gradient echo (GR) has no inversion time in the MR Image module"

    # an axial plane through the sagittal slices' voxel centres (a row of each slice, side by side)
    axial_values = mr.values[::-1, 128, :].T
    position = mr.positions[-1] + 128 * mr.spacing[0] * mr.column
    axial = ImagePlane(position, -mr.normal, mr.row, (mr.spacing[1], mr.step), 256, 196)
    assert np.allclose(axial.row_direction, [1, 0, 0]) and np.allclose(axial.normal, [0, 0, 1])
    ds = derived_image(axial_values, axial, source, series_uid=generate_uid(), series_number=21, instance_number=1,
                       description="Axial MPR")
    path = write(ds, tmp_path, "axial.dcm")
    assert np.array_equal(pydicom.dcmread(path).pixel_array, axial_values)
    assert_geometry(pydicom.dcmread(path), axial)
    lines = dciodvfy(path)
    assert "MRImage" in lines, lines
    # the only error is the sample's own (a de-identification code value longer than SH allows)
    assert set(errors(lines)) <= set(errors(dciodvfy(samples / SAGITTAL_MR / "00101.dcm")))

    # an average of two slices is rounded to whole units, as the scanner stores them
    mean = (mr.values[100] + mr.values[101]) / 2
    ds = derived_image(mean, plane, source, series_uid=generate_uid(), series_number=22, instance_number=1,
                       description="Sagittal average", slab=("avg", 2 * mr.step))
    back = pydicom.dcmread(write(ds, tmp_path, "average.dcm"))
    assert list(back.ImageType) == ["DERIVED", "SECONDARY", "MPR", "AVERAGE"] and "RescaleSlope" not in back
    assert np.max(np.abs(back.pixel_array - mean)) <= 0.5
    mip = derived_image(np.maximum(mr.values[100], mr.values[101]), plane, source, series_uid=generate_uid(),
                        series_number=23, instance_number=1, description="Sagittal MIP", slab=("mip", 2.4))
    assert list(mip.ImageType) == ["DERIVED", "SECONDARY", "PROJECTION IMAGE", "MIP"]


def test_a_pet_source_gives_a_secondary_capture_that_still_knows_where_it_lies(samples, tmp_path):
    source = pydicom.dcmread(samples / PET)
    values = apply_modality_lut(source.pixel_array, source).astype(np.float32)
    iop = np.array(source.ImageOrientationPatient, float)
    plane = ImagePlane(np.array(source.ImagePositionPatient, float), iop[:3], iop[3:],
                       tuple(float(v) for v in source.PixelSpacing), source.Rows, source.Columns)
    ds = derived_image(values, plane, source, series_uid=generate_uid(), series_number=30, instance_number=1,
                       description="PET MPR")
    path = write(ds, tmp_path)
    back = pydicom.dcmread(path)
    assert back.SOPClassUID == MULTIFRAME_GRAYSCALE_WORD_SC and back.Modality == "PT"
    assert (back.PixelRepresentation, back.NumberOfFrames, back.ConversionType) == (0, 1, "WSD")
    slope = float(back.RescaleSlope)
    assert np.max(np.abs(modality_values(path) - values)) <= slope / 2 + 1e-6
    assert slope <= 2.5 * float(values.max() - min(0.0, values.min())) / 65533, "the finest 1-2-5 step that fits"
    assert list(back.PatientOrientation) == ["L", "P"]
    assert "ImagePositionPatient" not in back, "the SC IOD has no Image Plane module"
    shared = back.SharedFunctionalGroupsSequence[0]
    assert np.allclose(np.array(back.PerFrameFunctionalGroupsSequence[0].PlanePositionSequence[0].ImagePositionPatient,
                                float), plane.position)
    assert np.allclose(np.array(shared.PlaneOrientationSequence[0].ImageOrientationPatient, float), iop)
    assert np.allclose(np.array(shared.PixelMeasuresSequence[0].PixelSpacing, float), plane.pixel_spacing)
    assert back.FrameOfReferenceUID == source.FrameOfReferenceUID
    record, _ = read_slice_record(path)          # the project reads its plane back from the functional groups
    assert np.allclose(record.plane().position, plane.position) and np.allclose(record.plane().normal, plane.normal)
    lines = dciodvfy(path)
    assert "MultiframeGrayscaleWordSCImage" in lines, lines
    assert set(errors(lines)) <= set(errors(dciodvfy(samples / PET))), "no error the source has not"


def test_text_the_source_charset_cannot_hold_switches_to_utf8(ct, tmp_path):
    ds = derived_image(*ct.slice_plane(0), ct.headers[0], series_uid=generate_uid(), series_number=1,
                       instance_number=1, description="Koronal MIP für Dr. Müller")
    back = pydicom.dcmread(write(ds, tmp_path))
    assert back.SpecificCharacterSet == "ISO_IR 192"
    assert back.SeriesDescription == "Koronal MIP für Dr. Müller" and back.PatientName == ct.headers[0].PatientName


# ---------------------------------------------------------------------------------------------- refusals


def test_refusals_are_in_words(ct):
    values, plane = ct.slice_plane(0)
    source = ct.headers[0]

    def make(v=values, p=plane, s=source, **kw):
        return derived_image(v, p, s, series_uid=generate_uid(), series_number=1, instance_number=1,
                             description="x", **kw)

    with pytest.raises(ValueError, match="a plane with no pixels cannot be stored"):
        make(v=np.zeros((0, 512), np.float32), p=ImagePlane(plane.position, plane.row_direction,
                                                             plane.column_direction, plane.pixel_spacing, 0, 512))
    without = copy.deepcopy(source)
    del without.FrameOfReferenceUID
    with pytest.raises(ValueError, match=r"no Frame of Reference UID \(0020,0052\)"):
        make(s=without)
    with pytest.raises(ValueError, match="no sample of the plane lies inside the volume"):
        make(v=np.full(values.shape, np.nan, np.float32))
    with pytest.raises(ValueError, match="unknown slab 'max'"):
        make(slab=("max", 5))
    with pytest.raises(ValueError, match="the values are 512 x 511 but the plane is 512 x 512"):
        make(v=values[:, :511])
    tilted = ImagePlane(plane.position, np.array([1.0, 0, 0]), np.array([0, 0.8, 0.6]), plane.pixel_spacing, 512, 512)
    with pytest.raises(ValueError, match="plane 2 is not parallel to plane 1"):
        list(derived_series([(values, plane), (values, tilted)], source, description="x", series_uid=generate_uid()))
    with pytest.raises(ValueError, match="planes 1 and 2 lie at the same position"):
        list(derived_series([(values, plane), (values, plane)], source, description="x", series_uid=generate_uid()))
    with pytest.raises(ValueError, match="no Frame of Reference"):
        derived_series([ct.slice_plane(0), ct.slice_plane(1)], without, description="x", series_uid=generate_uid())


def test_storing_from_a_series_the_cache_lacks_says_so(ct, cache):
    with pytest.raises(ValueError, match="no series 1.2.3 in the local cache"):
        store_derived_series(cache, "1.2.3", [ct.slice_plane(0)], "x")
