"""Retrieval by C-GET and C-MOVE from the real Orthanc into the cache, and what goes wrong."""

from __future__ import annotations

import json
import time

import pytest

from tests.peers import WORKSTATION_AET, OrthancPeer
from workstation.core.cache import Cache, QueryFilter
from workstation.core.model.node import Node
from workstation.core.net.find import find
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


@pytest.mark.parametrize(("method", "processes"), [("get", True), ("get", False), ("move", 2), ("move", 0)],
                         ids=["get-in-worker-processes", "get-on-threads", "move-to-receiver-processes",
                              "move-to-threads"])
def test_retrieve_a_study_byte_identical(node, cache, orthanc, method, processes):
    uid = study_uid(node, "PLASTIC", instances=141)
    server = None
    if method == "move":
        server = StorageServer(cache, WORKSTATION_AET, orthanc.workstation_port, host="127.0.0.1",
                               receivers=processes)
        server.start()
    try:
        progress = []
        report = retrieve(node, WORKSTATION_AET, cache, uid, method=method, server=server,
                          processes=bool(processes), progress=lambda d, t, m: progress.append((d, t)))
    finally:
        if server:
            server.stop()
    assert (report.completed, report.failed, report.already_local, report.missing) == (141, 0, 0, [])
    assert report.errors == [] and report.bytes > 70_000_000 and report.seconds > 0
    assert progress[-1] == (141, 141)
    assert cache.verify().ok
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


@pytest.mark.parametrize("processes", [True, False], ids=["worker-processes", "threads"])
def test_cancel_keeps_what_arrived_and_a_retry_completes(node, cache, processes):
    uid = study_uid(node, "PLASTIC", instances=141)
    token = CancelToken()

    def progress(done, total, message):
        if done >= 10:
            token.cancel()

    with pytest.raises(Cancelled) as info:
        retrieve(node, WORKSTATION_AET, cache, uid, associations=2, progress=progress, cancel=token,
                 processes=processes)
    partial = info.value.report
    assert 10 <= partial.completed < 141 and len(partial.missing) == 141 - partial.completed
    assert cache.verify().ok
    retry = retrieve(node, WORKSTATION_AET, cache, uid)
    assert retry.already_local == partial.completed and retry.completed == 141 - partial.completed


def test_a_worker_process_killed_mid_retrieval_is_reported_and_nothing_is_left_half_written(node, cache):
    """kill -9 of one retrieval worker: its unit fails in words, the other completes, no temporary file
    stays behind, the pool replaces the worker, and a retry fetches exactly what is missing."""
    import os
    import signal

    from workstation.core.net.fetch_pool import shared_pool

    uid = study_uid(node, "PLASTIC", instances=141)
    pool = shared_pool(2)
    pool.prestart(2)
    killed = []

    def progress(done, total, message):
        if done >= 20 and not killed:
            victim = pool.pids(busy_only=True)[0]
            os.kill(victim, signal.SIGKILL)
            killed.append(victim)

    report = retrieve(node, WORKSTATION_AET, cache, uid, series_uids=[_big_series(node, uid)], associations=2,
                      progress=progress)
    assert killed
    assert any("retrieval worker process stopped unexpectedly" in e for e in report.errors), report.errors
    assert 20 <= report.completed < 140 and len(report.missing) == 140 - report.completed
    assert cache.verify().ok
    retry = retrieve(node, WORKSTATION_AET, cache, uid, associations=2)
    assert retry.errors == [] and retry.already_local == report.completed
    assert retry.completed == 141 - report.completed
    assert killed[0] not in _worker_pids()


def test_the_worker_processes_are_reused_between_retrievals(node, cache, tmp_path):
    uid = study_uid(node, "A002304")
    retrieve(node, WORKSTATION_AET, cache, uid, associations=2)
    before = _worker_pids()
    with Cache(tmp_path / "other") as other:
        again = retrieve(node, WORKSTATION_AET, other, uid, associations=2)
    assert again.completed == 3 and again.errors == []
    assert before and set(before) <= set(_worker_pids())


def _worker_pids() -> list[int]:
    from workstation.core.net.fetch_pool import shared_pool

    return shared_pool(1).pids()


def _big_series(node: Node, uid: str) -> str:
    return max(find(node, WORKSTATION_AET, "series", QueryFilter(StudyInstanceUID=uid)),
               key=lambda s: s.NumberOfSeriesRelatedInstances).SeriesInstanceUID


def test_idle_workers_that_died_are_replaced_without_an_error(node, cache):
    """Workers killed while idle (by hand, or the out-of-memory killer) are found dead and replaced."""
    import os
    import signal

    from workstation.core.net.fetch_pool import shared_pool

    pool = shared_pool(2)
    pool.prestart(2)
    victims = pool.pids()
    for pid in victims:
        os.kill(pid, signal.SIGKILL)
    time.sleep(0.2)
    report = retrieve(node, WORKSTATION_AET, cache, study_uid(node, "A002304"), associations=2)
    assert report.errors == [] and report.completed == 3


@pytest.mark.parametrize("sop", ["1.2.3.4", "1.2.3.45"], ids=["even-length-uid", "odd-length-uid"])
def test_the_file_meta_we_write_is_pynetdicoms(sop):
    """received.part10_header writes the meta by hand; pynetdicom's own encoding is the oracle."""
    from pynetdicom.dsutils import create_file_meta, encode_file_meta

    from workstation.core.net.received import part10_header

    for sop_class, syntax in (("1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.1.2.1"),
                              ("1.2.840.10008.5.1.4.1.1.4", "1.2.840.10008.1.2")):
        meta = create_file_meta(sop_class_uid=sop_class, sop_instance_uid=sop, transfer_syntax=syntax)
        assert part10_header(sop_class, sop, syntax) == b"\0" * 128 + b"DICM" + encode_file_meta(meta)
