"""Retrieval by C-GET and C-MOVE from the real Orthanc into the cache, and what goes wrong."""

from __future__ import annotations

import json

import pytest

from tests.peers import WORKSTATION_AET, OrthancPeer
from workstation.core.cache import Cache, QueryFilter
from workstation.core.net.find import find
from workstation.core.net.node import Node
from workstation.core.net.retrieve import retrieve
from workstation.core.net.storage_scp import StorageServer
from workstation.core.tasks import Cancelled, CancelToken


@pytest.fixture
def node(orthanc: OrthancPeer) -> Node:
    return Node("pacs", orthanc.aet, "127.0.0.1", orthanc.port, connect_timeout=3, network_timeout=15)


@pytest.fixture
def cache(tmp_path):
    with Cache(tmp_path / "ws") as c:
        yield c


def study_uid(node: Node, patient_id: str, instances: int | None = None) -> str:
    studies = list(find(node, WORKSTATION_AET, "study", QueryFilter(PatientID=patient_id)))
    if instances is not None:
        studies = [s for s in studies if s.NumberOfStudyRelatedInstances == instances]
    return studies[0].StudyInstanceUID


def orthanc_files(orthanc: OrthancPeer, study: str) -> dict[str, bytes]:
    """SOP Instance UID -> the file Orthanc stores, read over its REST API."""
    ids = orthanc.rest("POST", "/tools/lookup", study.encode())
    orthanc_id = next(i["ID"] for i in ids if i["Type"] == "Study")
    out = {}
    for inst in orthanc.rest("GET", f"/studies/{orthanc_id}/instances"):
        import urllib.request

        with urllib.request.urlopen(f"{orthanc.url}/instances/{inst['ID']}/file") as resp:
            out[inst["MainDicomTags"]["SOPInstanceUID"]] = resp.read()
    return out


def pixel_bytes(data: bytes) -> bytes:
    import io

    import pydicom

    return pydicom.dcmread(io.BytesIO(data)).PixelData


@pytest.mark.parametrize("method", ["get", "move"])
def test_retrieve_a_study_byte_identical(node, cache, orthanc, method):
    uid = study_uid(node, "PLASTIC", instances=141)
    server = None
    if method == "move":
        server = StorageServer(cache, WORKSTATION_AET, orthanc.workstation_port, host="127.0.0.1")
        server.start()
    try:
        progress = []
        report = retrieve(node, WORKSTATION_AET, cache, uid, method=method, server=server,
                          progress=lambda d, t, m: progress.append((d, t)))
    finally:
        if server:
            server.stop()
    assert (report.completed, report.failed, report.already_local, report.missing) == (141, 0, 0, [])
    assert report.errors == [] and report.bytes > 70_000_000 and report.seconds > 0
    assert progress[-1] == (141, 141)
    theirs = orthanc_files(orthanc, uid)
    ours = {i.SOPInstanceUID: i.path for s in cache.series(uid) for i in cache.instances(s.SeriesInstanceUID)}
    assert set(ours) == set(theirs)
    for sop, path in ours.items():
        assert pixel_bytes(open(path, "rb").read()) == pixel_bytes(theirs[sop])

    again = retrieve(node, WORKSTATION_AET, cache, uid, method=method, own_port=orthanc.workstation_port)
    assert (again.completed, again.already_local) == (0, 141)
    assert json.dumps(again.to_json())


def test_parallel_retrieval_of_a_multi_series_study_and_resume(node, cache):
    uid = study_uid(node, "A002304")
    series = list(find(node, WORKSTATION_AET, "series", QueryFilter(StudyInstanceUID=uid)))
    first = retrieve(node, WORKSTATION_AET, cache, uid, series_uids=[series[0].SeriesInstanceUID])
    assert first.completed == 1
    rest = retrieve(node, WORKSTATION_AET, cache, uid, associations=4)
    assert (rest.completed, rest.already_local, rest.missing) == (2, 1, [])
    assert cache.studies(QueryFilter(StudyInstanceUID=uid))[0].NumberOfStudyRelatedInstances == 3


def test_cancel_keeps_what_arrived_and_a_retry_completes(node, cache):
    uid = study_uid(node, "PLASTIC", instances=141)
    token = CancelToken()

    def progress(done, total, message):
        if done >= 10:
            token.cancel()

    with pytest.raises(Cancelled) as info:
        retrieve(node, WORKSTATION_AET, cache, uid, associations=2, progress=progress, cancel=token)
    partial = info.value.report
    assert 10 <= partial.completed < 141 and len(partial.missing) == 141 - partial.completed
    assert cache.verify().ok
    retry = retrieve(node, WORKSTATION_AET, cache, uid)
    assert retry.already_local == partial.completed and retry.completed == 141 - partial.completed
