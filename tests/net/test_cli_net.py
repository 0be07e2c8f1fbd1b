"""The network verbs of CLI.md, as a script runs them, against the real Orthanc fixture."""

from __future__ import annotations

import json

from tests.peers import OrthancPeer
from tests.test_cli import ws


def configure(home, orthanc: OrthancPeer, aet: str | None = None) -> None:
    ws("node", "add", "pacs", "--aet", aet or orthanc.aet, "--host", "127.0.0.1", "--port", str(orthanc.port),
       "--connect-timeout", "3", "--timeout", "10", home=home)
    ws("config", "set", "port", str(orthanc.workstation_port), home=home)


def test_config_and_nodes(tmp_path):
    home = tmp_path / "h"
    assert ws("config", "get", "ae-title", home=home).stdout.strip() == "WORKSTATION"
    assert ws("config", "get", "port", home=home).stdout.strip() == "11112"
    ws("config", "set", "ae-title", "READER1", home=home)
    assert ws("config", "get", "ae-title", home=home).stdout.strip() == "READER1"
    assert ws("config", "set", "port", "70000", home=home, check_code=2).stderr.startswith("error:")
    ws("node", "add", "a", "--aet", "A", "--host", "127.0.0.1", "--port", "104", "--method", "move", home=home)
    ws("node", "add", "b", "--aet", "B", "--host", "127.0.0.1", "--port", "105", home=home)
    nodes = json.loads(ws("node", "list", "--json", home=home).stdout)
    assert [(n["name"], n["aet"], n["port"], n["method"]) for n in nodes] == [("a", "A", 104, "move"), ("b", "B", 105, "get")]
    ws("node", "rm", "a", home=home)
    assert [n["name"] for n in json.loads(ws("node", "list", "--json", home=home).stdout)] == ["b"]
    assert "no node named 'a'" in ws("node", "rm", "a", home=home, check_code=2).stderr


def test_echo_and_find(tmp_path, orthanc):
    home = tmp_path / "h"
    configure(home, orthanc)
    assert "C-ECHO succeeded" in ws("echo", "pacs", home=home).stdout
    ws("node", "echo", "pacs", home=home)
    studies = json.loads(ws("find", "pacs", "--patient-id", "A0*", "--json", home=home).stdout)
    assert len(studies) == 6
    assert {"PatientName", "PatientID", "StudyInstanceUID", "StudyDate", "ModalitiesInStudy"} <= set(studies[0])
    uid = studies[0]["StudyInstanceUID"]
    series = json.loads(ws("find", "pacs", "--level", "series", "--study-uid", uid, "--json", home=home).stdout)
    assert len(series) == 3 and all(s["StudyInstanceUID"] == uid for s in series)
    images = json.loads(ws("find", "pacs", "--level", "image", "--study-uid", uid,
                           "--series-uid", series[0]["SeriesInstanceUID"], "--json", home=home).stdout)
    assert len(images) == 1 and images[0]["SOPInstanceUID"]
    capped = ws("find", "pacs", "--limit", "2", "--json", home=home)
    assert len(json.loads(capped.stdout)) == 2 and capped.stderr.startswith("warning:")


def test_unknown_called_ae_is_one_clear_error(tmp_path, orthanc):
    home = tmp_path / "h"
    configure(home, orthanc, aet="WRONG")
    proc = ws("echo", "pacs", home=home, check_code=2)
    assert proc.stderr.startswith("error:") and "Called AE title not recognised" in proc.stderr
