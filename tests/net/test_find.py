"""C-ECHO and C-FIND against the real Orthanc fixture, at study, series and image level."""

from __future__ import annotations

import pydicom
import pytest

from tests.peers import WORKSTATION_AET, OrthancPeer, free_port
from workstation.core.cache.query import QueryFilter
from workstation.core.model.node import Node
from workstation.core.net.association import AssociationRejected, ConnectionFailed, NetworkError
from workstation.core.net.echo import echo
from workstation.core.net.find import FindOutcome, find
from workstation.core.tasks import CancelToken

PHANTOM_STUDY_DATE = "20150206"
PHANTOM_STUDY = "dcm_qa_ct/In/Philips/S21570"


@pytest.fixture
def node(orthanc: OrthancPeer) -> Node:
    return Node("pacs", orthanc.aet, "127.0.0.1", orthanc.port, connect_timeout=3, network_timeout=10)


def test_echo(node):
    rtt = echo(node, WORKSTATION_AET)  # its speed: benchmarks/bench_network_waits.py
    assert isinstance(rtt, float) and rtt > 0


def test_echo_to_an_unknown_called_ae_says_so(node):
    wrong = Node("pacs", "NOT-ORTHANC", node.host, node.port, connect_timeout=3)
    with pytest.raises(AssociationRejected, match="Called AE title not recognised"):
        echo(wrong, WORKSTATION_AET)


def test_closed_port_is_reported_as_refused():
    # "Refused", not "did not answer": the refusal is seen, not waited out (how fast: bench_network_waits.py).
    closed = Node("nowhere", "ANY", "127.0.0.1", free_port(), connect_timeout=3)
    with pytest.raises(ConnectionFailed, match="refused the connection") as info:
        echo(closed, WORKSTATION_AET)
    assert "did not answer" not in str(info.value) and "\n" not in str(info.value)


def test_find_studies_with_wildcards_and_dates(node):
    all_studies = list(find(node, WORKSTATION_AET, "study", QueryFilter()))
    assert len(all_studies) == 9
    tcia = list(find(node, WORKSTATION_AET, "study", QueryFilter(PatientID="A0*")))
    assert sorted(s.PatientID for s in tcia) == ["A002304", "A002304", "A067967", "A067967", "A098752", "A098752"]
    assert all(s.ModalitiesInStudy == ("CT",) and s.NumberOfStudyRelatedSeries == 3 for s in tcia)
    priors = list(find(node, WORKSTATION_AET, "study", QueryFilter(PatientID="A0*", StudyDate="19000101-19001231")))
    assert {s.StudyDate[:4] for s in priors} == {"1900"} and len(priors) == 4
    phantom = list(find(node, WORKSTATION_AET, "study", QueryFilter(StudyDate=PHANTOM_STUDY_DATE, Modality="CT")))
    assert {s.PatientID for s in phantom} == {"PLASTIC"}


def test_find_series_and_images(node, samples):
    study = next(s for s in find(node, WORKSTATION_AET, "study", QueryFilter(PatientID="PLASTIC"))
                 if s.NumberOfStudyRelatedInstances == 141)
    series = list(find(node, WORKSTATION_AET, "series", QueryFilter(StudyInstanceUID=study.StudyInstanceUID)))
    assert sorted((s.SeriesNumber, s.NumberOfSeriesRelatedInstances) for s in series) == [(100, 1), (202, 140)]
    # Every image-level answer carries the file's own values (Orthanc reads the non-indexed ones from storage).
    expected = {}
    for path in (p for p in (samples / PHANTOM_STUDY).rglob("*") if p.is_file()):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        expected[ds.SOPInstanceUID] = (ds.SeriesInstanceUID, ds.SOPClassUID, int(ds.InstanceNumber),
                                       ds.Rows, ds.Columns, 1)
    assert {v[3:5] for v in expected.values()} == {(512, 512), (256, 512)}  # the localizer is not square
    answered = {}
    for s in series:
        for i in find(node, WORKSTATION_AET, "image", QueryFilter(StudyInstanceUID=study.StudyInstanceUID,
                                                                   SeriesInstanceUID=s.SeriesInstanceUID)):
            assert i.StudyInstanceUID == study.StudyInstanceUID and i.SOPInstanceUID not in answered
            answered[i.SOPInstanceUID] = (i.SeriesInstanceUID, i.SOPClassUID, i.InstanceNumber,
                                          i.Rows, i.Columns, i.NumberOfFrames)
    assert answered == expected


def test_find_is_capped_and_cancelled(node):
    outcome = FindOutcome()
    capped = list(find(node, WORKSTATION_AET, "study", QueryFilter(), limit=3, outcome=outcome))
    assert len(capped) == 3 and outcome.capped
    token = CancelToken()
    outcome = FindOutcome()
    got = []
    for study in find(node, WORKSTATION_AET, "study", QueryFilter(), cancel=token, outcome=outcome):
        got.append(study)
        token.cancel()
    assert len(got) == 1 and outcome.cancelled
    # The association is usable again right after: the PACS stopped the cancelled search.
    assert len(list(find(node, WORKSTATION_AET, "study", QueryFilter(PatientID="PLASTIC")))) == 2


def test_series_search_needs_the_study(node):
    with pytest.raises(NetworkError, match="study's UID"):
        list(find(node, WORKSTATION_AET, "series", QueryFilter()))
