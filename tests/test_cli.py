"""The command-line contract of ../shared/CLI.md, run as a user's script would: real processes."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

PHANTOM_AXIAL = "dcm_qa_ct/In/Philips/S21570/S2020"


def ws(*args: str, home: Path, check_code: int | None = 0) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "workstation", "--home", str(home), *args],
                          capture_output=True, text=True, timeout=300)
    if check_code is not None:
        assert proc.returncode == check_code, proc.stderr
    assert "Traceback" not in proc.stderr
    return proc


def read_png_grey(path: Path) -> np.ndarray:
    """Just enough PNG reading (8-bit, filter 0 rows as our writer makes) to check the pixels."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, {}
    idat = b""
    while pos < len(data):
        length = int.from_bytes(data[pos:pos + 4], "big")
        kind = data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IDAT":
            idat += body
        else:
            chunks[kind] = body
        pos += 12 + length
    width, height = int.from_bytes(chunks[b"IHDR"][:4], "big"), int.from_bytes(chunks[b"IHDR"][4:8], "big")
    bit_depth, colour = chunks[b"IHDR"][8], chunks[b"IHDR"][9]
    assert bit_depth == 8
    channels = {0: 1, 2: 3}[colour]
    raw = np.frombuffer(zlib.decompress(idat), np.uint8).reshape(height, 1 + width * channels)
    assert (raw[:, 0] == 0).all(), "the test reader handles filter type 0 only"
    return raw[:, 1:].reshape(height, width, channels).squeeze()


def test_version_names_the_libraries(tmp_path):
    out = ws("--version", home=tmp_path).stdout
    assert out.startswith("workstation 0.")
    for lib in ("pydicom", "pynetdicom", "numpy", "PySide6", "vtk"):
        assert f"\n{lib} " in out


def test_bad_usage_is_one_error_line_and_status_2(tmp_path):
    proc = ws("list", "--level", "galaxy", home=tmp_path, check_code=2)
    assert proc.stderr.startswith("error:") and proc.stdout == ""
    proc = ws("render", str(tmp_path / "missing.dcm"), "--out", str(tmp_path / "x.png"), home=tmp_path, check_code=2)
    assert proc.stderr.startswith("error:") and len(proc.stderr.strip().splitlines()) == 1


def test_import_list_render_verify(tmp_path, samples):
    home = tmp_path / "home"
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "readme.txt").write_text("not DICOM")
    shutil.copy(samples / "pydicom_testfiles/pydicom/MR_truncated.dcm", bad / "truncated.dcm")

    proc = ws("import", str(samples / PHANTOM_AXIAL), str(bad), "--json", home=home, check_code=1)
    doc = json.loads(proc.stdout)
    assert doc["imported"] == 140 and doc["duplicates"] == 0
    assert sorted(Path(r["path"]).name for r in doc["rejected"]) == ["readme.txt", "truncated.dcm"]
    assert all(r["reason"] for r in doc["rejected"])

    again = json.loads(ws("import", str(samples / PHANTOM_AXIAL), "--json", home=home).stdout)
    assert again["imported"] == 0 and again["duplicates"] == 140 and again["rejected"] == []

    studies = json.loads(ws("list", "--json", home=home).stdout)
    assert len(studies) == 1
    study = studies[0]
    assert study["PatientID"] == "PLASTIC" and study["StudyDate"] == "20150206"
    assert study["ModalitiesInStudy"] == ["CT"]
    series = json.loads(ws("list", "--level", "series", "--study-uid", study["StudyInstanceUID"], "--json", home=home).stdout)
    assert [s["NumberOfSeriesRelatedInstances"] for s in series] == [140]
    assert json.loads(ws("list", "--patient-name", "nobody*", "--json", home=home).stdout) == []
    assert len(json.loads(ws("list", "--modality", "CT", "--study-date", "20150101-20151231", "--json", home=home).stdout)) == 1
    table = ws("list", home=home).stdout   # for people, the date reads as everywhere else; JSON keeps DICOM's DA
    assert "2015-02-06" in table and "20150206" not in table

    instances = json.loads(ws("list", "--level", "instance", "--series-uid", series[0]["SeriesInstanceUID"], "--json",
                              home=home).stdout)
    assert len(instances) == 140
    sop = instances[0]["SOPInstanceUID"]
    by_uid, by_file = tmp_path / "uid.png", tmp_path / "file.png"
    ws("render", sop, "--out", str(by_uid), "--window", "40", "80", home=home)
    cached = Path(instances[0]["path"])
    ws("render", str(cached), "--out", str(by_file), "--window", "40", "80", home=home)
    a, b = read_png_grey(by_uid), read_png_grey(by_file)
    assert a.shape == (512, 512) and (a == b).all()
    assert 0 < a.mean() < 255  # a brain window on a head phantom: neither all black nor all white

    verify = json.loads(ws("verify", "--json", home=home).stdout)
    assert verify == {"ok": True, "orphan_files": 0, "missing_files": 0, "repaired": 0}


def test_verify_finds_and_repairs_a_removed_file(tmp_path, samples):
    home = tmp_path / "home"
    ws("import", str(samples / "dcm_qa_ct/In/GE"), home=home)
    instances = json.loads(ws("list", "--level", "instance", "--json", home=home).stdout)
    Path(instances[0]["path"]).unlink()
    broken = json.loads(ws("verify", "--json", home=home, check_code=1).stdout)
    assert broken["ok"] is False and broken["missing_files"] == 1
    fixed = json.loads(ws("verify", "--repair", "--json", home=home).stdout)
    assert fixed["repaired"] >= 1
    assert json.loads(ws("verify", "--json", home=home).stdout)["ok"] is True
    assert len(json.loads(ws("list", "--level", "instance", "--json", home=home).stdout)) == 27


def test_pin_evict_delete(tmp_path, samples):
    home = tmp_path / "home"
    ws("import", str(samples / "tcia_covid19_ny_sbu"), home=home, check_code=1)  # its README is rejected
    studies = json.loads(ws("list", "--json", home=home).stdout)
    assert len(studies) == 6
    keep = studies[0]["StudyInstanceUID"]
    ws("pin", keep, home=home)
    doc = json.loads(ws("evict", "--to-size", "0", "--json", home=home).stdout)
    assert keep not in doc["evicted_studies"] and len(doc["evicted_studies"]) == 5
    left = json.loads(ws("list", "--json", home=home).stdout)
    assert [s["StudyInstanceUID"] for s in left] == [keep]
    ws("delete", keep, home=home)
    assert json.loads(ws("list", "--json", home=home).stdout) == []
    assert ws("delete", keep, home=home, check_code=2).stderr.startswith("error:")


@pytest.mark.parametrize("preset", ["Lung", "bone"])
def test_render_with_a_preset(tmp_path, samples, preset):
    out = tmp_path / "p.png"
    ws("render", str(samples / "dcm_qa_ct/In/GE/05.dcm"), "--out", str(out), "--preset", preset, home=tmp_path)
    assert read_png_grey(out).shape == (512, 512)


def test_render_a_frame_of_a_multiframe_file_numbered_from_1(tmp_path, samples):
    from workstation.core.pixels.image import ImageSource
    from workstation.core.pixels.render import render

    cine = samples / "orthanc_tests/Database/Issue16.dcm"
    out = tmp_path / "f.png"
    ws("render", str(cine), "--out", str(out), "--frame", "21", home=tmp_path)
    expected = render(ImageSource.open(cine), 20)
    assert (read_png_grey(out) == expected).all()
    assert not (expected == render(ImageSource.open(cine), 0)).all()
    proc = ws("render", str(cine), "--out", str(out), "--frame", "35", home=tmp_path, check_code=2)
    assert "34 frame(s), numbered from 1" in proc.stderr
