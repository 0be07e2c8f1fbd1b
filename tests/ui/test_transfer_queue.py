"""The transfer queue against a real Orthanc: the study the user opened overtakes queued work, a
transfer cancelled while it waits never opens an association, and asking again for a retrieval
that is waiting moves it up instead of queueing it twice."""

from __future__ import annotations

import pytest

from tests.peers import WORKSTATION_AET
from workstation.core.cache import Cache, QueryFilter
from workstation.core.model.node import Node
from workstation.core.net.find import find
from workstation.core.scheduling import Priority, Scheduler
from workstation.core.settings import Settings
from workstation.services.network_service import NetworkService
from workstation.services.transfer_queue import CANCELLED, DONE, QUEUED, RUNNING

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def network(qtbot, tmp_path, orthanc):
    cache = Cache(tmp_path / "home")
    service = NetworkService(tmp_path / "home", cache, Settings(ae_title=WORKSTATION_AET, port=orthanc.workstation_port))
    service.queue.scheduler = Scheduler(slots=1, ceilings={p: 1 for p in Priority}, group_limits={})
    yield service
    service.shutdown()
    cache.close()


def smallest_studies(orthanc, n: int) -> tuple[Node, list]:
    node = Node("pacs", orthanc.aet, "127.0.0.1", orthanc.port, connect_timeout=3, network_timeout=20)
    studies = sorted(find(node, WORKSTATION_AET, "study", QueryFilter()),
                     key=lambda s: (s.NumberOfStudyRelatedInstances, s.StudyInstanceUID))
    assert len(studies) >= n
    return node, studies[:n]


def test_the_opened_study_overtakes_queued_retrievals(qtbot, network, orthanc):
    node, studies = smallest_studies(orthanc, 4)
    started: list[str] = []

    def follow(transfer, name):
        transfer.changed.connect(lambda: transfer.state == RUNNING and name not in started and started.append(name))

    queue = network.queue
    first = queue.retrieve(node, studies[0].StudyInstanceUID, priority=Priority.REQUESTED)
    background = queue.retrieve(node, studies[1].StudyInstanceUID, priority=Priority.BACKGROUND)
    requested = queue.retrieve(node, studies[2].StudyInstanceUID, priority=Priority.REQUESTED)
    opened = queue.retrieve(node, studies[3].StudyInstanceUID, priority=Priority.OPENED)
    for transfer, name in ((first, "first"), (background, "background"), (requested, "requested"), (opened, "opened")):
        follow(transfer, name)
    assert [background.state, requested.state, opened.state] == [QUEUED] * 3
    assert background.status_text() == "waiting"
    qtbot.waitUntil(lambda: all(t.finished for t in (first, background, requested, opened)), timeout=120000)
    assert started[1:] == ["opened", "requested", "background"]
    assert {t.state for t in (first, background, requested, opened)} == {DONE}
    for study in studies:
        local = network.cache.studies(QueryFilter(StudyInstanceUID=study.StudyInstanceUID))
        assert local and local[0].NumberOfStudyRelatedInstances == study.NumberOfStudyRelatedInstances


def test_a_waiting_transfer_cancelled_never_runs_and_a_repeated_request_moves_up(qtbot, network, orthanc):
    node, studies = smallest_studies(orthanc, 3)
    queue = network.queue
    running = queue.retrieve(node, studies[0].StudyInstanceUID)
    cancelled = queue.retrieve(node, studies[1].StudyInstanceUID, priority=Priority.BACKGROUND)
    waiting = queue.retrieve(node, studies[2].StudyInstanceUID, priority=Priority.BACKGROUND)
    with qtbot.waitSignal(cancelled.ended, timeout=5000):
        cancelled.cancel()
    assert cancelled.state == CANCELLED and cancelled.report is None
    again = queue.retrieve(node, studies[2].StudyInstanceUID, priority=Priority.OPENED)
    assert again is waiting and waiting.priority == Priority.OPENED
    assert len(queue.transfers) == 3
    qtbot.waitUntil(lambda: running.finished and waiting.finished, timeout=120000)
    assert running.state == DONE and waiting.state == DONE
    assert network.cache.studies(QueryFilter(StudyInstanceUID=studies[1].StudyInstanceUID)) == []


def test_previews_run_two_at_a_time_and_never_hold_back_the_opened_study(qtbot, tmp_path, orthanc):
    """A PACS limits associations per AE title: a 20-series study must not ask for 20 previews at
    once, and a study opened meanwhile starts at once rather than after them."""
    cache = Cache(tmp_path / "home")
    network = NetworkService(tmp_path / "home", cache, Settings(ae_title=WORKSTATION_AET, port=orthanc.workstation_port))
    try:
        node, studies = smallest_studies(orthanc, 5)
        series = [(st.StudyInstanceUID, s.SeriesInstanceUID) for st in studies[1:]
                  for s in find(node, WORKSTATION_AET, "series", QueryFilter(StudyInstanceUID=st.StudyInstanceUID))]
        assert len(series) >= 4
        scheduler = network.queue.scheduler
        previews = [network.queue.preview(node, study, uid, 32) for study, uid in series]
        assert [t.group for t in scheduler.running()] == ["preview", "preview"]
        assert len(scheduler.queued()) == len(series) - 2
        opened = network.queue.retrieve(node, studies[0].StudyInstanceUID, priority=Priority.OPENED)
        assert opened.ticket in scheduler.running()
        thumbs = []
        for job in previews:
            job.succeeded.connect(thumbs.append)
        qtbot.waitUntil(lambda: opened.finished and not any(j.running for j in previews), timeout=120000)
        assert opened.state == DONE and len(thumbs) == len(series)
        assert all(t.ndim in (2, 3) and max(t.shape[:2]) == 32 for t in thumbs)
    finally:
        network.shutdown()
        cache.close()
