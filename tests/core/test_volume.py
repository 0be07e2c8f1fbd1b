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


@pytest.fixture(scope="module")
def philips(samples):
    return sorted((samples / PHILIPS).iterdir())


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


def test_ge_tilted_series_warns(samples):
    v = assemble_volume(sorted((samples / "dcm_qa_ct/In/GE").glob("*.dcm")))
    assert v.array.shape == (28, 512, 512)
    text = " ".join(v.warnings)
    assert "Gantry tilt" in text and "18.5°" in text
    assert "Non-uniform slice spacing" in text
    assert v.spacing[0] == pytest.approx(4.0, abs=0.01)
    ref, _ = naive(sorted((samples / "dcm_qa_ct/In/GE").glob("*.dcm")))
    assert v.array.min() == ref.min() and v.array.max() == ref.max()


def test_sagittal_mr_direction(samples):
    v = assemble_volume(sorted((samples / "dcm_qa_deident/In").glob("*.dcm")))
    assert v.array.shape == (196, 256, 256)
    expected = np.array([[0, 0, -1], [1, 0, 0], [0, -1, 0]], dtype=float)
    np.testing.assert_allclose(v.direction, expected, atol=1e-6)
    assert v.spacing[0] == pytest.approx(1.2, abs=1e-3) and v.warnings == []
    far = v.index_to_patient(195, 0, 0)
    assert far[0] == pytest.approx(v.origin[0] - 195 * 1.2, abs=0.01)


def test_missing_slice_warning(philips):
    paths = philips[:50] + philips[51:]
    v = assemble_volume(paths)
    assert v.array.shape[0] == 139
    assert any(w.startswith("Missing slices") and "1 slice(s) missing" in w for w in v.warnings)
    assert v.spacing[0] == pytest.approx(1.0)


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

    paths = sorted((samples / PHILIPS).iterdir())[:8]
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

    paths = sorted((samples / PHILIPS).iterdir())[:4]
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
