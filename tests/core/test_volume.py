"""Series -> volume: sorting, spacing, direction, and the warnings/errors a radiologist must see."""

from __future__ import annotations

import shutil

import numpy as np
import pydicom
import pytest
from pydicom.uid import RLELossless, generate_uid

from workstation.core.pixels.errors import VolumeError
from workstation.core.pixels.volume import assemble_volume
from workstation.core.pixels.volume_checks import sort_slices
from workstation.core.tasks import Cancelled, CancelToken

pytestmark = pytest.mark.samples

PHILIPS = "dcm_qa_ct/In/Philips/S21570/S2020"


def in_stack_order(folder):
    """The Philips files in the order they were written (I10, I20, ... I1400: along the stack), so a
    slice range such as [:8] is 8 neighbouring slices rather than names that merely sort together."""
    return sorted(folder.iterdir(), key=lambda p: int(p.name[1:]))


@pytest.fixture(scope="module")
def philips(samples):
    return in_stack_order(samples / PHILIPS)


@pytest.fixture(scope="module")
def philips_volume(philips):
    return assemble_volume(philips)


def naive(paths):
    dss = [pydicom.dcmread(p) for p in paths]
    dss.sort(key=lambda d: float(d.ImagePositionPatient[2]))
    return np.stack([d.pixel_array * float(d.RescaleSlope) + float(d.RescaleIntercept) for d in dss]), dss


def test_philips_140_slices(philips, philips_volume):
    v = philips_volume
    assert v.array.shape == (140, 512, 512) and v.array.dtype == np.int16
    assert v.spacing == pytest.approx((1.0, 0.451171875, 0.451171875))
    assert v.warnings == []
    np.testing.assert_allclose(v.direction, np.eye(3), atol=1e-9)
    ref, dss = naive(philips)
    np.testing.assert_array_equal(v.array, ref)
    assert v.source_uids == [d.SOPInstanceUID for d in dss]
    np.testing.assert_allclose(v.origin, [float(x) for x in dss[0].ImagePositionPatient])
    assert v.array.min() == -1024 and v.array.max() > 700


def test_localizer_is_excluded(samples, philips):
    v = assemble_volume([samples / "dcm_qa_ct/In/Philips/S21570/S1000/I10", *philips[:10]])
    assert v.array.shape[0] == 10
    assert any("localizer" in w for w in v.warnings)


def test_mixed_orientation_is_an_error(philips, tmp_path):
    ds = pydicom.dcmread(philips[0])
    ds.ImageOrientationPatient = [1, 0, 0, 0, 0, -1]
    ds.SOPInstanceUID = generate_uid()
    odd = tmp_path / "coronal.dcm"
    ds.save_as(odd)
    with pytest.raises(VolumeError, match="mixed orientations"):
        assemble_volume([*philips[:5], odd])


def test_different_sizes_and_too_few_slices(philips, tmp_path):
    with pytest.raises(VolumeError, match="at least 2"):
        assemble_volume(philips[:1])
    ds = pydicom.dcmread(philips[5])
    ds.PixelData = ds.pixel_array[:256].tobytes()
    ds.Rows = 256
    small = tmp_path / "small.dcm"
    ds.save_as(small)
    with pytest.raises(VolumeError, match="different sizes"):
        assemble_volume([*philips[:3], small])


def test_no_geometry_is_an_error(samples):
    paths = [samples / "dcm_qa_ts/In/1.dcm", samples / "pydicom_testfiles/pydicom/image_dfl.dcm"]
    with pytest.raises(VolumeError):
        assemble_volume(paths)


def ge_files(samples):
    return sorted((samples / "dcm_qa_ct/In/GE").glob("*.dcm"))


def test_ge_tilted_uneven_series_keeps_its_shear_and_is_resampled_along_it(samples):
    """The GE head: 14 slices 4.00 mm apart, an overlap of 1.08 mm, 13 slices 7.00 mm apart, stacked
    18.5° off their normal. The volume is resampled onto an even 4.00 mm grid through the 4 mm part,
    and its affine puts each voxel where the files say (the slice step keeps the shear)."""
    paths = ge_files(samples)
    v = assemble_volume(paths)
    text = " ".join(v.warnings)
    assert "Gantry tilt" in text and "18.5°" in text
    assert "resampled to a uniform 4.00 mm from gaps of 1.08-7.00 mm" in text
    dss = sorted((pydicom.dcmread(p) for p in paths), key=lambda d: float(d.ImagePositionPatient[2]))
    ipp = np.array([[float(x) for x in d.ImagePositionPatient] for d in dss])
    step = (ipp[13] - ipp[0]) / 13                                   # the 4 mm part's step, from the files
    assert v.resampled and v.array.dtype == np.int16
    assert v.spacing[0] == pytest.approx(np.linalg.norm(step), abs=1e-3) and v.slice_gap == pytest.approx(4.0, abs=0.01)
    np.testing.assert_allclose(v.direction[:, 2], step / np.linalg.norm(step), atol=1e-6)   # not the normal
    assert abs(float(np.dot(v.direction[:, 2], v.normal))) < 0.96
    n = v.array.shape[0]
    assert n == 37 and v.index_to_patient(n - 1, 0, 0)[2] == pytest.approx(ipp[-1][2], abs=0.05)
    ref, _ = naive(paths)
    for k in range(14):                        # the grid passes through the 4 mm part: those slices as they are
        np.testing.assert_allclose(v.index_to_patient(k, 0, 0), ipp[k], atol=1e-3)
        np.testing.assert_array_equal(v.array[k], ref[k])
    # a slice of the 7 mm part: interpolated along the stack between the two files around it
    normal = np.cross([float(x) for x in dss[0].ImageOrientationPatient[:3]],
                      [float(x) for x in dss[0].ImageOrientationPatient[3:]])
    s = ipp @ normal
    t = float(v.index_to_patient(20, 0, 0) @ normal)
    k = int(np.searchsorted(s, t)) - 1
    w = (t - s[k]) / (s[k + 1] - s[k])
    assert 0.05 < w < 0.95
    np.testing.assert_allclose(v.array[20], np.rint(ref[k] * (1 - w) + ref[k + 1] * w), atol=1)


def test_missing_slices_are_refused_and_the_runs_around_them_offered(philips):
    from workstation.core.pixels.slice_reader import read_slice_header
    from workstation.core.pixels.volume_checks import largest_consistent_part

    paths = philips[:40] + philips[43:]                       # three slices left out: a 4 mm hole
    with pytest.raises(VolumeError, match=r"missing slices: a 4 mm gap between slices 40 and 41 .*about 3 slice"):
        assemble_volume(paths)
    part = largest_consistent_part([read_slice_header(p) for p in paths])
    assert (part.first, part.last, part.total, part.label) == (41, 137, 137, "slices 41-137")
    assert "missing slices" in part.left_out and "outside 41-137 of 137" in part.left_out
    assert [h.path for h in part.headers] == philips[43:]
    v = assemble_volume([h.path for h in part.headers])
    assert v.array.shape[0] == 97 and v.warnings == [] and v.spacing[0] == pytest.approx(1.0)


def test_gaps_too_wide_to_interpolate_are_refused_and_the_regular_part_offered(samples):
    """The GE head with two of every three 7 mm slices left out: 21 mm gaps after 4 mm ones."""
    from workstation.core.pixels.slice_reader import read_slice_header
    from workstation.core.pixels.volume_checks import largest_consistent_part

    paths = ge_files(samples)
    sparse = paths[:16] + paths[18::3]
    with pytest.raises(VolumeError, match=r"spacing too uneven to resample: a 21 mm gap between slices 16 and 17"):
        assemble_volume(sparse)
    part = largest_consistent_part([read_slice_header(p) for p in sparse])
    assert part.label == "slices 1-16" and part.total == 20
    v = assemble_volume([h.path for h in part.headers])
    assert v.resampled and any("from gaps of 1.08-7.00 mm" in w for w in v.warnings)


def test_the_study_folder_with_its_localizer_offers_the_axial_stack(samples):
    """The Philips study as it was exported: the coronal localizer beside the 140 axial slices."""
    from workstation.core.pixels.slice_reader import read_slice_header
    from workstation.core.pixels.volume_checks import largest_consistent_part

    paths = sorted((samples / "dcm_qa_ct/In/Philips/S21570").rglob("I*"))
    part = largest_consistent_part([read_slice_header(p) for p in paths])
    assert len(paths) == 141 and (part.label, part.total) == ("slices 1-140", 140)
    assert part.left_out == "left out: 1 localizer(s)"
    assert assemble_volume(paths).array.shape[0] == 140


def test_mixed_orientations_offer_the_largest_orientation(philips, tmp_path):
    from workstation.core.pixels.slice_reader import read_slice_header
    from workstation.core.pixels.volume_checks import largest_consistent_part

    ds = pydicom.dcmread(philips[0])
    ds.ImageOrientationPatient = [1, 0, 0, 0, 0, -1]
    ds.SOPInstanceUID = generate_uid()
    odd = tmp_path / "coronal.dcm"
    ds.save_as(odd)
    headers = [read_slice_header(p) for p in [*philips[:6], odd]]
    with pytest.raises(VolumeError, match="mixed orientations"):
        assemble_volume([h.path for h in headers])
    part = largest_consistent_part(headers)
    assert part.label == "slices 1-6" and "1 slice(s) of another orientation or size" in part.left_out
    assert largest_consistent_part(headers[:6]).left_out == ""            # a volume already: all of it


def test_sagittal_mr_direction(samples):
    v = assemble_volume(sorted((samples / "dcm_qa_deident/In").glob("*.dcm")))
    assert v.array.shape == (196, 256, 256)
    expected = np.array([[0, 0, -1], [1, 0, 0], [0, -1, 0]], dtype=float)
    np.testing.assert_allclose(v.direction, expected, atol=1e-6)
    assert v.spacing[0] == pytest.approx(1.2, abs=1e-3) and v.warnings == []
    far = v.index_to_patient(195, 0, 0)
    assert far[0] == pytest.approx(v.origin[0] - 195 * 1.2, abs=0.01)


def test_duplicate_positions_warn(philips):
    v = assemble_volume([*philips[:5], philips[2]])
    assert v.array.shape[0] == 5 and any("Duplicate" in w for w in v.warnings)


def alternately_rle(sources, folder) -> list:
    """Copies of `sources` in `folder`, every second one RLE-compressed: a series of mixed syntaxes."""
    paths = []
    for i, src in enumerate(sources):
        ds = pydicom.dcmread(src)
        if i % 2:
            ds.compress(RLELossless)
        dst = folder / f"{i}.dcm"
        ds.save_as(dst)
        paths.append(dst)
    return paths


def test_compressed_slices_fall_back_to_decoder(philips, tmp_path):
    paths = alternately_rle(philips[:4], tmp_path)
    v = assemble_volume(paths)
    np.testing.assert_array_equal(v.array, assemble_volume(philips[:4]).array)


def test_float_when_rescale_is_not_integer(philips, tmp_path):
    paths = []
    for i, src in enumerate(philips[:3]):
        ds = pydicom.dcmread(src)
        ds.RescaleSlope = 0.5
        dst = tmp_path / f"{i}.dcm"
        ds.save_as(dst)
        paths.append(dst)
    v = assemble_volume(paths)
    assert v.array.dtype == np.float32
    ref, _ = naive(paths)
    np.testing.assert_allclose(v.array, ref)


def test_progress_and_cancel(philips):
    seen = []
    assemble_volume(philips[:6], progress=lambda d, t, m: seen.append((d, t, m)))
    assert seen[-1][:2] == (12, 12) and seen[0][2] == "reading headers"
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        assemble_volume(philips[:6], cancel=token)


def test_sort_slices_orders_along_normal(philips):
    from workstation.core.pixels.slice_reader import read_slice_header

    headers = [read_slice_header(p) for p in philips[:5]]
    order, positions = sort_slices([h.plane for h in headers])
    assert sorted(order) == list(range(5)) and np.all(np.diff(positions) > 0)


def test_unreadable_file_is_a_volume_error(samples, philips, tmp_path):
    bad = tmp_path / "bad.dcm"
    shutil.copy(samples / "orthanc_tests/Database/2026-05-06-Deeply-Nested-Sequence.dcm", bad)
    with pytest.raises(VolumeError):
        assemble_volume([*philips[:2], bad])


# ----------------------------------------------------------------------------- from the cache's index


def _same_volume(a, b):
    assert a.array.dtype == b.array.dtype
    np.testing.assert_array_equal(a.array, b.array)
    assert a.spacing == b.spacing
    np.testing.assert_array_equal(a.origin, b.origin)
    np.testing.assert_array_equal(a.direction, b.direction)
    assert a.warnings == b.warnings
    assert a.source_uids == b.source_uids


@pytest.mark.parametrize(
    "folder, pattern",
    [(PHILIPS, "*"), ("dcm_qa_ct/In/GE", "*.dcm"), ("dcm_qa_deident/In", "*.dcm")],
    ids=["philips-140", "ge-tilted", "sagittal-mr"],
)
def test_index_path_gives_the_same_volume_as_the_file_path(samples, tmp_path, folder, pattern):
    from workstation.core.cache import Cache
    from workstation.core.pixels.volume import assemble_volume_from_headers

    paths = sorted((samples / folder).glob(pattern))
    with Cache(tmp_path / "home") as cache:
        assert cache.import_paths(paths).imported == len(paths)
        (series,) = cache.query("series")
        headers = cache.volume_slices(series.SeriesInstanceUID)
    assert len(headers) == len(paths) and all(h.record.pixel_offset for h in headers)
    _same_volume(assemble_volume_from_headers(headers), assemble_volume(paths))


def test_index_path_reads_no_header(samples, tmp_path, monkeypatch):
    from workstation.core.cache import Cache
    from workstation.core.pixels import slice_reader, volume

    paths = in_stack_order(samples / PHILIPS)[:8]
    with Cache(tmp_path / "home") as cache:
        cache.import_paths(paths)
        (series,) = cache.query("series")
        reference = assemble_volume(paths)

        def no_header(*args, **kwargs):
            raise AssertionError("a header was parsed")

        monkeypatch.setattr(slice_reader.pydicom, "dcmread", no_header)
        monkeypatch.setattr(slice_reader, "read_to_pixel_module", no_header)
        headers = Cache(tmp_path / "home").volume_slices(series.SeriesInstanceUID)
        _same_volume(volume.assemble_volume_from_headers(headers), reference)


def test_index_path_falls_back_when_a_file_changed(samples, tmp_path):
    """A stored file that no longer matches its record (size, tag at the offset) is decoded instead."""
    from workstation.core.cache import Cache
    from workstation.core.pixels.volume import assemble_volume_from_headers

    paths = in_stack_order(samples / PHILIPS)[:4]
    with Cache(tmp_path / "home") as cache:
        cache.import_paths(paths)
        (series,) = cache.query("series")
        headers = cache.volume_slices(series.SeriesInstanceUID)
    victim = headers[1].path
    ds = pydicom.dcmread(victim)
    ds.add_new(0x00091010, "LO", "pushes the pixel data further into the file")
    ds.save_as(victim)
    _same_volume(assemble_volume_from_headers(headers), assemble_volume(paths))


def test_index_path_compressed_slices_fall_back_to_decoder(philips, tmp_path):
    from workstation.core.cache import Cache
    from workstation.core.pixels.volume import assemble_volume_from_headers

    paths = alternately_rle(philips[:4], tmp_path)
    with Cache(tmp_path / "home") as cache:
        cache.import_paths(paths)
        (series,) = cache.query("series")
        headers = cache.volume_slices(series.SeriesInstanceUID)
    assert [h.record.pixel_offset is None for h in sorted(headers, key=lambda h: h.plane.position[2])].count(True) == 2
    np.testing.assert_array_equal(assemble_volume_from_headers(headers).array, assemble_volume(philips[:4]).array)


def test_index_path_errors_and_progress(samples, philips, tmp_path):
    from workstation.core.cache import Cache
    from workstation.core.pixels.volume import assemble_volume_from_headers

    ds = pydicom.dcmread(philips[0])
    ds.ImageOrientationPatient = [1, 0, 0, 0, 0, -1]
    ds.SOPInstanceUID = generate_uid()
    odd = tmp_path / "coronal.dcm"
    ds.save_as(odd)
    with Cache(tmp_path / "home") as cache:
        cache.import_paths([*philips[:5], odd, samples / "dcm_qa_ct/In/Philips/S21570/S1000/I10"])
        series = {s.SeriesNumber: s.SeriesInstanceUID for s in cache.query("series")}
        headers = cache.volume_slices(series[202])
    with pytest.raises(VolumeError, match="mixed orientations"):
        assemble_volume_from_headers(headers)
    seen = []
    v = assemble_volume_from_headers(
        [h for h in headers if h.path.stat().st_size and h.record.SOPInstanceUID != ds.SOPInstanceUID],
        progress=lambda d, t, m: seen.append((d, t, m)),
    )
    assert v.array.shape[0] == 5 and seen[-1][:2] == (5, 5)


def test_a_record_of_an_older_version_is_read_again_from_the_file_and_replaced(philips, tmp_path):
    """The index keeps a versioned slice record; one written by an older version (here the unversioned
    two-letter-key dict of version 1) is never trusted: the header is read again and the record stored."""
    from workstation.core.cache import Cache
    from workstation.core.dicom.slices import VERSION, SliceRecord
    from workstation.core.pixels.volume import assemble_volume_from_headers

    with Cache(tmp_path / "home") as cache:
        cache.import_paths(philips[:4])
        (series,) = cache.query("series")
        conn = cache._conn
        current = dict(conn.execute("SELECT SOPInstanceUID, geometry FROM instances").fetchall())
        old = '{"ipp":[0,0,0],"iop":[1,0,0,0,1,0],"ps":[9,9],"rows":512,"cols":512,"ba":16,"off":12,"len":5}'
        conn.execute("UPDATE instances SET geometry = ?", (old,))
        headers = cache.volume_slices(series.SeriesInstanceUID)
        stored = dict(conn.execute("SELECT SOPInstanceUID, geometry FROM instances").fetchall())
    assert stored == current and all(f'"version":{VERSION}' in g for g in stored.values())
    assert [h.record for h in headers] == [SliceRecord.from_json(stored[h.record.SOPInstanceUID]) for h in headers]
    np.testing.assert_array_equal(assemble_volume_from_headers(headers).array, assemble_volume(philips[:4]).array)


def test_multi_frame_images_are_refused_in_words(samples):
    enhanced = [samples / f"dcm_qa_enh/In/Siemens/XA10/6_{n}.dcm" for n in (1, 2)]
    with pytest.raises(VolumeError, match="2 image.s. have several frames"):
        assemble_volume(enhanced)


def test_colour_slices_are_refused_not_read_as_grey(philips, tmp_path):
    """A PALETTE COLOR slice has one sample per pixel like a grey one, but its values are palette indices."""
    paths = []
    for n, source in enumerate(philips[:3]):
        ds = pydicom.dcmread(source)
        if n == 1:
            ds.PhotometricInterpretation = "PALETTE COLOR"
            ds.PixelRepresentation = 0
            for n_colour in range(3):   # Red, Green, Blue Palette Color Lookup Table Descriptor and Data
                ds.add_new(0x00281101 + n_colour, "US", [256, 0, 16])
                ds.add_new(0x00281201 + n_colour, "OW", np.arange(256, dtype="<u2").tobytes())
        paths.append(tmp_path / f"{n}.dcm")
        ds.save_as(paths[-1])
    with pytest.raises(VolumeError, match="colour"):
        assemble_volume(paths)
