"""`workstation keys`: a study's key images listed and changed through the real command line."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.core.test_key_objects import DCMTK_LIMITS, DSRDUMP, ENHANCED, other_systems_document
from tests.peers import require_binary
from tests.test_cli import ws


def keys(home: Path, uid: str, *args: str, check_code: int = 0) -> dict:
    return json.loads(ws("keys", uid, *args, "--json", home=home, check_code=check_code).stdout)


def enhanced_study(home: Path, samples: Path) -> tuple[str, list[str]]:
    ws("import", str(samples / ENHANCED), home=home)
    (study,) = json.loads(ws("list", "--json", home=home).stdout)
    instances = json.loads(ws("list", "--level", "instance", "--json", home=home).stdout)
    return study["StudyInstanceUID"], [i["SOPInstanceUID"] for i in instances]


def pairs(doc: dict) -> list[tuple[str, int | None]]:
    return [(k["SOPInstanceUID"], k["frame"]) for k in doc["keys"]]


def test_mark_and_unmark_key_images_and_frames(tmp_path, samples):
    home = tmp_path / "home"
    uid, sops = enhanced_study(home, samples)
    assert keys(home, uid) == {"StudyInstanceUID": uid, "document": None, "title": "", "description": "",
                               "keys": [], "documents": []}
    assert "has no key images" in ws("keys", uid, home=home).stdout

    doc = keys(home, uid, "--add", sops[0], f"{sops[1]}:5", f"{sops[1]}:3", "--description", "lesion, segment 7",
               "--creator", "Doe^Jane")
    assert pairs(doc) == [(sops[0], None), (sops[1], 3), (sops[1], 5)]
    assert doc["title"] == "Of Interest" and doc["description"] == "lesion, segment 7"
    first = doc["document"]
    assert first["ours"] and first["Manufacturer"] == "workstation" and len(doc["documents"]) == 1
    series = json.loads(ws("list", "--level", "series", "--json", home=home).stdout)
    assert [(s["Modality"], s["NumberOfSeriesRelatedInstances"]) for s in series if s["Modality"] == "KO"] == [("KO", 1)]

    require_binary(DSRDUMP, "dcmtk")
    dump = subprocess.run([DSRDUMP, "+Pu", "+Pl", first["path"]], capture_output=True, text=True)
    assert dump.returncode == 0 and not set(dump.stderr.splitlines()) - DCMTK_LIMITS, dump.stderr
    assert f'"{sops[1]}",3,5)>' in dump.stdout and f'"{sops[0]}")>' in dump.stdout

    doc = keys(home, uid, "--remove", f"{sops[1]}:3", f"{sops[0]}:2")
    assert pairs(doc) == [(sops[0], f) for f in (1, 3, 4, 5, 6)] + [(sops[1], 5)], "frame 2 taken from the whole"
    second = doc["document"]
    assert [d["SOPInstanceUID"] for d in doc["documents"]] == [second["SOPInstanceUID"]], "the first is gone"
    assert second["SeriesInstanceUID"] == first["SeriesInstanceUID"] and not Path(first["path"]).exists()
    assert doc["description"] == "lesion, segment 7", "kept from the document it was made from"

    again = keys(home, uid, "--add", f"{sops[1]}:5")
    assert again["document"] == second, "nothing changed, nothing written"
    described = keys(home, uid, "--description", "lesion, segment 8")
    assert described["description"] == "lesion, segment 8" and pairs(described) == pairs(doc)
    second = described["document"]
    assert [d["SOPInstanceUID"] for d in described["documents"]] == [second["SOPInstanceUID"]]
    assert "is not a key image" in ws("keys", uid, "--remove", sops[2], home=home, check_code=1).stderr
    assert keys(home, uid)["document"] == second

    doc = keys(home, uid, "--remove", sops[0], sops[1])
    assert doc["document"] is None and doc["keys"] == [] and doc["documents"] == []
    series = json.loads(ws("list", "--level", "series", "--json", home=home).stdout)
    assert [s for s in series if s["Modality"] == "KO"] == []
    assert json.loads(ws("verify", "--json", home=home).stdout)["ok"] is True


def test_what_cannot_be_a_key_image_is_one_error_line_and_nothing_is_written(tmp_path, samples):
    home = tmp_path / "home"
    uid, sops = enhanced_study(home, samples)
    for args, words in ((["--add", f"{sops[0]}:7"], "has 6 frame(s), numbered from 1: there is no frame 7"),
                        (["--add", f"{sops[0]}:0"], "frames are numbered from 1"),
                        (["--add", f"{sops[0]}:two"], "must be a number"),
                        (["--add", "9.9.9"], f"no instance 9.9.9 in study {uid} in the cache")):
        err = ws("keys", uid, *args, home=home, check_code=2).stderr
        assert err.startswith("error:") and words in err and len(err.strip().splitlines()) == 1, err
    assert "no study 1.2.3 in the cache" in ws("keys", "1.2.3", home=home, check_code=2).stderr
    assert "has no key images to describe" in ws("keys", uid, "--description", "x", home=home, check_code=2).stderr
    assert keys(home, uid)["documents"] == []


def test_key_images_from_another_system_are_shown_and_a_change_makes_ours_beside_them(tmp_path, samples):
    home = tmp_path / "home"
    uid, sops = enhanced_study(home, samples)
    pacs, images = other_systems_document(samples, tmp_path)
    ws("import", str(pacs), home=home)
    doc = keys(home, uid)
    assert not doc["document"]["ours"] and doc["document"]["Manufacturer"] == "ACME PACS"
    theirs = pairs(doc)
    assert theirs == [(images[1].SOPInstanceUID, 6), (images[1].SOPInstanceUID, 1), (images[0].SOPInstanceUID, None)]
    text = ws("keys", uid, home=home).stdout
    assert "3 key image(s)" in text and "For Teaching, made by ACME PACS" in text

    extra = next(s for s in sops if s not in (images[0].SOPInstanceUID, images[1].SOPInstanceUID))
    doc = keys(home, uid, "--add", extra)
    assert doc["document"]["ours"] and doc["title"] == "Of Interest"
    assert sorted(pairs(doc), key=str) == sorted([*theirs, (extra, None)], key=str)
    assert [d["ours"] for d in doc["documents"]] == [True, False], "theirs is kept"

    doc = keys(home, uid, "--remove", extra)
    assert sorted(pairs(doc), key=str) == sorted(theirs, key=str) and doc["document"]["ours"]
    everything = ("--remove", images[0].SOPInstanceUID, images[1].SOPInstanceUID)
    removed = ws("keys", uid, *everything, "--json", home=home)
    assert "no key images of ours are left; those of ACME PACS's document" in removed.stderr
    doc = json.loads(removed.stdout)
    assert not doc["document"]["ours"] and pairs(doc) == theirs and len(doc["documents"]) == 1
    err = ws("keys", uid, *everything, home=home, check_code=2).stderr
    assert "come from ACME PACS's document" in err and "they cannot all be removed" in err
    assert keys(home, uid)["documents"] == doc["documents"]
