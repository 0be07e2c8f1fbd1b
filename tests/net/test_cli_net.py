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


def test_retrieve_by_get_then_again_only_what_is_missing(tmp_path, orthanc):
    home = tmp_path / "h"
    configure(home, orthanc)
    study = next(s for s in json.loads(ws("find", "pacs", "--patient-id", "PLASTIC", "--json", home=home).stdout)
                 if s["NumberOfStudyRelatedInstances"] == 141)
    doc = json.loads(ws("retrieve", "pacs", "--study", study["StudyInstanceUID"], "--json", home=home).stdout)
    assert set(doc) >= {"completed", "failed", "warning", "already_local", "bytes", "seconds"}
    assert (doc["completed"], doc["failed"], doc["already_local"]) == (141, 0, 0) and doc["bytes"] > 0
    again = json.loads(ws("retrieve", "pacs", "--study", study["StudyInstanceUID"], "--json", home=home).stdout)
    assert (again["completed"], again["already_local"]) == (0, 141)
    local = json.loads(ws("list", "--json", home=home).stdout)
    assert [s["NumberOfStudyRelatedInstances"] for s in local] == [141]


def test_retrieve_by_move_starts_the_storage_scp_for_the_duration(tmp_path, orthanc):
    home = tmp_path / "h"
    configure(home, orthanc)
    study = json.loads(ws("find", "pacs", "--patient-id", "A067967", "--json", home=home).stdout)[0]
    series = json.loads(ws("find", "pacs", "--level", "series", "--study-uid", study["StudyInstanceUID"], "--json",
                           home=home).stdout)
    doc = json.loads(ws("retrieve", "pacs", "--study", study["StudyInstanceUID"], "--series",
                        series[0]["SeriesInstanceUID"], "--method", "move", "--json", home=home).stdout)
    assert (doc["completed"], doc["failed"]) == (1, 0)
    listed = json.loads(ws("list", "--level", "series", "--json", home=home).stdout)
    assert [s["SeriesInstanceUID"] for s in listed] == [series[0]["SeriesInstanceUID"]]


def test_send_then_find_on_the_node(tmp_path, fresh_orthanc, samples):
    home = tmp_path / "h"
    ws("import", str(samples / "dcm_qa_ct/In/GE"), home=home)
    configure(home, fresh_orthanc)
    uid = json.loads(ws("list", "--json", home=home).stdout)[0]["StudyInstanceUID"]
    doc = json.loads(ws("send", "pacs", "--study", uid, "--json", home=home).stdout)
    assert (doc["sent"], doc["failed"]) == (28, 0)
    found = json.loads(ws("find", "pacs", "--study-uid", uid, "--json", home=home).stdout)
    assert found[0]["NumberOfStudyRelatedInstances"] == 28


def test_listen_receives_a_push_from_storescu(tmp_path, samples):
    import os
    import shutil
    import signal
    import subprocess
    import sys

    from tests.peers import c_echo, free_port, wait_until

    if shutil.which("storescu") is None:
        import pytest

        pytest.fail("storescu (dcmtk) is required")
    home = tmp_path / "h"
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "workstation", "--home", str(home), "listen", "--port", str(port),
                             "--host", "127.0.0.1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: c_echo("WORKSTATION", port), 20, "workstation listen", proc)
        subprocess.run(["storescu", "-aec", "WORKSTATION", "127.0.0.1", str(port), "+sd",
                        str(samples / "dcm_qa_ct/In/GE")], check=True, env=dict(os.environ, TCP_NODELAY="1"),
                       capture_output=True)  # its speed beside storescp: benchmarks/bench_network_waits.py
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert out.count("received ") == 28
    assert json.loads(ws("list", "--json", home=home).stdout)[0]["NumberOfStudyRelatedInstances"] == 28
    assert json.loads(ws("verify", "--json", home=home).stdout)["ok"] is True
