"""What a user meets when retrieval goes wrong, against real peers: nothing half-written, words, resume."""

from __future__ import annotations

import os
import subprocess
import threading

import pytest

from tests.peers import WORKSTATION_AET, OrthancPeer, dcmtk, free_port, loadable_samples
from workstation.core.cache import Cache, QueryFilter
from workstation.core.model.node import Node
from workstation.core.net.find import find
from workstation.core.net.retrieve import retrieve
from workstation.core.net.storage_scp import StorageServer

PHANTOM_AXIAL = "dcm_qa_ct/In/Philips/S21570/S2020"


def node_for(peer: OrthancPeer) -> Node:
    return Node("pacs", peer.aet, "127.0.0.1", peer.port, connect_timeout=3, network_timeout=10)


def only_study(node: Node) -> str:
    studies = list(find(node, WORKSTATION_AET, "study", QueryFilter()))
    assert len(studies) == 1
    return studies[0].StudyInstanceUID


def test_pacs_killed_mid_retrieval_keeps_whole_files_and_a_retry_completes(fresh_orthanc, samples, tmp_path):
    fresh_orthanc.upload(loadable_samples(samples, [PHANTOM_AXIAL]))
    node = node_for(fresh_orthanc)
    uid = only_study(node)
    killed = threading.Event()

    def progress(done, total, message):
        if done >= 20 and not killed.is_set():
            killed.set()
            fresh_orthanc.kill()

    with Cache(tmp_path / "ws") as cache:
        report = retrieve(node, WORKSTATION_AET, cache, uid, associations=1, progress=progress)
        assert killed.is_set()
        assert 20 <= report.completed < 140
        assert report.missing_count == 140 - report.completed
        assert report.to_json()["missing"] == 140 - report.completed
        assert any("ended the association" in e for e in report.errors), report.errors
        assert cache.verify().ok  # every row has a whole file, no temporary file is left

        fresh_orthanc.start()  # same storage, same ports
        retry = retrieve(node, WORKSTATION_AET, cache, uid, associations=2)
        assert (retry.already_local, retry.completed, retry.missing) == (report.completed, 140 - report.completed, [])
        assert cache.studies()[0].NumberOfStudyRelatedInstances == 140


def test_move_to_a_destination_that_does_not_listen_is_reported(fresh_orthanc, samples, tmp_path):
    """The PACS knows our AE title, but at a port where nothing listens (PEERS.md: 0xC000)."""
    fresh_orthanc.upload(loadable_samples(samples, ["dcm_qa_ct/In/GE"]))
    node = node_for(fresh_orthanc)
    uid = only_study(node)
    with Cache(tmp_path / "ws") as cache:
        server = StorageServer(cache, WORKSTATION_AET, free_port(), host="127.0.0.1")  # not the port Orthanc uses
        server.start()
        try:
            report = retrieve(node, WORKSTATION_AET, cache, uid, method="move", server=server)
        finally:
            server.stop()
        assert report.completed == 0 and report.missing_count == 28
        assert any("could not send to our Storage SCP" in e for e in report.errors), report.errors
        assert cache.studies() == []


def test_a_push_arrives_while_a_query_runs(orthanc, samples, tmp_path):
    node = node_for(orthanc)
    port = free_port()
    found: list[int] = []
    with Cache(tmp_path / "ws") as cache, StorageServer(cache, WORKSTATION_AET, port, host="127.0.0.1") as server:
        def query_loop():
            for _ in range(5):
                found.append(len(list(find(node, WORKSTATION_AET, "study", QueryFilter()))))

        querying = threading.Thread(target=query_loop)
        querying.start()
        subprocess.run([dcmtk("storescu"), "+sd", "-aec", WORKSTATION_AET, "127.0.0.1", str(port),
                        str(samples / "dcm_qa_ct/In/GE")], check=True, capture_output=True,
                       env=dict(os.environ, TCP_NODELAY="1"))
        querying.join(60)
        assert found == [9] * 5
        assert server.received == 28
        assert cache.studies()[0].NumberOfStudyRelatedInstances == 28


@pytest.mark.parametrize("method", ["get", "move"])
def test_patient_root_node(orthanc, tmp_path, method):
    node = Node("pacs", orthanc.aet, "127.0.0.1", orthanc.port, model="patient", method=method)
    studies = list(find(node, WORKSTATION_AET, "study", QueryFilter(PatientID="A067967")))
    assert len(studies) == 2
    with Cache(tmp_path / "ws") as cache:
        server = StorageServer(cache, WORKSTATION_AET, orthanc.workstation_port, host="127.0.0.1") if method == "move" else None
        if server:
            server.start()
        try:
            report = retrieve(node, WORKSTATION_AET, cache, studies[0].StudyInstanceUID, server=server)
        finally:
            if server:
                server.stop()
        assert (report.completed, report.missing, report.errors) == (3, [], [])
