"""Streaming jobs: partial results reach the GUI thread in order, before the outcome; find batches them."""

from __future__ import annotations

import pytest

from tests.peers import WORKSTATION_AET
from workstation.core.cache import Cache, QueryFilter
from workstation.core.model.node import Node
from workstation.core.settings import Settings
from workstation.services.jobs import JobRunner
from workstation.services.network_service import NetworkService

pytestmark = pytest.mark.timeout(60)


def test_a_streaming_job_publishes_in_order_before_its_outcome(qtbot):
    runner = JobRunner()
    events = []

    def work(progress, cancel, publish):
        for i in range(5):
            publish(i)
        return "end"

    job = runner.submit("stream", work, streaming=True)
    job.partial.connect(lambda item: events.append(item))
    job.succeeded.connect(lambda result: events.append(result))
    with qtbot.waitSignal(job.ended, timeout=5000):
        pass
    assert events == [0, 1, 2, 3, 4, "end"]
    plain = runner.submit("plain", lambda progress, cancel: 42)   # the old form still works
    with qtbot.waitSignal(plain.succeeded, timeout=5000) as done:
        pass
    assert done.args == [42]
    assert runner.close(5000)


def test_find_streams_batches_of_at_most_50_records(qtbot, tmp_path, orthanc):
    """An image-level search of the phantom's 140-slice series on a real Orthanc arrives in batches
    of at most 50, so the first rows show before the last answer."""
    node = Node("pacs", orthanc.aet, "127.0.0.1", orthanc.port, connect_timeout=3, network_timeout=20)
    with Cache(tmp_path) as cache:
        service = NetworkService(tmp_path, cache, Settings(ae_title=WORKSTATION_AET))
        try:
            studies = service.queries.find(node, "study", QueryFilter(PatientID="PLASTIC"))
            found = []
            studies.partial.connect(lambda batch: found.extend(batch.records))
            with qtbot.waitSignal(studies.ended, timeout=20000):
                pass
            study = next(s for s in found if s.NumberOfStudyRelatedInstances == 141)
            listed = service.queries.series(node, study.StudyInstanceUID)
            with qtbot.waitSignal(listed.succeeded, timeout=20000) as answer:
                pass
            series = next(s for s, _local in answer.args[0] if s.NumberOfSeriesRelatedInstances == 140)
            job = service.queries.find(node, "image", QueryFilter(StudyInstanceUID=study.StudyInstanceUID,
                                                                  SeriesInstanceUID=series.SeriesInstanceUID))
            batches = []
            job.partial.connect(batches.append)
            with qtbot.waitSignal(job.ended, timeout=20000):
                pass
            sizes = [len(b.records) for b in batches]
            assert sum(sizes) == 140 and max(sizes) <= 50 and len(sizes) >= 3
            assert len({r.SOPInstanceUID for b in batches for r in b.records}) == 140
            assert all(b.local == {} for b in batches)     # image-level batches carry no locality
        finally:
            service.shutdown()
