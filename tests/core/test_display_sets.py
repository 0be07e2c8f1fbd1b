"""Display sets built from the cache's index: a series split where a reader expects it, each frame
with its plane, stacks ordered by position, and the slice record that carries it all."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest

from workstation.core.cache import Cache
from workstation.core.dicom.slices import SliceRecord
from workstation.core.loading import read_study

PHANTOM = "dcm_qa_ct/In/Philips/S21570"


@pytest.fixture
def cache(tmp_path):
    with Cache(tmp_path / "home") as c:
        yield c


def study_of(cache, path):
    ds = pydicom.dcmread(next(p for p in sorted(path.rglob("*")) if p.is_file()), stop_before_pixels=True)
    return read_study(cache, ds.StudyInstanceUID)


def test_a_ct_head_is_its_axial_stack_and_its_lateral_scout(cache, samples):
    cache.import_paths([samples / PHANTOM])
    sets = study_of(cache, samples / PHANTOM)
    by_size = sorted(sets.display_sets, key=len)
    scout, axial = by_size
    assert len(axial) == 140 and axial.orientation == "axial" and not axial.is_localizer
    assert len(scout) == 1 and scout.is_localizer and scout.orientation == "sagittal"
    locations = [f.location for f in axial.frames]
    assert all(f.plane is not None for f in axial.frames)
    assert np.allclose(np.abs(np.diff(locations)), 1.0, atol=1e-3)       # 1 mm apart, in order
    numbers = [f.InstanceNumber for f in axial.frames]
    assert numbers == sorted(numbers)                                     # the direction instance numbers run
    # each frame's plane is the file's own
    f = axial.frames[37]
    ds = pydicom.dcmread(f.path, stop_before_pixels=True)
    assert np.allclose(f.plane.position, [float(v) for v in ds.ImagePositionPatient])
    assert f.SliceThickness == pytest.approx(float(ds.SliceThickness))


def test_a_stack_out_of_instance_order_is_sorted_by_position(cache, samples, tmp_path):
    """Some scanners number images in acquisition order: the stack still reads head to foot."""
    files = sorted((samples / PHANTOM / "S2020").iterdir())[:20]
    rng = np.random.default_rng(3)
    out = tmp_path / "shuffled"
    out.mkdir()
    numbers = rng.permutation(len(files)) + 1
    for path, number in zip(files, numbers, strict=True):
        ds = pydicom.dcmread(path)
        ds.InstanceNumber = int(number)   # a derived copy: only the instance number changed
        ds.save_as(out / path.name)
    cache.import_paths([out])
    (axial,) = study_of(cache, out).display_sets
    locations = np.array([f.location for f in axial.frames])
    assert np.all(np.diff(locations) > 0) or np.all(np.diff(locations) < 0)


def test_an_enhanced_multiframe_object_is_laid_out_from_its_functional_groups(cache, samples):
    """The Philips field map holds 64 frames: 32 positions as magnitude and again as field map (its
    per-frame MR Image Frame Type says which): two stacks of 32, each in position order."""
    path = samples / "dcm_qa_enh/In/Philips/IM_0027_fMAP.dcm"
    cache.import_paths([path])
    sets = read_study(cache, pydicom.dcmread(path, stop_before_pixels=True).StudyInstanceUID).display_sets
    assert sorted(d.label for d in sets) == ["field_map", "m"]
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    for stack in sets:
        assert len(stack) == 32 and stack.is_multiframe and stack.orientation == "axial"
        wanted = "M" if stack.label == "m" else "FIELD_MAP"
        frames = [i for i, item in enumerate(ds.PerFrameFunctionalGroupsSequence)
                  if item.MRImageFrameTypeSequence[0].FrameType[3] == wanted]
        assert sorted(f.frame for f in stack.frames) == frames
        z = sorted(float(ds.PerFrameFunctionalGroupsSequence[i].PlanePositionSequence[0].ImagePositionPatient[2])
                   for i in frames)
        assert [round(f.plane.position[2], 4) for f in stack.frames] == [round(v, 4) for v in z]


def test_repeated_positions_split_by_acquisition_and_cine_loops_stand_alone(cache, samples):
    enhanced = samples / "dcm_qa_enh/In/Siemens/XA10"   # 4 files x 6 frames at the same 6 positions
    cine = samples / "orthanc_tests/Database/Issue16.dcm"
    cache.import_paths([enhanced, cine])
    sets = read_study(cache, pydicom.dcmread(enhanced / "6_1.dcm", stop_before_pixels=True).StudyInstanceUID)
    assert sorted(len(d) for d in sets.display_sets) == [6, 6, 6, 6]
    assert len({d.key for d in sets.display_sets}) == 4
    assert all(len({round(f.location, 3) for f in d.frames}) == 6 for d in sets.display_sets)
    (loop,) = read_study(cache, pydicom.dcmread(cine, stop_before_pixels=True).StudyInstanceUID).display_sets
    assert len(loop) == 34 and loop.is_multiframe and loop.frame_rate == pytest.approx(1000 / 30.0, rel=0.01)


def test_a_three_plane_localizer_is_three_display_sets(cache, samples, tmp_path):
    """A derived copy: one real CT slice written three times into one series with the three orientations."""
    src = pydicom.dcmread(sorted((samples / PHANTOM / "S2020").iterdir())[0])
    out = tmp_path / "three"
    out.mkdir()
    orientations = {"axial": [1, 0, 0, 0, 1, 0], "coronal": [1, 0, 0, 0, 0, -1], "sagittal": [0, 1, 0, 0, 0, -1]}
    for i, iop in enumerate(orientations.values()):
        ds = src.copy()
        ds.SOPInstanceUID = pydicom.uid.generate_uid()
        ds.InstanceNumber = i + 1
        ds.ImageOrientationPatient = iop
        ds.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
        ds.save_as(out / f"{i}.dcm")
    cache.import_paths([out])
    sets = study_of(cache, out)
    assert sorted(d.orientation for d in sets.display_sets) == ["axial", "coronal", "sagittal"]
    assert all(d.is_localizer and len(d) == 1 for d in sets.display_sets)
    assert len({d.key for d in sets.display_sets}) == 3


def test_an_older_slice_record_is_read_again_from_the_file(cache, samples):
    path = sorted((samples / PHANTOM / "S2020").iterdir())[0]
    cache.import_paths([path])
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    old = '{"version":2,"SOPInstanceUID":"x"}'
    with cache._write() as conn:
        conn.execute("UPDATE instances SET geometry = ?", (old,))
    assert SliceRecord.from_json(old) is None
    ((instance, record),) = cache.instance_records(ds.SeriesInstanceUID)
    assert record.SliceThickness == pytest.approx(float(ds.SliceThickness))
    stored = cache._db().execute("SELECT geometry FROM instances").fetchone()[0]
    assert SliceRecord.from_json(stored) == record                  # and kept for the next open
