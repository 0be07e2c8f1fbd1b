"""Decoding, Modality LUT, VOI, colour and malformed-input behaviour of the pixel pipeline on the real corpus."""

from __future__ import annotations

import copy
import struct
import subprocess
import tracemalloc
import zlib

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.pixels.decoders.base import DecodeRunner
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from tests.peers import DCMJ2PNM_BIN, require_binary
from workstation.core.dicom.codecs import decoder_problem
from workstation.core.pixels import FrameRenderer, ImageSource, PixelDataError, Window, render
from workstation.core.pixels.png import read_pnm, write_png
from workstation.core.pixels.presets import load_presets, preset
from workstation.core.pixels.voi import full_range_window, voi_lut_uint8, window_to_uint8, window_values

pytestmark = pytest.mark.samples

CT1 = "nema_wg04/REF/CT1_UNC"


def stored(samples, rel, frame=0):
    return ImageSource.open(samples / rel).stored_frame(frame)


# --- codecs -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "rel",
    [
        "nema_wg04/JPLL/CT1_JPLL",
        "nema_wg04/JLSL/CT1_JLSL",
        "nema_wg04/J2KR/CT1_J2KR",
        "nema_wg04/RLE/CT1_RLE",
    ],
)
def test_lossless_ct1_equals_reference(samples, rel):
    ref = stored(samples, CT1)
    got = stored(samples, rel)
    assert got.shape == (512, 512)
    np.testing.assert_array_equal(got.astype(np.int32), ref.astype(np.int32))


@pytest.mark.parametrize("n", range(2, 10))
def test_dcm_qa_ts_all_syntaxes_identical(samples, n):
    ref = stored(samples, "dcm_qa_ts/In/1.dcm")
    got = stored(samples, f"dcm_qa_ts/In/{n}.dcm")
    assert ref.shape == (384, 384) and ref.max() > 1000
    np.testing.assert_array_equal(got, ref)


def test_near_lossless_and_lossy_stay_close(samples):
    ref = stored(samples, CT1).astype(np.int32)
    near = stored(samples, "nema_wg04/JLSN/CT1_JLSN").astype(np.int32)
    lossy = stored(samples, "nema_wg04/J2KI/CT1_J2KI").astype(np.int32)
    assert 0 < np.abs(near - ref).max() <= 10
    assert 0 < np.abs(lossy - ref).mean() < 40
    assert np.corrcoef(lossy.ravel(), ref.ravel())[0, 1] > 0.99


def test_jpeg_extended_12bit_is_a_clear_error(samples):
    source = ImageSource.open(samples / "nema_wg04/JPLY/MR1_JPLY")
    with pytest.raises(PixelDataError) as info:
        source.stored_frame(0)
    message = str(info.value)
    assert "JPEG Extended" in message and "1.2.840.10008.1.2.4.51" in message
    assert "\n" not in message and "says" in message


def test_fixed_jpeg_extended_decodes(samples):
    arr = stored(samples, "pydicom_testfiles/pydicom/JPGExtended.dcm")
    assert arr.shape == (1024, 256) and 200 < int(arr.max()) < 4096


def test_deflate_and_big_endian(samples):
    assert stored(samples, "pydicom_testfiles/pydicom/image_dfl.dcm").shape == (512, 512)
    big = stored(samples, "dcm_qa_ts/In/3.dcm")
    np.testing.assert_array_equal(big, stored(samples, "dcm_qa_ts/In/1.dcm"))


def test_jpeg_lossless_process14_non_sv1(samples):
    arr = stored(samples, "orthanc_tests/Database/TransferSyntaxes/1.2.840.10008.1.2.4.57.dcm")
    assert arr.shape == (1024, 1024) and arr.max() > 100


def test_decoder_problem():
    assert decoder_problem("1.2.840.10008.1.2.4.70") is None
    assert decoder_problem("1.2.840.10008.1.2.4.90") is None
    msg = decoder_problem("1.2.840.10008.1.2.4.100")
    assert msg is not None and "MPEG2" in msg and "cannot be decoded" in msg


# --- malformed input -----------------------------------------------------------------------------------

MALFORMED = [
    "orthanc_tests/Database/2026-05-06-Deeply-Nested-Sequence.dcm",
    "orthanc_tests/Database/2026-05-26-oob-monochrome-46341.dcm",
    "orthanc_tests/Database/2026-05-26-oob-monochrome-65535.dcm",
    "orthanc_tests/Database/Issue111.dcm",
    "orthanc_tests/Database/Issue195-bis.dcm",
    "orthanc_tests/Database/Issue22-NoPixelData.dcm",
    "orthanc_tests/Database/Issue56-NoPixelData.dcm",
    "pydicom_testfiles/pydicom/badVR.dcm",
    "pydicom_testfiles/pydicom/MR_truncated.dcm",
    "pydicom_testfiles/pydicom/rtplan_truncated.dcm",
    "pydicom_testfiles/pydicom/no_meta.dcm",
    "pydicom_testfiles/pydicom/no_meta_group_length.dcm",
    "pydicom_testfiles/pydicom/meta_missing_tsyntax.dcm",
    "pydicom_testfiles/pydicom/ExplVR_LitEndNoMeta.dcm",
    "pydicom_testfiles/pydicom/ExplVR_BigEndNoMeta.dcm",
    "pydicom_testfiles/pydicom/JPEG2000-embedded-sequence-delimiter.dcm",
    "pydicom_testfiles/pydicom/UN_sequence.dcm",
    "pydicom_testfiles/pydicom/nested_priv_SQ.dcm",
    "pydicom_testfiles/pydicom-data/emri_small_jpeg_2k_lossless_too_short.dcm",
    "nema_wg04/JPLY/NM1_JPLY",
]


@pytest.mark.parametrize("rel", MALFORMED)
def test_malformed_files_raise_pixel_data_error(samples, rel):
    with pytest.raises(PixelDataError) as info:
        source = ImageSource.open(samples / rel)
        render(source, 0)
    assert str(info.value).strip() and "\n" not in str(info.value)


@pytest.mark.parametrize("size", [46341, 65535])
def test_oversized_header_fails_fast_without_allocating(samples, size):
    tracemalloc.start()  # how fast: benchmarks/bench_header_checks.py
    with pytest.raises(PixelDataError) as info:
        ImageSource.open(samples / f"orthanc_tests/Database/2026-05-26-oob-monochrome-{size}.dcm")
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert f"Rows x Columns ({size} x {size})" in str(info.value)
    assert "GB" in str(info.value) and "pixel data" in str(info.value)
    assert peak < 20 << 20


def test_missing_pixel_representation_and_per_frame_rescale(samples):
    source = ImageSource.open(samples / "orthanc_tests/Database/MultiframeWindowing.dcm")
    assert source.number_of_frames == 4 and source.pixel_representation == 0
    raw = source.stored_frame(0).astype(np.int32)
    assert raw.shape == (2, 2) and source.stored_frame(0).dtype.kind == "u"
    expected = [raw, raw + 100, raw * 2, raw * 2 + 100]
    for i, want in enumerate(expected):
        np.testing.assert_array_equal(source.modality_frame(i), want)
    assert source.windows(0) == [Window(16, 128)]
    assert source.windows(1) == []


def test_no_file_meta_guesses_transfer_syntax(samples):
    source = ImageSource.open(samples / "orthanc_tests/Database/TransferSyntaxes/1.2.840.10008.1.2.dcm")
    assert str(source.transfer_syntax) == "1.2.840.10008.1.2"
    assert source.stored_frame(0).shape == (256, 256)


# --- bits, sign, modality LUT ---------------------------------------------------------------------------------


def _synthetic(values: np.ndarray, bits_stored: int, signed: bool) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPInstanceUID = generate_uid()
    ds.Rows, ds.Columns = values.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = int(signed)
    ds.PixelData = values.astype("<u2").tobytes()
    ds["PixelData"].VR = "OW"
    return ds


def test_bits_stored_masking_unsigned_and_signed():
    raw = np.array([[0xF123, 0x0FFF], [0x0800, 0xA001]], dtype=np.uint16)
    unsigned = ImageSource.from_dataset(_synthetic(raw, 12, False)).stored_frame(0)
    assert unsigned.tolist() == [[0x123, 0xFFF], [0x800, 0x001]]
    signed = ImageSource.from_dataset(_synthetic(raw, 12, True)).stored_frame(0)
    assert signed.dtype == np.int16
    assert signed.tolist() == [[0x123, -1], [-2048, 1]]


def test_signed_ct_modality_values(samples):
    source = ImageSource.open(samples / "orthanc_tests/Database/SignedCT.dcm")
    raw = source.stored_frame(0)
    assert raw.dtype == np.int16 and raw.min() < 0
    hu = source.modality_frame(0)
    assert hu.dtype == np.int32
    np.testing.assert_array_equal(hu, raw.astype(np.int32) - 1024)
    assert source.windows()[0] == Window(-600.0, 1600.0)


def test_rescale_non_integer_gives_float(samples):
    source = ImageSource.open(samples / "orthanc_tests/Database/Issue94.dcm")
    values = source.modality_frame(0)
    assert values.dtype == np.float32
    np.testing.assert_allclose(values, source.stored_frame(0) * 10.876161, rtol=1e-6)


def test_modality_lut_sequence():
    raw = np.array([[0, 1], [2, 3]], dtype=np.uint16)
    ds = _synthetic(raw, 16, False)
    item = Dataset()
    item.LUTDescriptor = [4, 0, 16]
    item.LUTData = [100, 200, 400, 800]
    item.ModalityLUTType = "US"
    ds.ModalityLUTSequence = Sequence([item])
    source = ImageSource.from_dataset(ds)
    assert source.modality_frame(0).tolist() == [[100, 200], [400, 800]]
    assert FrameRenderer(source).value_range == (100.0, 800.0)


def test_enhanced_per_frame_rescale(samples):
    source = ImageSource.open(samples / "dcm_qa_enh/In/Philips/IM_0027_fMAP.dcm")
    item = source.dataset.PerFrameFunctionalGroupsSequence[3].PixelValueTransformationSequence[0]
    expected = source.stored_frame(3) * float(item.RescaleSlope) + float(item.RescaleIntercept)
    np.testing.assert_allclose(source.modality_frame(3), expected, rtol=1e-6)


# --- VOI ---------------------------------------------------------------------------------------------------


def test_linear_formula_hand_values():
    w = Window(40, 80)
    # C.11.2.1.2.1: x <= c-0.5-(w-1)/2 = 0 -> 0; x > c-0.5+(w-1)/2 = 79 -> 255; else ((x-39.5)/79+0.5)*255
    y = window_values(np.array([-10, 0, 1, 40, 79, 79.5, 80]), w)
    np.testing.assert_allclose(
        y, [0, 0, (1 - 39.5) / 79 * 255 + 127.5, (0.5 / 79 + 0.5) * 255, 255, 255, 255]
    )
    assert window_to_uint8(np.array([40.0]), w)[0] == 129


def test_linear_exact_formula_hand_values():
    w = Window(40, 80, "LINEAR_EXACT")
    # C.11.2.1.3.2: x <= c-w/2 -> 0; x > c+w/2 -> 255; else ((x-c)/w + 0.5)*255
    y = window_values(np.array([0, 20, 40, 80, 81]), w)
    np.testing.assert_allclose(y, [0, 63.75, 127.5, 255, 255])


def test_sigmoid_formula_hand_values():
    w = Window(40, 80, "SIGMOID")
    # C.11.2.1.3.1: y = 255 / (1 + exp(-4 (x - c) / w))
    y = window_values(np.array([40, 80, 0]), w)
    np.testing.assert_allclose(y, [127.5, 255 / (1 + np.exp(-2)), 255 / (1 + np.exp(2))])


def test_voi_lut_uint8_table_and_invert():
    table = voi_lut_uint8(-2, 2, Window(0, 4, "LINEAR_EXACT"), invert=False)
    assert table.tolist() == [0, 64, 128, 191, 255]
    inverted = voi_lut_uint8(-2, 2, Window(0, 4, "LINEAR_EXACT"), invert=True)
    assert inverted.tolist() == [255, 191, 127, 64, 0]


def test_multiple_windows_with_explanations(samples):
    source = ImageSource.open(samples / "pydicom_testfiles/pydicom-data/bad_sequence.dcm")
    assert source.windows() == [Window(40, 350, "LINEAR", "WINDOW1"), Window(450, 1500, "LINEAR", "WINDOW2")]


def test_philips_multi_valued_window(samples):
    source = ImageSource.open(samples / "dcm_qa_ct/In/Philips/S21570/S2020/I10")
    assert [(w.center, w.width) for w in source.windows()] == [(40.0, 80.0), (40.0, 80.0)]


def test_voi_lut_function_read_from_header(samples):
    ds = pydicom.dcmread(samples / "orthanc_tests/Database/SignedCT.dcm")
    ds.VOILUTFunction = "SIGMOID"
    assert ImageSource.from_dataset(ds).windows()[0].function == "SIGMOID"


def test_voi_lut_sequence_used_when_no_window(samples):
    ds = pydicom.dcmread(samples / CT1)
    for keyword in ("WindowCenter", "WindowWidth"):
        if keyword in ds:
            delattr(ds, keyword)
    item = Dataset()
    item.LUTDescriptor = [4096, 0, 12]
    item.LUTData = list(range(4095, -1, -1))
    item.LUTExplanation = "reversed"
    ds.VOILUTSequence = Sequence([item])
    source = ImageSource.from_dataset(ds)
    (lut,) = source.voi_lut_sequence()
    assert lut.explanation == "reversed" and lut.bits == 12 and len(lut.data) == 4096
    hu = source.modality_frame(0).astype(np.float64)
    expected = np.rint((4095 - np.clip(hu, 0, 4095)) * 255 / 4095).astype(np.uint8)
    np.testing.assert_array_equal(render(source), expected)


def test_default_window_is_full_range_without_header_window(samples):
    source = ImageSource.open(samples / CT1)
    assert source.windows() == []
    renderer = FrameRenderer(source)
    values = source.modality_frame(0)
    assert renderer.value_range == (float(values.min()), float(values.max()))
    img = render(source)
    assert img[values == values.min()].max() == 0 and img[values == values.max()].min() == 255
    assert renderer.default_window == full_range_window(*renderer.value_range)


def test_frame_renderer_rewindow_matches_direct_formula(samples):
    source = ImageSource.open(samples / "orthanc_tests/Database/SignedCT.dcm")
    renderer = FrameRenderer(source)
    values = source.modality_frame(0)
    for window in (Window(40, 400), Window(-600, 1500, "LINEAR_EXACT"), Window(300, 100, "SIGMOID")):
        got = renderer.render(window)
        assert got.dtype == np.uint8 and got.flags.c_contiguous and got.shape == (512, 512)
        np.testing.assert_array_equal(got, window_to_uint8(values, window))
        np.testing.assert_array_equal(render(source, 0, window), got)


def test_monochrome1_is_inverted(samples):
    source = ImageSource.open(samples / "nema_wg04/J2KR/RG3_J2KR")
    assert source.photometric == "MONOCHROME1" and source.invert
    window = Window(550, 1024)
    expected = 255 - window_to_uint8(source.modality_frame(0), window)
    np.testing.assert_array_equal(render(source, 0, window), expected)


def test_presentation_lut_shape_inverse(samples):
    ds = pydicom.dcmread(samples / "orthanc_tests/Database/SignedCT.dcm")
    plain = render(ImageSource.from_dataset(ds))
    ds.PresentationLUTShape = "INVERSE"
    np.testing.assert_array_equal(render(ImageSource.from_dataset(ds)), 255 - plain)
    ds.PresentationLUTShape = "IDENTITY"
    np.testing.assert_array_equal(render(ImageSource.from_dataset(ds)), plain)


# --- colour ----------------------------------------------------------------------------------------------


def test_rgb_and_ybr_rct_twins_identical(samples):
    rle = render(ImageSource.open(samples / "nema_wg04/RLE/US1_RLE"))
    j2kr = render(ImageSource.open(samples / "nema_wg04/J2KR/US1_J2KR"))
    assert rle.shape == (480, 640, 3) and rle.dtype == np.uint8 and rle.flags.c_contiguous
    np.testing.assert_array_equal(rle, j2kr)
    ict = render(ImageSource.open(samples / "nema_wg04/J2KI/US1_J2KI")).astype(int)
    assert np.abs(ict - rle).mean() < 3


COLOUR_VS_DCMTK = [
    "orthanc_tests/Database/Issue19.dcm",
    "orthanc_tests/Database/2023-04-21-RLEPlanarConfigurationYBR_FULL.dcm",
    "orthanc_tests/Database/TransferSyntaxes/1.2.840.10008.1.2.4.50.dcm",
    "orthanc_tests/Database/Implicit-vr-us-palette.dcm",
    "pydicom_testfiles/pydicom-data/OT-PAL-8-face.dcm",
    "orthanc_tests/Database/Issue16.dcm",
]


@pytest.fixture(scope="module")
def dcmj2pnm() -> str:
    require_binary(DCMJ2PNM_BIN, "dcmtk")  # skips, or fails under CI
    return DCMJ2PNM_BIN


@pytest.mark.parametrize("rel", COLOUR_VS_DCMTK)
def test_colour_matches_dcmj2pnm(samples, rel, tmp_path, dcmj2pnm):
    ours = render(ImageSource.open(samples / rel), 0)
    out = tmp_path / "x.ppm"
    subprocess.run([dcmj2pnm, str(samples / rel), str(out)], check=True, capture_output=True)
    theirs = read_pnm(out)
    assert ours.shape == theirs.shape and ours.ndim == 3
    diff = np.abs(ours.astype(int) - theirs.astype(int))
    assert diff.mean() < 1.0 and np.count_nonzero(diff <= 2) / diff.size > 0.995


def test_palette_colour_uses_lut(samples):
    path = samples / "orthanc_tests/Database/Implicit-vr-us-palette.dcm"
    source = ImageSource.open(path)
    assert source.is_color
    rgb = source.stored_frame(0)
    ds = pydicom.dcmread(path)
    indices = ds.pixel_array.astype(np.int64)
    for channel, colour in enumerate(("Red", "Green", "Blue")):
        entries, first, bits = ds[f"{colour}PaletteColorLookupTableDescriptor"].value
        data = np.frombuffer(
            ds[f"{colour}PaletteColorLookupTableData"].value, dtype="<u2" if bits == 16 else "u1"
        )
        lut = data.astype(np.int64)
        if lut.max() > 255:
            lut >>= 8
        expected = lut[np.clip(indices - first, 0, (entries or 65536) - 1)]
        np.testing.assert_array_equal(rgb[..., channel], expected)
    assert len(np.unique(rgb.reshape(-1, 3), axis=0)) > 10


# --- multi-frame ----------------------------------------------------------------------------------------


def test_cine_frame_20_decodes_only_that_frame(samples, monkeypatch):
    calls = []
    original = DecodeRunner.decode

    def counting(self, index):
        calls.append(index)
        return original(self, index)

    monkeypatch.setattr(DecodeRunner, "decode", counting)
    source = ImageSource.open(samples / "orthanc_tests/Database/Issue16.dcm")
    assert source.number_of_frames == 34
    frame = render(source, 20)
    assert calls == [20]
    render(source, 20)
    assert calls == [20], "second request must come from the frame cache"
    monkeypatch.setattr(DecodeRunner, "decode", original)
    full = pydicom.dcmread(samples / "orthanc_tests/Database/Issue16.dcm").pixel_array
    np.testing.assert_array_equal(frame, full[20])
    assert not np.array_equal(full[20], full[0])


def test_frame_index_out_of_range(samples):
    source = ImageSource.open(samples / "orthanc_tests/Database/Issue16.dcm")
    with pytest.raises(IndexError):
        source.stored_frame(34)


def test_seg_one_bit_frames(samples):
    source = ImageSource.open(samples / "orthanc_tests/Database/DicomSeg.dcm")
    frames = [source.stored_frame(i) for i in (0, 50, 95)]
    assert all(f.shape == (256, 256) and set(np.unique(f)) <= {0, 1} for f in frames)


def test_eight_bit_rf_with_modality_lut(samples):
    source = ImageSource.open(samples / "orthanc_tests/Database/KarstenHilbertRF.dcm")
    raw = source.stored_frame(0)
    assert raw.dtype == np.uint8 and source.modality_transform().lut is not None
    np.testing.assert_array_equal(source.modality_frame(0), raw.astype(np.int32))


# --- PNG / PNM and presets ----------------------------------------------------------------------------------


def _read_png(data: bytes) -> tuple[tuple, bytes]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, header, idat = 8, None, b""
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        assert struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])[0] == zlib.crc32(kind + body)
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    return header, zlib.decompress(idat)


@pytest.mark.parametrize("shape,colour_type", [((5, 7), 0), ((4, 3, 3), 2)])
def test_write_png_exact_pixels(tmp_path, shape, colour_type):
    arr = np.random.default_rng(1).integers(0, 256, size=shape, dtype=np.uint8)
    path = tmp_path / "x.png"
    write_png(path, arr)
    header, raw = _read_png(path.read_bytes())
    assert header == (shape[1], shape[0], 8, colour_type, 0, 0, 0)
    rows = np.frombuffer(raw, dtype=np.uint8).reshape(shape[0], -1)
    assert (rows[:, 0] == 0).all()
    np.testing.assert_array_equal(rows[:, 1:].reshape(shape), arr)
    with pytest.raises(ValueError):
        write_png(path, arr.astype(np.uint16))


def test_read_pnm_16_bit_and_comments(tmp_path):
    arr = np.array([[0, 1000], [65535, 7]], dtype=">u2")
    path = tmp_path / "x.pgm"
    path.write_bytes(b"P5\n# made by a test\n2 2\n65535\n" + arr.tobytes())
    np.testing.assert_array_equal(read_pnm(path), arr.astype(np.uint16))


def test_presets():
    presets = load_presets()
    for name in (
        "CT Brain",
        "Subdural",
        "Stroke",
        "Lung",
        "Mediastinum",
        "Abdomen",
        "Liver",
        "Bone",
        "Spine soft tissue",
    ):
        assert name in presets
    assert preset("  ct BRAIN ") == Window(40, 80, "LINEAR", "CT Brain")
    assert preset("lung").center == -600 and preset("LUNG").width == 1500
    with pytest.raises(KeyError, match="Mediastinum"):
        preset("no such preset")


def test_from_dataset_does_not_modify_callers_dataset(samples):
    ds = pydicom.dcmread(samples / "orthanc_tests/Database/MultiframeWindowing.dcm")
    before = copy.deepcopy(ds)
    ImageSource.from_dataset(ds).stored_frame(0)
    assert "PixelRepresentation" not in ds and ds == before
