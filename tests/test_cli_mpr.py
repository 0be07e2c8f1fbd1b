"""`workstation mpr` as a script runs it (../shared/CLI.md): a plane's modality values and geometry,
PNG output, slabs and obliques, words for what cannot be done, and a plane stored as DICOM."""

from __future__ import annotations

import json

import numpy as np
import pydicom
import pytest

from tests.test_cli import read_png_grey, ws

pytestmark = pytest.mark.timeout(300)

AXIAL = "dcm_qa_ct/In/Philips/S21570/S2020"


@pytest.fixture(scope="module")
def cached(tmp_path_factory, samples):
    home = tmp_path_factory.mktemp("home")
    ws("import", str(samples / AXIAL), str(samples / "nema_wg04/J2KR/RG3_J2KR"), home=home)
    series = json.loads(ws("list", "--level", "series", "--json", home=home).stdout)
    ct = next(s["SeriesInstanceUID"] for s in series if s["NumberOfSeriesRelatedInstances"] == 140)
    cr = next(s["SeriesInstanceUID"] for s in series if s["Modality"] == "CR")
    slices = sorted((pydicom.dcmread(p) for p in (samples / AXIAL).iterdir()),
                    key=lambda ds: float(ds.ImagePositionPatient[2]))
    return home, ct, cr, slices


def test_an_axial_plane_at_a_slice_is_that_slice_and_the_sidecar_says_where(cached, tmp_path):
    home, ct, _, slices = cached
    ds = slices[70]
    z = float(ds.ImagePositionPatient[2])
    out = tmp_path / "axial.npy"
    ws("mpr", ct, "--plane", "axial", "--position", str(z), "--out", str(out), home=home)
    values = np.load(out)
    hu = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    assert values.dtype == np.float32 and values.shape == hu.shape
    assert np.allclose(values, hu, atol=1e-3)
    geometry = json.loads(out.with_suffix(".json").read_text())
    assert np.allclose(geometry["origin"], [float(v) for v in ds.ImagePositionPatient], atol=1e-4)
    assert np.allclose(geometry["spacing"], [float(v) for v in ds.PixelSpacing][::-1])
    assert geometry["row_direction"] == [1.0, 0.0, 0.0] and geometry["column_direction"] == [0.0, 1.0, 0.0]
    assert geometry["position"] == pytest.approx(z)


def test_a_coronal_png_a_mip_slab_and_an_oblique(cached, tmp_path):
    home, ct, _, slices = cached
    y = float(slices[0].ImagePositionPatient[1]) + 256 * float(slices[0].PixelSpacing[0])
    plain, mip = tmp_path / "cor.npy", tmp_path / "mip.npy"
    ws("mpr", ct, "--plane", "coronal", "--position", str(y), "--out", str(plain), home=home)
    ws("mpr", ct, "--plane", "coronal", "--position", str(y), "--slab", "mip:10", "--out", str(mip), home=home)
    a, b = np.load(plain), np.load(mip)
    inside = np.isfinite(a) & np.isfinite(b)
    assert np.all(b[inside] >= a[inside] - 1e-3) and np.any(b[inside] > a[inside] + 1)   # a maximum over 10 mm
    png = tmp_path / "cor.png"
    ws("mpr", ct, "--plane", "coronal", "--position", str(y), "--window", "40", "80", "--out", str(png), home=home)
    grey = read_png_grey(png)
    assert grey.shape == a.shape
    brain = np.isfinite(a) & (a > 20) & (a < 60)
    assert 0 < grey[brain].mean() < 255 and set(np.unique(grey[np.isfinite(a) & (a > 100)])) == {255}
    oblique = tmp_path / "obl.npy"
    proc = ws("mpr", ct, "--plane", "axial", "--oblique", "x:20", "--oblique", "row:10", "--out", str(oblique),
              "--json", home=home)
    geometry = json.loads(oblique.with_suffix(".json").read_text())
    assert json.loads(proc.stdout)["rows"] == geometry["rows"]
    assert abs(geometry["column_direction"][2]) > 0.3                  # tipped out of the axial plane


def test_what_cannot_be_done_is_said_in_one_line(cached, tmp_path):
    home, ct, cr, _ = cached
    for args, words in (
        (["--plane", "axial", "--position", "5000"], "outside the volume"),
        (["--plane", "axial", "--slab", "max:10"], "mip, minip or avg"),
        (["--plane", "axial", "--oblique", "q:10"], "x, y, z, row, column"),
    ):
        proc = ws("mpr", ct, *args, "--out", str(tmp_path / "x.npy"), home=home, check_code=2)
        assert proc.stderr.startswith("error:") and words in proc.stderr and proc.stderr.count("\n") == 1
    proc = ws("mpr", cr, "--plane", "axial", "--out", str(tmp_path / "x.png"), home=home, check_code=2)
    assert "is not a volume" in proc.stderr
    proc = ws("mpr", ct, "--plane", "axial", "--out", str(tmp_path / "x.tif"), home=home, check_code=2)
    assert ".png or .npy" in proc.stderr


def test_a_plane_saved_as_dicom_is_a_new_series_of_the_study(cached, tmp_path):
    home, ct, _, slices = cached
    proc = ws("mpr", ct, "--plane", "sagittal", "--out", str(tmp_path / "s.png"), "--save-dicom", "Sagittal MPR",
              "--json", home=home)
    saved = json.loads(proc.stdout)["SeriesInstanceUID"]
    series = json.loads(ws("list", "--level", "series", "--series-uid", saved, "--json", home=home).stdout)
    assert [(s["SeriesDescription"], s["NumberOfSeriesRelatedInstances"]) for s in series] == [("Sagittal MPR", 1)]
    assert series[0]["StudyInstanceUID"] == slices[0].StudyInstanceUID
