"""Frame loading: the header fast path and positioned reads for native files, what a renderer keeps,
the lazily read rest of the header, and the one place native bytes become stored values.

Oracles: pydicom's own full read and decode of the same files (every file of the corpus that takes
the fast path, and pydicom's multi-frame test files), numpy arithmetic in the test, and tracemalloc
for what stays allocated.
"""

from __future__ import annotations

import csv
import gc
import os
import tracemalloc
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from tests.samples import MANIFEST
from workstation.core.dicom.header import PREFIX, read_to_pixel_module, reader
from workstation.core.pixels import FrameRenderer, ImageSource, PixelDataError
from workstation.core.pixels.native import keep_stored_bits, read_stored

pytestmark = pytest.mark.samples

PHILIPS = "dcm_qa_ct/In/Philips/S21570/S2020"
MULTI_FRAME = ("emri_small.dcm", "rtdose.dcm", "SC_rgb_2frame.dcm")
"""pydicom's native multi-frame test files (16-bit MR, 32-bit dose, RGB): the corpus has none the fast path takes."""


def _pydicom_file(name: str) -> Path:
    found = get_testdata_file(name, download=False)
    if found is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is not installed with pydicom")
        pytest.skip(f"{name} is not installed with pydicom")
    return Path(found)


def _header(path: Path):
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        return read_to_pixel_module(reader(fd), os.pread(fd, min(size, PREFIX), 0), size)
    finally:
        os.close(fd)


def _same_source(fast: ImageSource, full: ImageSource, frames: list[int]) -> None:
    assert (fast.rows, fast.columns, fast.number_of_frames, fast.photometric, fast.invert) == \
        (full.rows, full.columns, full.number_of_frames, full.photometric, full.invert)
    for i in frames:
        a, b = fast.stored_frame(i), full.stored_frame(i)
        assert a.dtype == b.dtype and np.array_equal(a, b), f"frame {i}"
        assert np.array_equal(fast.modality_frame(i), full.modality_frame(i)), f"frame {i}"
        assert fast.windows(i) == full.windows(i)
        assert fast.spacing(i) == full.spacing(i) and fast.shutter(i) == full.shutter(i)
        pa, pb = fast.plane(i), full.plane(i)
        assert (pa is None) == (pb is None)
        if pa is not None:
            assert np.array_equal(pa.position, pb.position) and pa.pixel_spacing == pb.pixel_spacing


def test_fast_path_equals_pydicom_on_the_corpus(samples):
    """Every file the fast path opens gives what pydicom's full read and decode give."""
    taken = 0
    with MANIFEST.open() as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    for row in rows:
        path = samples / row["path"]
        try:
            fast = ImageSource.open(path)
        except PixelDataError:
            continue
        if not fast.is_native_file:
            continue
        taken += 1
        full = ImageSource.from_dataset(pydicom.dcmread(path, force=True))
        _same_source(fast, full, sorted({0, fast.number_of_frames - 1}))
    assert taken >= 390   # the CT and MR series, 8-bit greyscale, palette and RGB files


@pytest.mark.parametrize("name", MULTI_FRAME)
def test_multi_frame_native_frames_read_at_their_offsets(name, monkeypatch):
    path = _pydicom_file(name)
    reads: list[tuple[int, int]] = []
    real = os.preadv

    def counting(fd, buffers, offset):
        reads.append((offset, sum(len(memoryview(b).cast("B")) for b in buffers)))
        return real(fd, buffers, offset)

    monkeypatch.setattr(os, "preadv", counting)
    fast = ImageSource.open(path)
    assert fast.is_native_file and fast.number_of_frames > 1
    full = ImageSource.from_dataset(pydicom.dcmread(path))
    offset = pydicom.dcmread(path, defer_size=64).get_item("PixelData", keep_deferred=True).value_tell
    frame_bytes = fast.rows * fast.columns * fast.samples_per_pixel * fast.bits_allocated // 8
    last = fast.number_of_frames - 1
    fast.stored_frame(last)
    assert reads == [(offset + last * frame_bytes, frame_bytes)]   # that frame's bytes, nothing else
    _same_source(fast, full, list(range(fast.number_of_frames)))
    np.testing.assert_array_equal(fast.stored_frame(1), pydicom.dcmread(path).pixel_array[1])


def test_header_scan_equals_pydicom_read_dataset(samples):
    """The fast path's own scan of groups up to 0028 makes exactly the Dataset pydicom's read_dataset makes
    of the same bytes (raw elements, undefined-length sequences, stop position, character set), on every
    native little-endian file of the corpus and of pydicom's test files; the rare file it declines
    goes to read_dataset itself."""
    from pydicom.dataelem import DataElement
    from pydicom.filereader import read_dataset

    from workstation.core.dicom import header

    with MANIFEST.open() as f:
        paths = [samples / row["path"] for row in csv.DictReader(f, delimiter="\t")]
    paths += sorted(Path(pydicom.data.__file__).parent.glob("test_files/**/*.dcm"))
    compared = 0
    for path in paths:
        head = path.read_bytes()[:PREFIX]
        opened = header.read_file_meta(head)
        if opened is None or opened[2] not in ("1.2.840.10008.1.2", "1.2.840.10008.1.2.1"):
            continue
        fp, _, ts = opened
        implicit = ts == "1.2.840.10008.1.2"
        scanned = header._header_groups(head, fp.tell(), implicit)
        if scanned is None:
            continue
        ds, stop = scanned
        ref = read_dataset(fp, implicit, True, defer_size=header.DEFER, stop_when=header._after_header_groups)
        assert stop == fp.tell() and list(ds._dict) == list(ref._dict), path
        for tag, ours in ds._dict.items():
            theirs = ref._dict[tag]
            if isinstance(ours, DataElement):
                assert isinstance(theirs, DataElement) and ours == theirs and ours.file_tell == theirs.file_tell
            else:
                assert tuple(ours) == tuple(theirs), (path, tag)
        assert (ds.original_encoding, ds.original_character_set) == (ref.original_encoding, ref.original_character_set)
        compared += 1
    assert compared >= 430


def test_single_frame_renderer_keeps_at_most_1_1x_the_decoded_frame(samples):
    """Open + FrameRenderer of a CT slice, then only the renderer referenced: what stays allocated is
    the renderer's index (the decoded size) and a small header, not the file's pixel bytes, the decoded
    frame in an LRU and the index (1.65 MB for 0.52 MB before)."""
    path = samples / PHILIPS / "I10"
    decoded = pydicom.dcmread(path).pixel_array.nbytes
    FrameRenderer(ImageSource.open(samples / PHILIPS / "I20"))   # imports and caches settle first
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        renderer = FrameRenderer(ImageSource.open(path))
        gc.collect()
        retained = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert renderer.render().shape == (512, 512)
    assert retained <= 1.1 * decoded, f"{retained} bytes kept for a {decoded}-byte frame"
    assert renderer.nbytes <= decoded


def test_single_frame_source_keeps_no_decoded_frame(samples):
    source = ImageSource.open(samples / PHILIPS / "I10")
    first = source.stored_frame(0)
    assert source.stored_frame(0) is not first and source.nbytes == 0
    multi = ImageSource.open(_pydicom_file("emri_small.dcm"))
    assert multi.stored_frame(3) is multi.stored_frame(3) and multi.nbytes == multi.stored_frame(3).nbytes


def test_renderer_of_the_fast_path_equals_the_full_read(samples):
    path = samples / PHILIPS / "I700"
    fast, full = FrameRenderer(ImageSource.open(path)), FrameRenderer(ImageSource.from_dataset(pydicom.dcmread(path)))
    assert fast.source.is_native_file and not full.source.is_native_file
    assert fast.value_range == full.value_range and fast.default_window == full.default_window
    np.testing.assert_array_equal(fast.render(), full.render())
    hu = pydicom.dcmread(path).pixel_array * 1.0 - 1024.0   # RescaleSlope 1, RescaleIntercept -1024
    assert fast.value_range == (hu.min(), hu.max())


def test_header_beyond_group_0028_is_read_once_on_demand(samples):
    """The fast path parses up to group 0028; the rest (here PET's group 0054) comes from header()."""
    path = samples / "orthanc_tests/Database/Issue94.dcm"
    source = ImageSource.open(path)
    assert source.is_native_file
    assert "RadiopharmaceuticalInformationSequence" not in source.dataset
    header = source.header()
    full = pydicom.dcmread(path)
    assert header.RadiopharmaceuticalInformationSequence == full.RadiopharmaceuticalInformationSequence
    assert "PixelData" not in header and header.PatientName == full.PatientName
    assert source.header() is header   # read once


def test_presentation_lut_shape_after_group_0028_is_honoured(samples, tmp_path):
    """Presentation LUT Shape (2050,0020) lies beyond the fast path's groups: its tag is watched for."""
    ds = pydicom.dcmread(samples / PHILIPS / "I10")
    ds.PresentationLUTShape = "INVERSE"
    ds.save_as(tmp_path / "inverse.dcm", enforce_file_format=True)
    plain, inverse = ImageSource.open(samples / PHILIPS / "I10"), ImageSource.open(tmp_path / "inverse.dcm")
    assert plain.is_native_file and inverse.is_native_file
    assert not plain.invert and inverse.invert
    np.testing.assert_array_equal(FrameRenderer(inverse).render(), 255 - FrameRenderer(plain).render())


@pytest.mark.parametrize("element", [0x3000, 0x0010])
def test_fast_path_declines_files_with_overlay_planes(samples, tmp_path, element):
    """An overlay plane (Overlay Data, or only its attributes when it sits in Pixel Data's unused bits)
    lies after group 0028: such a file is read whole, so its overlays are seen."""
    path = samples / PHILIPS / "I10"
    assert _header(path) is not None
    ds = pydicom.dcmread(path)
    ds.add_new((0x6002, 0x0010), "US", 512)
    if element == 0x3000:
        ds.add_new((0x6002, 0x3000), "OW", bytes(512 * 512 // 8))
    ds.save_as(tmp_path / "overlay.dcm", enforce_file_format=True)
    assert _header(tmp_path / "overlay.dcm") is None
    assert not ImageSource.open(tmp_path / "overlay.dcm").is_native_file


def test_a_file_changed_after_opening_is_reported(samples, tmp_path):
    copy = tmp_path / "slice.dcm"
    copy.write_bytes((samples / PHILIPS / "I10").read_bytes())
    source = ImageSource.open(copy)
    with copy.open("ab") as f:
        f.write(b"\0\0")
    with pytest.raises(PixelDataError, match="slice.dcm: the file changed since its header was read"):
        source.stored_frame(0)


@pytest.mark.parametrize("bits_stored", [1, 7, 12, 15, 16])
@pytest.mark.parametrize("signed", [False, True])
def test_stored_values_from_native_bytes(tmp_path, bits_stored, signed):
    """Bits above Bits Stored are dropped, the sign taken from bit Bits Stored - 1 (PS3.5 8.1.1)."""
    raw = np.random.default_rng(bits_stored).integers(0, 1 << 16, size=999, dtype=np.uint16)
    path = tmp_path / "raw"
    path.write_bytes(b"xyz" + raw.astype("<u2").tobytes())
    low = raw.astype(np.int64) & ((1 << bits_stored) - 1)
    expected = low - ((low >> (bits_stored - 1)) << bits_stored) if signed else low
    fd = os.open(path, os.O_RDONLY)
    try:
        got = read_stored(fd, 3, raw.size, 16, bits_stored, int(signed))
    finally:
        os.close(fd)
    assert got.dtype == (np.int16 if signed else np.uint16)
    np.testing.assert_array_equal(got.astype(np.int64), expected)
    in_place = raw.copy()
    assert keep_stored_bits(in_place, bits_stored, signed) is in_place   # the slice reader's int16 slots too
    np.testing.assert_array_equal(in_place.view(got.dtype).astype(np.int64), expected)
