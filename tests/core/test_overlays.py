"""Overlay planes (PS3.3 C.9.2, C.9.3) against DCMTK: where dcmj2pnm, in its "Replace" mode, draws an
overlay pixel (255) over the same rendering without overlays (-O), our bitmaps, placed at their origin,
are set, and nowhere else.

The real files are pydicom's examples_overlay.dcm and pydicom-data's MR-SIEMENS-DICOM-WithOverlays.dcm
(one graphics plane each in Overlay Data). No file at hand has an overlay in Pixel Data's unused bits
or a multi-frame overlay, so the tests make copies of real images with such planes added (the bits
drawn by the test, written as the standard lays them out) and check both our bitmaps against those
bits and dcmj2pnm's picture of the copy.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from tests.peers import DCMJ2PNM_BIN, require_binary
from workstation.core.pixels import FrameRenderer, ImageSource
from workstation.core.pixels.overlays import Overlay, burn_overlays, overlay_mask
from workstation.core.pixels.png import read_pnm


def _testdata(name: str) -> Path:
    found = get_testdata_file(name, download=False)   # pydicom / pydicom-data, never the network
    if found is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is not installed (pip install pydicom-data)")
        pytest.skip(f"{name} is not installed (pip install pydicom-data)")
    return Path(found)


def _dcmj2pnm(src: Path, out: Path, *args: str) -> np.ndarray:
    proc = subprocess.run([DCMJ2PNM_BIN, *args, str(src), str(out)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return read_pnm(out)


def _dcmtk_overlay_pixels(src: Path, tmp_path: Path, frame: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(dcmj2pnm's overlay pixels, its picture without overlays) for a 0-based frame: with and without
    -O, the file's first window, overlays in Replace mode (255, the foreground at full density)."""
    require_binary(DCMJ2PNM_BIN, "dcmtk")
    select = ["+F", str(frame + 1)]
    with_overlays = _dcmj2pnm(src, tmp_path / f"with{frame}.pgm", "+Wm", "+Omr", *select)
    without = _dcmj2pnm(src, tmp_path / f"without{frame}.pgm", "+Wm", "-O", *select)
    drawn = with_overlays != without
    np.testing.assert_array_equal(with_overlays[drawn], 255)   # Replace draws 255 and nothing else
    return drawn, without


def _assert_same_as_dcmtk(src: Path, tmp_path: Path, frame: int = 0) -> list[Overlay]:
    renderer = FrameRenderer(ImageSource.open(src), frame)
    drawn, without = _dcmtk_overlay_pixels(src, tmp_path, frame)
    ours = overlay_mask(without.shape, renderer.overlays)
    # Where the picture is already 255 an overlay pixel cannot be seen: only there may ours be set alone.
    np.testing.assert_array_equal(drawn, ours & (without != 255))
    return renderer.overlays


@pytest.mark.parametrize("name", ["examples_overlay.dcm", "MR-SIEMENS-DICOM-WithOverlays.dcm"])
def test_overlay_data_matches_dcmj2pnm(name, tmp_path):
    path = _testdata(name)
    overlays = _assert_same_as_dcmtk(path, tmp_path)
    ds = pydicom.dcmread(path)
    assert len(overlays) == 1
    (overlay,) = overlays
    assert overlay.group == 0x6000 and overlay.type == "G" and (overlay.row, overlay.column) == (0, 0)
    assert overlay.description == "Siemens MedCom Object Graphics" and overlay.label == ""
    assert overlay.bitmap.shape == (ds[0x6000, 0x0010].value, ds[0x6000, 0x0011].value)
    assert overlay.bitmap.dtype == bool and not overlay.bitmap.flags.writeable
    assert overlay.bitmap.sum() > 100


def test_overlay_in_pixel_data_unused_bits(tmp_path):
    """A copy of MR-SIEMENS (12 of 16 bits stored) with a second plane, 6002, in bit 14 of Pixel Data
    (Overlay Bits Allocated 16, Bit Position 14, no Overlay Data), as older files keep it: it is read
    before Bits Stored masks it away, and the stored values stay those of the original."""
    path = _testdata("MR-SIEMENS-DICOM-WithOverlays.dcm")
    ds = pydicom.dcmread(path)
    rows, columns = ds.Rows, ds.Columns
    r, c = np.mgrid[0:rows, 0:columns]
    bits = ((r - 200) ** 2 + (c - 250) ** 2 < 60 ** 2) & ((r + c) % 7 < 3)   # a hatched disc, drawn here
    original = ds.pixel_array.copy()
    assert int(original.max()) < 1 << 12
    ds.PixelData = (original | (bits.astype(np.uint16) << 14)).astype("<u2").tobytes()
    ds.add_new((0x6002, 0x0010), "US", rows)
    ds.add_new((0x6002, 0x0011), "US", columns)
    ds.add_new((0x6002, 0x0040), "CS", "G")
    ds.add_new((0x6002, 0x0050), "SS", [1, 1])
    ds.add_new((0x6002, 0x0100), "US", 16)
    ds.add_new((0x6002, 0x0102), "US", 14)
    copy = tmp_path / "embedded.dcm"
    ds.save_as(copy, enforce_file_format=True)

    overlays = _assert_same_as_dcmtk(copy, tmp_path)
    by_group = {o.group: o for o in overlays}
    assert set(by_group) == {0x6000, 0x6002}
    np.testing.assert_array_equal(by_group[0x6002].bitmap, bits)
    np.testing.assert_array_equal(ImageSource.open(copy).stored_frame(0), original)


def test_multi_frame_overlay_applies_from_its_image_frame_origin(tmp_path):
    """A copy of pydicom's emri_small.dcm (10 frames of 64 x 64) with a 3-frame ROI overlay of 21 x 29
    (609 bits a frame, so frames 2 and 3 start inside a byte) applying from image frame 4 (Image Frame
    Origin, 1-based), its origin at row 5, column 7 (1-based): frames 4-6 show it, the others none."""
    path = _testdata("emri_small.dcm")
    ds = pydicom.dcmread(path)
    frames = np.random.default_rng(4).random((3, 21, 29)) < 0.3
    ds.add_new((0x6000, 0x0010), "US", 21)
    ds.add_new((0x6000, 0x0011), "US", 29)
    ds.add_new((0x6000, 0x0015), "IS", 3)
    ds.add_new((0x6000, 0x0040), "CS", "R")
    ds.add_new((0x6000, 0x0050), "SS", [5, 7])
    ds.add_new((0x6000, 0x0051), "US", 4)
    ds.add_new((0x6000, 0x0100), "US", 1)
    ds.add_new((0x6000, 0x0102), "US", 0)
    ds.add_new((0x6000, 0x1500), "LO", "test region")
    packed = np.packbits(frames.reshape(-1), bitorder="little").tobytes()   # PS3.5 8.1.2: bit 0 first
    ds.add_new((0x6000, 0x3000), "OW", packed + b"\0" * (len(packed) % 2))
    copy = tmp_path / "multiframe-overlay.dcm"
    ds.save_as(copy, enforce_file_format=True)

    source = ImageSource.open(copy)
    for frame in range(source.number_of_frames):
        overlays = FrameRenderer(source, frame).overlays
        if not 3 <= frame <= 5:
            assert overlays == [], frame
            continue
        (overlay,) = overlays
        assert (overlay.row, overlay.column, overlay.type, overlay.label) == (4, 6, "R", "test region")
        np.testing.assert_array_equal(overlay.bitmap, frames[frame - 3])
    for frame in (2, 3, 5, 6):
        _assert_same_as_dcmtk(copy, tmp_path, frame)


def test_burn_overlays_sets_the_overlay_pixels_inside_the_image():
    """Burning is clipped to the image: an overlay starting above and left of it (negative origin)."""
    buffer = np.arange(5 * 6, dtype=np.uint8).reshape(5, 6)
    bitmap = np.zeros((3, 4), dtype=bool)
    bitmap[0, 0] = bitmap[2, 3] = bitmap[1, 1] = True
    overlay = Overlay(0x6000, bitmap, row=-1, column=-2, type="G", label="", description="")
    burnt = burn_overlays(buffer, [overlay], value=200)
    expected = buffer.copy()
    expected[1, 1] = 200   # bitmap (2, 3) lands on image (1, 1); (0, 0) and (1, 1) fall above or left of it
    np.testing.assert_array_equal(burnt, expected)
    assert burnt is not buffer and buffer[1, 1] == 7
    rgb = np.stack([buffer] * 3, axis=-1)
    np.testing.assert_array_equal(burn_overlays(rgb, [overlay])[1, 1], [255, 255, 255])


def test_fast_path_files_have_no_overlays(samples):
    renderer = FrameRenderer(ImageSource.open(samples / "dcm_qa_ct/In/Philips/S21570/S2020/I10"))
    assert renderer.source.is_native_file and renderer.overlays == []
