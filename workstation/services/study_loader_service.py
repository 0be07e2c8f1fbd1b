"""The study loader (`core/loading.py`) as the window sees it: its reads run on workers and its
outcomes arrive as signals of small handles.

`open_study` / `open_series` return an `OpeningHandle` (`opened(study_sets)` or `failed(reason)`,
once; `cancel()` when a newer request replaces it). `watch(study, shown)` returns a `StudyWatch`
whose `grown(study_sets)` fires when images of the study arrive; any number of viewers may watch
one study, and `close()` when a viewer closes.
"""

from __future__ import annotations

from PySide6.QtCore import QObject, Signal

from workstation.core.cache import Cache
from workstation.core.loading import Opening, StudyLoader, StudySets
from workstation.services.jobs import JobRunner


class OpeningHandle(QObject):
    opened = Signal(object)   # StudySets
    failed = Signal(str)

    def __init__(self) -> None:
        super().__init__()
        self.request: Opening | None = None

    def cancel(self) -> None:
        if self.request is not None:
            self.request.cancel()


class StudyWatch(QObject):
    grown = Signal(object)    # StudySets, with display sets of other sizes than before

    def __init__(self) -> None:
        super().__init__()
        self._unsubscribe = None

    def close(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None


class StudyLoaderService(QObject):
    def __init__(self, cache: Cache, runner: JobRunner) -> None:
        super().__init__()
        self.runner = runner
        self.loader = StudyLoader(cache, self._run)

    def _run(self, work, done, failed) -> None:
        job = self.runner.submit("open series", lambda progress, cancel: work())
        job.succeeded.connect(done)
        job.failed.connect(failed)

    def open_series(self, series_uid: str) -> OpeningHandle:
        handle = OpeningHandle()
        handle.request = self.loader.open_series(series_uid, *_emitters(handle))
        return handle

    def open_study(self, study_uid: str, series_uid: str | None = None, transfer=None) -> OpeningHandle:
        """With `transfer` (the retrieval bringing the study), wait for its first image."""
        handle = OpeningHandle()
        handle.request = self.loader.open_study(study_uid, *_emitters(handle), series_uid=series_uid,
                                                arriving=transfer is not None)
        if transfer is not None:
            transfer.ended.connect(lambda: self.loader.arrival_ended(
                study_uid, transfer.error or transfer.status_text()))
        return handle

    def watch(self, study_uid: str, shown: StudySets | None = None) -> StudyWatch:
        watch = StudyWatch()
        watch._unsubscribe = self.loader.watch(study_uid, lambda sets: watch.grown.emit(sets), shown)
        return watch

    def instances_added(self, study_uid: str, series_uid: str) -> None:
        """Images reached the cache (the network service's coalesced announcement)."""
        self.loader.instances_added(study_uid, series_uid)


def _emitters(handle: OpeningHandle):
    """Callbacks that hold the handle itself, so it lives as long as the loader needs it."""
    return (lambda sets: handle.opened.emit(sets)), (lambda reason: handle.failed.emit(reason))
