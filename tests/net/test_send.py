"""C-STORE of cached studies to a real Orthanc, then found there."""

from __future__ import annotations

import pytest

from tests.peers import WORKSTATION_AET, OrthancPeer
from workstation.core.cache import Cache, QueryFilter
from workstation.core.model.node import Node
from workstation.core.net.association import NetworkError
from workstation.core.net.find import find
from workstation.core.net.send import send


@pytest.fixture
def cache(tmp_path):
    with Cache(tmp_path / "ws") as c:
        yield c


def test_send_a_study_and_find_it_there(fresh_orthanc: OrthancPeer, cache, samples):
    cache.import_paths([samples / "dcm_qa_ct/In/GE", samples / "nema_wg04/J2KR/CT1_J2KR"])
    node = Node("pacs", fresh_orthanc.aet, "127.0.0.1", fresh_orthanc.port, connect_timeout=3, network_timeout=15)
    for study in cache.studies():
        progress = []
        report = send(node, WORKSTATION_AET, cache, study.StudyInstanceUID,
                      progress=lambda d, t, m, seen=progress: seen.append((d, t)))
        n = study.NumberOfStudyRelatedInstances
        assert (report.sent, report.failed, report.failures) == (n, 0, [])
        assert progress[-1] == (n, n)
        found = list(find(node, WORKSTATION_AET, "study", QueryFilter(StudyInstanceUID=study.StudyInstanceUID)))
        assert len(found) == 1 and found[0].NumberOfStudyRelatedInstances == n
    # The JPEG 2000 file went as stored, not decompressed.
    j2k = next(i for s in cache.studies() if s.PatientID != "QMNx85rKkkg"
               for se in cache.series(s.StudyInstanceUID) for i in cache.instances(se.SeriesInstanceUID))
    oid = fresh_orthanc.rest("POST", "/tools/lookup", j2k.SOPInstanceUID.encode())[0]["ID"]
    meta = fresh_orthanc.rest("GET", f"/instances/{oid}/metadata?expand")
    assert meta["TransferSyntax"] == "1.2.840.10008.1.2.4.90"


def test_send_an_unknown_study_says_so(orthanc, cache):
    node = Node("pacs", orthanc.aet, "127.0.0.1", orthanc.port)
    with pytest.raises(NetworkError, match="no study 1.2.3 in the local cache"):
        send(node, WORKSTATION_AET, cache, "1.2.3")
