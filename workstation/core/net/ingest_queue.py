"""Commits received instances in arrival order on one thread, off the network threads.

Network handlers answer a C-MOVE or C-GET sub-operation as soon as the instance is in memory (the
node keeps its copy, and sends the next one only after our answer); the commits happen here
meanwhile, in batches, so that writing never adds to every round trip.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
from collections.abc import Callable

from workstation.core.cache import Cache, CacheError
from workstation.core.net.received import STATUS_OUT_OF_RESOURCES, failure_status

log = logging.getLogger(__name__)

Committed = Callable[[str, str, int, int, float], None]
"""committed(source, sop_uid, status, size, arrived): called on the writer thread after each ingest."""


class IngestQueue:
    """Commits received instances in arrival order on one thread, off the network threads.

    Items are received bytes, or with `staged` instances a worker process already checked and wrote
    under temporary names (`Parsed`). `put` returns at once; `join` waits until everything put so far
    is committed (or refused).
    After a write fails for lack of space or permissions, `failing` is set so that handlers can
    answer Out of Resources instead of accepting more.
    """

    def __init__(self, cache: Cache, committed: Committed, staged: bool = False) -> None:
        self.cache = cache
        self.committed = committed
        self._store = cache.ingest_staged if staged else cache.ingest_many
        self._staged = staged
        self.failing = False
        self._queue: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="ingest", daemon=True)
        self._thread.start()

    def put(self, item, sop: str, source: str, arrived: float, done: Callable[[int], None] | None = None,
            durable: bool = False) -> None:
        """Queue one instance; `done(status)` is called once it is committed or refused, and `durable`
        (a push) has its batch placed with a directory fsync before that."""
        self._queue.put((item, sop, source, arrived, done, durable))

    def after(self, callback: Callable[[], None]) -> None:
        """Call `callback` on the writer thread once everything put before it is committed (or refused)."""
        self._queue.put(_After(callback))

    def join(self) -> None:
        self._queue.join()

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()

    def _run(self) -> None:
        closing = False
        while not closing:
            batch = [self._queue.get()]
            while len(batch) < BATCH and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            if batch[-1] is None:
                closing = True
                batch.pop()
            try:
                self._commit_in_order(batch)
            finally:
                for _ in range(len(batch) + closing):
                    self._queue.task_done()

    def _commit_in_order(self, batch: list) -> None:
        """Commit the instances of `batch`, calling each `after` callback once those before it are in."""
        instances: list = []
        for entry in batch:
            if not isinstance(entry, _After):
                instances.append(entry)
                continue
            if instances:
                self._commit(instances)
                instances = []
            try:
                entry.callback()
            except Exception:  # a listener's bug must not stop the commits behind it
                log.exception("a listener of the ingest queue failed")
        if instances:
            self._commit(instances)

    def _commit(self, batch: list) -> None:
        try:
            items = [entry[0] for entry in batch]
            durable = self._staged and any(entry[5] for entry in batch)
            outcomes = self._store(items, durable=True) if durable else self._store(items)
        except Exception as exc:  # the index itself failed: every instance of the batch is refused
            log.exception("committing received instances failed")
            outcomes = [exc] * len(batch)
            for item, *_ in batch:
                if getattr(item, "staged", ""):
                    with contextlib.suppress(OSError):
                        os.unlink(item.staged)
        for (item, sop, source, arrived, done, _durable), outcome in zip(batch, outcomes, strict=True):
            status, size = answer_status(outcome, source, len(item) if isinstance(item, bytes | bytearray) else item.size)
            if status == STATUS_OUT_OF_RESOURCES:
                self.failing = True
            try:
                self.committed(source, sop, status, size, arrived)
                if done is not None:
                    done(status)
            except Exception:  # a listener's bug must not stop the commits behind it
                log.exception("a listener of committed instances failed")


class _After:
    __slots__ = ("callback",)

    def __init__(self, callback: Callable[[], None]) -> None:
        self.callback = callback


BATCH = 32
"""Most instances committed in one transaction: enough to amortise it, few enough to report progress often."""


def answer_status(outcome, source: str, size: int) -> tuple[int, int]:
    """The C-STORE answer an ingest outcome deserves (`received.failure_status`), and the stored size."""
    if isinstance(outcome, CacheError):
        log.warning("refused an instance from %s: %s", source, outcome)
    elif isinstance(outcome, Exception):
        log.error("cannot store an instance from %s: %s", source, outcome)
    else:
        return 0x0000, size
    return failure_status(outcome), 0
