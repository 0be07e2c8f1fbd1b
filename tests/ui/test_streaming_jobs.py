"""Streaming jobs: partial results reach the GUI thread in order, before the outcome; find batches them."""

from __future__ import annotations

import time

import pytest

from workstation.core.cache import Cache, QueryFilter
from workstation.core.model import Study
from workstation.core.model.node import Node
from workstation.core.settings import Settings
from workstation.services import query_service
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


def test_find_streams_batches_of_at_most_50_records(qtbot, tmp_path, monkeypatch):
    def fake_find(node, own, level, query, limit, cancel, outcome):
        for i in range(120):
            if i == 60:
                time.sleep(0.15)          # a pause: what came before is shown without waiting
            outcome.count += 1
            yield Study(StudyInstanceUID=f"1.2.{i}", NumberOfStudyRelatedInstances=3)

    monkeypatch.setattr(query_service, "find", fake_find)
    with Cache(tmp_path) as cache:
        service = NetworkService(tmp_path, cache, Settings())
        job = service.queries.find(Node("n", "N", "127.0.0.1", 104), "study", QueryFilter())
        batches = []
        job.partial.connect(batches.append)
        with qtbot.waitSignal(job.ended, timeout=10000):
            pass
        sizes = [len(b.records) for b in batches]
        assert sum(sizes) == 120 and max(sizes) <= 50 and len(sizes) >= 3
        assert all(b.local == {} for b in batches)     # none of them is in the cache
        service.shutdown()
