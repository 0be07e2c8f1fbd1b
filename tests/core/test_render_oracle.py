"""Oracle: our greyscale rendering against DCMTK's dcmj2pnm, every pixel, every VOI the file carries.

Every single-frame MONOCHROME1/2 file that the manifest says pydicom decodes is rendered with each of
its own windows, with the function the file gives (``+Wi n``; identical repeats once), else with an
explicit window (``+Ww c w``, half the value range around its middle) both LINEAR and SIGMOID
(``+Wfs``), with its VOI LUT Sequence when it has one and no window (``+Wl 1``), and with DCMTK's
min-max window (``+Wm``) against our full-range window. VOI_CASES add what the corpus lacks: real
files from pydicom-data (a VOI LUT, distinct second windows), and temporary copies of real files
given VOILUTFunction SIGMOID (no real file has it) or a non-linear VOI LUT Sequence.

Tolerance: dcmj2pnm 3.6.7 casts a window's output to an integer (truncation, dimoopxt.h) where we
round to nearest, so for LINEAR and SIGMOID ours minus DCMTK must be 0 or +1 on every pixel (measured:
it is, on every file). For a VOI LUT both programs must give exactly their own formula of the LUT entry
each pixel selects (see _voi_lut_outputs), which puts them within one level of each other either way.
LINEAR_EXACT windows are not compared: dcmj2pnm 3.6.7 does not know it and falls back to LINEAR;
test_pixels checks it against the standard's formula. dcmj2pnm has no JPEG-LS or JPEG 2000 decoder,
so those files go through ``gdcmconv --raw`` first (lossless, the stored values are the same). The
DCMTK runs are started for all files at once on a thread pool; each test waits for its own.
"""

from __future__ import annotations

import csv
import errno
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from tests.peers import DCMJ2PNM_BIN, require_binary
from tests.samples import MANIFEST
from workstation.core.pixels.image import ImageSource
from workstation.core.pixels.png import read_pnm
from workstation.core.pixels.render import FrameRenderer
from workstation.core.pixels.voi import Window, full_range_window

LOSSY_TWIN = ("1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51")
"""Lossy JPEG: libjpeg and DCMTK's IJG 6b IDCTs differ by a stored level on some pixels (measured: -1..+2
on 2.9 % of Monochrome1-Jpeg.dcm), so these are compared through an uncompressed twin holding pydicom's
decode (tests rendering, not the IDCT)."""
NEEDS_GDCM = (
    "1.2.840.10008.1.2.4.80",
    "1.2.840.10008.1.2.4.81",
    "1.2.840.10008.1.2.4.90",
    "1.2.840.10008.1.2.4.91",
)

EXCLUDED: dict[str, str] = {
    "orthanc_tests/Database/2021-02-19-MalaterreCP246.dcm": (
        "its Rescale Slope (1.94) and windows are encoded with VR UN; pydicom (and we) read them by the "
        "data dictionary, DCMTK ignores UN values, so dcmj2pnm shows stored values (checked: stored values "
        "through the same window match it within 1 level)"
    ),
}
"""Files the manifest selects but this test does not compare, each with the reason."""

EXTRA = {
    "orthanc_tests/Database/PrivateMDNTags.dcm": "no File Meta: pydicom alone fails, we infer the transfer syntax",
    "orthanc_tests/Database/TransferSyntaxes/1.2.840.10008.1.2.dcm": "no File Meta: pydicom alone fails, we infer it",
}
"""Files the manifest marks as failing in bare pydicom but that our pipeline decodes; compared too."""


def _selected() -> list[tuple[str, str]]:
    if not MANIFEST.is_file():
        return []
    out = []
    with MANIFEST.open() as f:
        for row in csv.DictReader(f, delimiter="\t"):
            grey = row["pi"] in ("MONOCHROME1", "MONOCHROME2") and row["frames"] == "1"
            if (grey and row["decode"] == "ok") or row["path"] in EXTRA:
                if row["path"] not in EXCLUDED:
                    out.append((row["path"], row["ts"]))
    return out


FILES = _selected()
RESULTS: dict[str, list[tuple[str, int, int]]] = {}
"""Per file or case: (comparison label, pixels, pixels where ours and DCMTK's differ)."""


def _half_range_window(renderer: FrameRenderer, function: str = "LINEAR") -> Window:
    vmin, vmax = renderer.value_range
    return Window((vmin + vmax) / 2, max((vmax - vmin) / 2, 2.0), function)


def _raw_windows(ds: Dataset) -> list[tuple[float, float] | None]:
    """The header's window pairs as DCMTK numbers them (+Wi n is the n-th), unparsable ones as None."""

    def values(keyword: str) -> list:
        v = ds.get(keyword)
        return [] if v is None else list(v) if isinstance(v, pydicom.multival.MultiValue) else [v]

    out: list[tuple[float, float] | None] = []
    for c, w in zip(values("WindowCenter"), values("WindowWidth"), strict=False):
        try:
            out.append((float(c), float(w)))
        except (TypeError, ValueError):
            out.append(None)
    return out


def _dcmtk(args: list[str], out: Path) -> np.ndarray:
    command = [DCMJ2PNM_BIN, "-O", *args, str(out)]  # -O: overlays are not part of the VOI chain
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=60)
    except OSError as exc:  # starting it failed (seen once: EFAULT from exec, four threads spawning at once)
        if exc.errno != errno.EFAULT:
            raise
        proc = subprocess.run(command, capture_output=True, text=True, timeout=60)
    if proc.returncode != 0 or not out.exists():
        raise RuntimeError(f"dcmj2pnm {' '.join(args)} failed: {proc.stderr.strip()}")
    return read_pnm(out)


Comparison = tuple[str, np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray] | None]
"""(label, ours, dcmj2pnm's, (what ours and dcmj2pnm's must be exactly) when the rounding differs, else None)."""


def _voi_lut_outputs(renderer: FrameRenderer) -> tuple[np.ndarray, np.ndarray]:
    """Both programs' output for the LUT entry v (n bits) that each pixel selects in our reading of the LUT.
    Ours: round(v 255 / (2^n - 1)), the linear rescale of the LUT's range. DCMTK's (dimoopxt.h voilut()):
    trunc(low + v (high - low + 1) / 2^n), (low, high) = (0, 255), or (255, 0) inverted; exact in binary
    floating point. So the two may differ by one level either way, and each must match its formula exactly."""
    lut = renderer.voi_luts[0]
    values = renderer.source.modality_frame(renderer.frame).astype(np.float64)
    v = lut.data[np.clip(np.rint(values - lut.first_mapped), 0, len(lut.data) - 1).astype(np.intp)]
    ours = np.rint(v * (255.0 / ((1 << lut.bits) - 1))).astype(np.uint8)
    low, high = (255.0, 0.0) if renderer.invert else (0.0, 255.0)
    theirs = np.trunc(low + v * ((high - low + 1) / float(1 << lut.bits))).astype(np.uint8)
    return (255 - ours if renderer.invert else ours), theirs


def _comparisons(renderer: FrameRenderer, src: Path, out: Path, explicit: bool = True) -> list[Comparison]:
    """Ours and dcmj2pnm's rendering of `src` for each VOI it carries (see the module docstring)."""
    pairs: list[Comparison] = []
    raw = _raw_windows(renderer.source.dataset)
    done: set[Window] = set()
    for window in renderer.file_windows:
        if window.function == "LINEAR_EXACT" or window in done:
            continue
        done.add(window)
        assert (window.center, window.width) in raw, f"window {window} is not among the header's {raw}"
        n = raw.index((window.center, window.width)) + 1
        label = f"window {n} ({window.function} {window.center:g}/{window.width:g})"
        theirs = _dcmtk(["+Wi", str(n), str(src)], out.with_suffix(f".i{n}.pgm"))
        pairs.append((label, renderer.render(window), theirs, None))
    if explicit and not renderer.file_windows:
        for function, flags in (("LINEAR", []), ("SIGMOID", ["+Wfs"])):
            w = _half_range_window(renderer, function)
            theirs = _dcmtk(["+Ww", repr(w.center), repr(w.width), *flags, str(src)], out.with_suffix(f".{function}.pgm"))
            pairs.append((f"explicit {function} {w.center:g}/{w.width:g}", renderer.render(w), theirs, None))
    if renderer.voi_luts:
        theirs = _dcmtk(["+Wl", "1", str(src)], out.with_suffix(".l1.pgm"))
        pairs.append(("VOI LUT 1", renderer.render(None), theirs, _voi_lut_outputs(renderer)))
    if explicit:
        ours = renderer.render(full_range_window(*renderer.value_range))
        pairs.append(("min-max", ours, _dcmtk(["+Wm", str(src)], out.with_suffix(".m.pgm")), None))
    return pairs


def _compare(root: Path, rel: str, ts: str, work: Path) -> list[Comparison]:
    path = root / rel
    tag = rel.replace("/", "_")
    src = path
    if ts in LOSSY_TWIN:
        src = _copy(path, work / f"{tag}.twin.dcm")
    elif ts in NEEDS_GDCM:
        src = work / f"{tag}.raw.dcm"
        proc = subprocess.run(
            ["gdcmconv", "--raw", str(path), str(src)], capture_output=True, text=True, timeout=60
        )
        if proc.returncode != 0:
            raise RuntimeError(f"gdcmconv --raw failed: {proc.stderr.strip()}")
    return _comparisons(FrameRenderer(ImageSource.open(path)), src, work / tag)


# --- VOI cases the corpus lacks ---------------------------------------------------------------------


def _copy(path: Path, out: Path, change: Callable[[Dataset], None] | None = None) -> Path:
    """An uncompressed copy of a real file (pydicom's decode), optionally changed."""
    ds = pydicom.dcmread(path)
    if ds.file_meta.TransferSyntaxUID.is_compressed:
        ds.decompress()
    if change is not None:
        change(ds)
    ds.save_as(out, enforce_file_format=True)
    return out


def _sigmoid(ds: Dataset) -> None:
    ds.VOILUTFunction = "SIGMOID"


def _voi_lut(first: int, entries: int, bits: int, curve: Callable[[np.ndarray], np.ndarray]):
    """A VOI LUT Sequence item in place of the file's windows: `curve` maps 0..1 to 0..1, not linearly."""

    def change(ds: Dataset) -> None:
        for keyword in ("WindowCenter", "WindowWidth", "WindowCenterWidthExplanation", "VOILUTFunction"):
            if keyword in ds:
                delattr(ds, keyword)
        item = Dataset()
        item.add_new(0x00283002, "US", [entries, first & 0xFFFF, bits])  # LUTDescriptor, first mapped as stored
        data = np.rint(((1 << bits) - 1) * curve(np.linspace(0.0, 1.0, entries)))
        item.add_new(0x00283006, "US", data.astype(np.uint16).tolist())  # LUTData
        item.LUTExplanation = "test curve"
        ds.VOILUTSequence = Sequence([item])

    return change


def _pydicom_data(name: str) -> Path:
    found = get_testdata_file(name, download=False)  # pydicom-data, a test dependency; never the network
    if found is None:
        reason = f"{name} is not installed: pip install pydicom-data (make test does)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return Path(found)


MR = "dcm_qa_deident/In/00098.dcm"
PHILIPS_CT = "dcm_qa_ct/In/Philips/S21570/S2020/I700"
SIGNED_CT = "dcm_qa_ct/In/GE/01.dcm"
MONOCHROME1 = "orthanc_tests/Database/Issue44/Monochrome1-Jpeg.dcm"

VOI_CASES: dict[str, tuple[Callable[[Path], Path], Callable[[Dataset], None] | None, str]] = {
    # name: (where the real file is, the change for the temporary copy or None, why)
    "vlut_04 VOI LUT": (lambda s: _pydicom_data("vlut_04.dcm"), None, "a real VOI LUT Sequence (16-bit entries)"),
    "MR-SIEMENS windows": (lambda s: _pydicom_data("MR-SIEMENS-DICOM-WithOverlays.dcm"), None,
                           "two distinct real windows"),
    "examples_overlay windows": (lambda s: _pydicom_data("examples_overlay.dcm"), None, "two distinct real windows"),
    "SIGMOID signed CT": (lambda s: s / SIGNED_CT, _sigmoid, "signed stored values"),
    "SIGMOID CT with rescale": (lambda s: s / PHILIPS_CT, _sigmoid, "Modality LUT (rescale) before the VOI"),
    "SIGMOID MR": (lambda s: s / MR, _sigmoid, "no rescale, wide window"),
    "SIGMOID MONOCHROME1": (lambda s: s / MONOCHROME1, _sigmoid, "inverted, non-integer window"),
    "SIGMOID two windows": (lambda s: s / "pydicom_testfiles/pydicom-data/bad_sequence.dcm", _sigmoid,
                            "two distinct windows"),
    "SIGMOID MR-SIEMENS": (lambda s: _pydicom_data("MR-SIEMENS-DICOM-WithOverlays.dcm"), _sigmoid,
                           "two distinct windows"),
    "VOI LUT signed first": (lambda s: s / MR, _voi_lut(-100, 2100, 12, np.sqrt),
                             "signed pixels: first mapped -100, top clipped, 12-bit entries"),
    "VOI LUT after rescale": (lambda s: s / PHILIPS_CT, _voi_lut(0, 1500, 16, lambda x: x * x * (3 - 2 * x)),
                              "HU in, negatives clipped to the first entry, 16-bit entries"),
    "VOI LUT MONOCHROME1": (lambda s: s / MONOCHROME1, _voi_lut(0, 256, 8, np.square), "inverted, 8-bit entries"),
}


def _voi_case(root: Path, name: str, work: Path) -> list[Comparison]:
    locate, change, _why = VOI_CASES[name]
    path = locate(root)
    tag = name.replace(" ", "_")
    src = _copy(path, work / f"{tag}.dcm", change) if change else path
    pairs = _comparisons(FrameRenderer(ImageSource.open(src)), src, work / tag, explicit=False)
    if not pairs:
        raise AssertionError(f"{name}: the file has no window or VOI LUT to compare")
    if change is _sigmoid:
        assert all("SIGMOID" in pair[0] for pair in pairs), [pair[0] for pair in pairs]
    return pairs


@pytest.fixture(scope="module")
def oracle_jobs(samples):
    require_binary(DCMJ2PNM_BIN, "dcmtk")  # skips, or fails under CI
    if shutil.which("gdcmconv") is None:
        if os.environ.get("CI"):
            pytest.fail("gdcmconv is required for the oracle under CI")
        pytest.skip("gdcmconv is not installed")
    work = Path(tempfile.mkdtemp(prefix="oracle-"))
    pool = ThreadPoolExecutor(max_workers=max(2, (os.cpu_count() or 2)))
    jobs: dict[str, Future] = {rel: pool.submit(_compare, samples, rel, ts, work) for rel, ts in FILES}
    jobs.update({name: pool.submit(_voi_case, samples, name, work) for name in VOI_CASES})
    yield jobs
    pool.shutdown(wait=True, cancel_futures=True)
    shutil.rmtree(work, ignore_errors=True)


def _check(key: str, pairs: list[Comparison]) -> None:
    counts = []
    for label, ours, theirs, exact in pairs:
        assert ours.dtype == np.uint8 and ours.flags.c_contiguous
        assert ours.shape == theirs.shape, f"{label}: shape {ours.shape} vs dcmj2pnm {theirs.shape}"
        diff = ours.astype(np.int16) - theirs.astype(np.int16)
        allowed = (-1, 1) if exact is not None else (0, 1)
        outside = np.count_nonzero((diff < allowed[0]) | (diff > allowed[1]))
        assert outside == 0, (
            f"{label}: {outside} of {diff.size} pixels differ from dcmj2pnm by other than {allowed[0]}..+1 "
            f"(differences {int(diff.min())}..{int(diff.max())})"
        )
        if exact is not None:
            for who, got, want in (("dcmj2pnm", theirs, exact[1]), ("ours", ours, exact[0])):
                wrong = np.count_nonzero(got != want)
                assert wrong == 0, f"{label}: {who} differs on {wrong} pixels from its formula on the LUT entries"
        counts.append((label, int(diff.size), int(np.count_nonzero(diff))))
    RESULTS[key] = counts


@pytest.mark.samples
@pytest.mark.parametrize("rel", [rel for rel, _ in FILES] or ["(no corpus: the samples fixture skips, or fails under CI)"])
def test_matches_dcmj2pnm(oracle_jobs, rel):
    _check(rel, oracle_jobs[rel].result())


@pytest.mark.samples
@pytest.mark.parametrize("name", list(VOI_CASES))
def test_voi_case_matches_dcmj2pnm(oracle_jobs, name):
    pairs = oracle_jobs[name].result()
    _check(name, pairs)
    if "VOI LUT" in name:  # the LUT must really shape the picture: it differs from the plain min-max one
        levels = len(np.unique(pairs[0][1]))
        assert levels > 64, f"{name}: only {levels} grey levels"


@pytest.mark.samples
def test_oracle_summary(samples):
    """Runs after the per-file tests: prints what was compared and requires the corpus was really covered."""
    expected = len(FILES) + len(VOI_CASES)
    kinds: dict[str, list[int]] = {}
    for counts in RESULTS.values():
        for label, pixels, plus_one in counts:
            kind = f"window {label.split('(')[1].split()[0]}" if label.startswith("window") else " ".join(label.split()[:2])
            k = kinds.setdefault(kind, [0, 0, 0])
            k[0] += 1
            k[1] += pixels
            k[2] += plus_one
    print(f"\noracle: {len(RESULTS)}/{expected} files and cases compared ({len(EXCLUDED)} excluded); "
          "on every pixel, windows within ours - dcmj2pnm in {0, +1}, VOI LUTs each exactly its formula")
    for kind, (n, pixels, plus_one) in sorted(kinds.items()):
        print(f"  {kind}: {n} comparisons, {pixels} pixels, {plus_one / max(pixels, 1):.2%} one level apart")
    for rel, why in EXCLUDED.items():
        print(f"  excluded {rel}: {why}")
    if len(RESULTS) < expected:
        pytest.skip(f"only {len(RESULTS)} of {expected} ran (run the whole module for the summary)")
    assert len(FILES) >= 380
    for kind in ("window LINEAR", "window SIGMOID", "explicit LINEAR", "explicit SIGMOID", "VOI LUT", "min-max"):
        assert kind in kinds, f"no {kind} comparison ran"
