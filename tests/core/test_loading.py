"""The study loader without Qt: a study opens as soon as an image of it is local, and every
viewer watching it hears it grow, with one read of the cache per arrival."""

from __future__ import annotations

import pydicom
import pytest

from workstation.core.cache import Cache
from workstation.core.loading import StudyLoader

SERIES = "dcm_qa_ct/In/Philips/S21570/S2020"   # 140 CT slices of one series


class Worker:
    """Runs the loader's work when the test says so, as a worker thread would later."""

    def __init__(self) -> None:
        self.pending: list = []
        self.reads = 0

    def __call__(self, work, done, failed) -> None:
        self.pending.append((work, done, failed))

    def drain(self) -> None:
        while self.pending:
            work, done, failed = self.pending.pop(0)
            self.reads += 1
            try:
                result = work()
            except Exception as exc:
                failed(str(exc))
            else:
                done(result)


@pytest.fixture
def slices(samples):
    files = sorted((samples / SERIES).iterdir())
    ds = pydicom.dcmread(files[0], stop_before_pixels=True)
    return files, ds.StudyInstanceUID, ds.SeriesInstanceUID


@pytest.fixture
def loader(tmp_path):
    with Cache(tmp_path / "home") as cache:
        worker = Worker()
        yield StudyLoader(cache, worker), worker, cache


def record(events, name):
    return lambda value: events.append((name, value))


def test_an_arriving_study_opens_on_its_first_image_and_grows_for_every_viewport(loader, slices):
    loader, worker, cache = loader
    files, study, series = slices
    events: list = []
    loader.open_study(study, record(events, "opened"), record(events, "failed"), arriving=True)
    worker.drain()
    assert events == []                                     # nothing local yet: it waits, it does not fail
    cache.import_paths(files[:5])
    loader.instances_added(study, series)
    worker.drain()
    assert [(e, v.frames) for e, v in events] == [("opened", 5)]
    shown = events[0][1]
    grown_a, grown_b = [], []
    unsubscribe_a = loader.watch(study, grown_a.append, shown)
    unsubscribe_b = loader.watch(study, grown_b.append, shown)
    cache.import_paths(files[5:20])
    reads = worker.reads
    loader.instances_added(study, series)
    worker.drain()
    assert worker.reads == reads + 1                        # one read, however many viewers watch
    assert [d.frames for d in grown_a] == [d.frames for d in grown_b] == [20]
    loader.instances_added(study, series)                   # an announcement with nothing new
    worker.drain()
    assert [d.frames for d in grown_a] == [20]
    unsubscribe_a()
    unsubscribe_b()
    assert loader.feeds() == 0                              # closed viewports leave nothing behind


def test_arrivals_during_a_read_cause_exactly_one_more(loader, slices):
    loader, worker, cache = loader
    files, study, series = slices
    cache.import_paths(files[:3])
    grown: list = []
    loader.watch(study, grown.append)
    loader.instances_added(study, series)                   # a read is under way...
    cache.import_paths(files[3:6])
    loader.instances_added(study, series)                   # ...while more arrive, twice
    cache.import_paths(files[6:9])
    loader.instances_added(study, series)
    assert len(worker.pending) == 1
    worker.drain()
    assert worker.reads == 2 and grown[-1].frames == 9      # the last read saw every arrival


def test_a_cached_study_opens_at_once_and_a_wanted_series_is_honoured(loader, slices, samples):
    loader, worker, cache = loader
    files, study, series = slices
    cache.import_paths(files[:4])
    events: list = []
    loader.open_study(study, record(events, "opened"), record(events, "failed"))
    worker.drain()
    assert [(e, [(d.key, len(d)) for d in v.display_sets]) for e, v in events] == [("opened", [(series, 4)])]
    events.clear()
    loader.open_study(study, record(events, "opened"), record(events, "failed"), series_uid="1.2.3.4")
    worker.drain()
    assert events == [("failed", "This series has no images in the cache.")]
    events.clear()
    loader.open_study("1.2.3.4.5.6", record(events, "opened"), record(events, "failed"))
    worker.drain()
    assert events == [("failed", "This study has no series in the cache.")]


def test_a_retrieval_that_brings_nothing_is_reported_and_a_replaced_request_says_nothing(loader, slices):
    loader, worker, cache = loader
    files, study, series = slices
    events: list = []
    replaced = loader.open_study(study, record(events, "replaced"), record(events, "replaced failed"), arriving=True)
    loader.open_study(study, record(events, "opened"), record(events, "failed"), arriving=True)
    worker.drain()
    replaced.cancel()
    loader.arrival_ended(study, "the node refused the association")
    worker.drain()
    assert events == [("failed", "Could not open the study: the node refused the association")]


def test_opening_a_series_that_left_the_cache_says_so(loader):
    loader, worker, cache = loader
    events: list = []
    loader.open_series("1.2.3.4.5", record(events, "opened"), record(events, "failed"))
    worker.drain()
    assert events == [("failed", "series 1.2.3.4.5 is no longer in the cache")]


def test_a_viewer_that_subscribes_when_its_study_opens_is_not_told_it_grew(loader, slices):
    loader, worker, cache = loader
    files, study, series = slices
    cache.import_paths(files[:4])
    grown: list = []
    loader.open_series(series, lambda shown: loader.watch(study, grown.append, shown), print)
    worker.drain()
    assert grown == []
    cache.import_paths(files[4:6])
    loader.instances_added(study, series)
    worker.drain()
    assert [d.frames for d in grown] == [6]


def test_growth_reads_only_the_series_that_changed(loader, slices, samples, monkeypatch):
    loader, worker, cache = loader
    files, study, series = slices
    scout = samples / "dcm_qa_ct/In/Philips/S21570/S1000/I10"     # the same study's localizer
    cache.import_paths([scout, *files[:4]])
    sets: list = []
    loader.open_study(study, sets.append, print)
    worker.drain()
    assert sorted(len(d) for d in sets[0].display_sets) == [1, 4]
    read: list[str] = []
    original = cache.instance_records
    monkeypatch.setattr(cache, "instance_records", lambda uid: read.append(uid) or original(uid))
    grown: list = []
    loader.watch(study, grown.append, sets[0])
    cache.import_paths(files[4:7])
    loader.instances_added(study, series)
    worker.drain()
    assert read == [series] and sorted(len(d) for d in grown[-1].display_sets) == [1, 7]
