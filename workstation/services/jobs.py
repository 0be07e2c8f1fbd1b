"""Run a core job on the thread pool with progress, cancellation and an outcome as signals.

A job function takes `(progress, cancel)` and returns a result. Its `Job` handle lives on the
main thread; the worker only emits signals, so slots always run on the GUI thread. A streaming
job (`submit(name, fn, streaming=True)`) takes `(progress, cancel, publish)` and may hand partial
results to `publish(obj)` as it goes; they arrive, in order, as `job.partial(obj)` before the outcome.
"""

from __future__ import annotations

import logging
import queue
import traceback
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal

from workstation.core.tasks import Cancelled, CancelToken, Progress

log = logging.getLogger(__name__)

JobFunction = Callable[[Progress, CancelToken], Any]
StreamingJobFunction = Callable[[Progress, CancelToken, Callable[[Any], None]], Any]


class Job(QObject):
    """A handle on one background job; keep a reference while it runs."""

    progressed = Signal(int, int, str)
    partial = Signal(object)      # a streaming job's partial result (e.g. a batch of found records)
    succeeded = Signal(object)
    failed = Signal(str)
    cancelled = Signal()
    ended = Signal()

    def __init__(self, name: str, function: JobFunction | StreamingJobFunction, streaming: bool = False) -> None:
        super().__init__()
        self.name = name
        self.function = function
        self.streaming = streaming
        self.token = CancelToken()
        self.running = False
        self.partial_report = None   # what a cancelled job had done (`Cancelled.report`), if it says
        self.on_cancel: Callable[[], None] | None = None   # a queue's hook: take the job out before it starts

    def cancel(self) -> None:
        self.token.cancel()
        if self.on_cancel is not None:
            self.on_cancel()


class _Runnable(QRunnable):
    """Runs the job's function on a pool thread and reports through the runner's bridge signals."""

    def __init__(self, job: Job, bridge: JobRunner) -> None:
        super().__init__()
        self.job = job
        self.bridge = bridge
        self.setAutoDelete(True)

    def run(self) -> None:
        job, bridge = self.job, self.bridge

        def progress(done: int, total: int, message: str) -> None:
            bridge.relay(job, "progressed", (done, total, message))

        def publish(item) -> None:
            bridge.relay(job, "partial", item)

        try:
            if job.streaming:
                result = job.function(progress, job.token, publish)
            else:
                result = job.function(progress, job.token)
        except Cancelled as exc:
            bridge.relay(job, "cancelled", getattr(exc, "report", None))
        except Exception as exc:  # every failure reaches the user as words, never a crash
            log.error("job %s failed:\n%s", job.name, traceback.format_exc())
            bridge.relay(job, "failed", f"{job.name} failed: {exc}")
        else:
            bridge.relay(job, "cancelled" if job.token.cancelled else "succeeded", result)
        finally:
            bridge.relay(job, "ended", None)


class JobRunner(QObject):
    """Submits jobs to a thread pool and keeps them alive until they end.

    Workers never emit on a `Job` directly: they `relay` through this long-lived object, and
    the slot, on the GUI thread, re-emits on the job. Signals emitted from pool threads on
    short-lived per-job QObjects were seen to be lost now and then (PySide6 6.12).
    """

    _wake = Signal()

    def __init__(self, max_threads: int | None = None) -> None:
        super().__init__()
        self.pool = QThreadPool()
        if max_threads:
            self.pool.setMaxThreadCount(max_threads)
        self._live: set[Job] = set()
        self._closed = False
        self._inbox: queue.SimpleQueue = queue.SimpleQueue()
        self._wake.connect(self._drain)

    def submit(self, name: str, function: JobFunction | StreamingJobFunction, streaming: bool = False) -> Job:
        return self.start(self.prepare(name, function, streaming))

    def prepare(self, name: str, function: JobFunction | StreamingJobFunction, streaming: bool = False) -> Job:
        """A job kept alive but not started: a queue starts it when its turn comes."""
        job = Job(name, function, streaming)
        self._live.add(job)
        job.running = True
        return job

    def start(self, job: Job) -> Job:
        if self._closed or job.token.cancelled:  # closing, or cancelled while queued: never run it
            job.token.cancel()
            self.relay(job, "cancelled", None)
            self.relay(job, "ended", None)
            return job
        self.pool.start(_Runnable(job, self))
        return job

    def relay(self, job: Job, kind: str, payload) -> None:
        """From any thread: hand an event to the GUI thread. The payload travels through a queue and
        the signal carries no Python object (queued Signal(object) emits from pool threads were seen
        to corrupt memory now and then under PySide6 6.12)."""
        self._inbox.put((job, kind, payload))
        self._wake.emit()

    def _drain(self) -> None:
        while True:
            try:
                job, kind, payload = self._inbox.get_nowait()
            except queue.Empty:
                return
            self._relay(job, kind, payload)

    def _relay(self, job: Job, kind: str, payload) -> None:
        if kind == "progressed":
            job.progressed.emit(*payload)
        elif kind == "partial":
            job.partial.emit(payload)
        elif kind == "succeeded":
            job.succeeded.emit(payload)
        elif kind == "failed":
            job.failed.emit(payload)
        elif kind == "cancelled":
            job.partial_report = payload
            job.cancelled.emit()
        elif kind == "ended":
            job.running = False
            self._live.discard(job)
            job.ended.emit()

    def cancel_all(self) -> None:
        for job in list(self._live):
            job.cancel()

    def close(self, msecs: int = 10000) -> bool:
        """Cancel what runs, wait for it, and run nothing submitted from now on."""
        self._closed = True
        self.cancel_all()
        return self.wait(msecs)

    def wait(self, msecs: int = 30000) -> bool:
        return self.pool.waitForDone(msecs)
