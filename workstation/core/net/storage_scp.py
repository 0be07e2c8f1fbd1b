"""The workstation's Storage SCP: receives pushed studies and C-MOVE sub-operations into the cache.

Handlers run on pynetdicom's association threads; they write the received bytes through the
cache's one ingest (no decode and re-encode) and return a status, nothing else. Listeners
(`on_stored`) hear of each instance once it is committed, so a retrieval or the GUI can count them.

A pushed instance is committed before we answer Success: the sender may delete its copy. An
instance sent as a C-MOVE sub-operation (it names a move originator) is answered at once and committed by an
`IngestQueue` thread: the PACS keeps its copy, and it sends the next instance only after our
answer, so writing (fsync included) no longer adds to every round trip.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
import time
from collections.abc import Callable

from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, evt
from pynetdicom.sop_class import Verification
from pynetdicom.transport import ThreadedAssociationServer

from workstation.core.cache import Cache, CacheError
from workstation.core.net.transport import with_tuning

log = logging.getLogger(__name__)

STATUS_OUT_OF_RESOURCES = 0xA700
STATUS_CANNOT_UNDERSTAND = 0xC000

StoredCallback = Callable[[str, str, int], None]
"""on_stored(calling_aet, sop_uid, size)."""


def store_event(cache: Cache, event) -> tuple[int, str, int]:
    """Ingest one C-STORE request's bytes as received, now; (status, SOP Instance UID, size)."""
    status, size = ingest(cache, encoded(event), f"C-STORE from {event.assoc.requestor.ae_title}")
    return status, (str(event.request.AffectedSOPInstanceUID) if status == 0x0000 else ""), size


def encoded(event) -> bytes:
    """The received instance as a Part-10 file: our file meta in front of the bytes as received."""
    return event.encoded_dataset(include_meta=True)


def ingest(cache: Cache, data: bytes, source: str) -> tuple[int, int]:
    """(status, size) of storing one received file durably; the status is the C-STORE answer it deserves."""
    try:
        cache.ingest_bytes(data, source=source)
    except (CacheError, OSError) as exc:
        return _status(exc, source, 0)
    return 0x0000, len(data)


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
        self.failing = False
        self._queue: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="ingest", daemon=True)
        self._thread.start()

    def put(self, item, sop: str, source: str, arrived: float) -> None:
        self._queue.put((item, sop, source, arrived))

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
                if batch:
                    self._commit(batch)
            finally:
                for _ in range(len(batch) + closing):
                    self._queue.task_done()

    def _commit(self, batch: list) -> None:
        try:
            outcomes = self._store([item for item, *_ in batch])
        except Exception as exc:  # the index itself failed: every instance of the batch is refused
            log.exception("committing received instances failed")
            outcomes = [exc] * len(batch)
            for item, *_ in batch:
                if getattr(item, "staged", ""):
                    with contextlib.suppress(OSError):
                        os.unlink(item.staged)
        for (item, sop, source, arrived), outcome in zip(batch, outcomes, strict=True):
            status, size = _status(outcome, source, len(item) if isinstance(item, bytes | bytearray) else item.size)
            if status == STATUS_OUT_OF_RESOURCES:
                self.failing = True
            try:
                self.committed(source, sop, status, size, arrived)
            except Exception:  # a listener's bug must not stop the commits behind it
                log.exception("a listener of committed instances failed")


BATCH = 32
"""Most instances committed in one transaction: enough to amortise it, few enough to report progress often."""


def _status(outcome, source: str, size: int) -> tuple[int, int]:
    """The C-STORE answer an ingest outcome deserves, and the stored size."""
    if isinstance(outcome, CacheError):
        log.warning("refused an instance from %s: %s", source, outcome)
        return STATUS_CANNOT_UNDERSTAND, 0
    if isinstance(outcome, Exception):
        log.error("cannot store an instance: %s", outcome)
        return STATUS_OUT_OF_RESOURCES, 0
    return 0x0000, size


class StorageServer:
    """A running Storage SCP on (host, port) with AE title `aet`; stop() ends it."""

    def __init__(self, cache: Cache, aet: str, port: int, host: str = "0.0.0.0",
                 allowed_calling_aets: list[str] | None = None) -> None:
        self.cache = cache
        self.aet = aet
        self.port = port
        self.host = host
        self.allowed = {a.strip() for a in (allowed_calling_aets or []) if a.strip()}
        self.received = 0
        self._lock = threading.Lock()
        self._listeners: list[tuple[Callable, bool]] = []
        self._server: ThreadedAssociationServer | None = None
        self._writer: IngestQueue | None = None

    def subscribe(self, callback: StoredCallback, arrival: bool = False) -> None:
        """Hear of each committed instance; with `arrival`, also when it arrived (monotonic seconds)."""
        with self._lock:
            self._listeners.append((callback, arrival))

    def unsubscribe(self, callback: StoredCallback) -> None:
        with self._lock:
            self._listeners = [entry for entry in self._listeners if entry[0] != callback]

    def drain(self) -> None:
        """Wait until every instance received so far is committed (a retrieval calls this after its C-MOVE)."""
        if self._writer is not None:
            self._writer.join()

    def _notify(self, calling: str, sop: str, status: int, size: int, arrived: float) -> None:
        if status != 0x0000:
            return
        with self._lock:
            self.received += 1
            listeners = list(self._listeners)
        for listener, arrival in listeners:
            if arrival:
                listener(calling, sop, size, arrived)
            else:
                listener(calling, sop, size)

    def _on_store(self, event) -> int:
        arrived = time.monotonic()
        calling = event.assoc.requestor.ae_title.strip()
        writer = self._writer
        if event.request.MoveOriginatorApplicationEntityTitle and writer is not None:
            if writer.failing:
                return STATUS_OUT_OF_RESOURCES
            writer.put(encoded(event), str(event.request.AffectedSOPInstanceUID), calling, arrived)
            return 0x0000
        status, sop, size = store_event(self.cache, event)
        self._notify(calling, sop, status, size, arrived)
        return status

    def start(self) -> None:
        ae = AE(ae_title=self.aet)
        ae.maximum_pdu_size = 0
        for context in AllStoragePresentationContexts:
            ae.add_supported_context(context.abstract_syntax, ALL_TRANSFER_SYNTAXES)
        ae.add_supported_context(Verification)
        if self.allowed:  # others are rejected at association time: "calling AE title not recognised"
            ae.require_calling_aet = sorted(self.allowed)
        self._writer = IngestQueue(self.cache, self._notify)
        try:
            self._server = ae.start_server((self.host, self.port), block=False,
                                           evt_handlers=with_tuning([(evt.EVT_C_STORE, self._on_store)]))
        except OSError as exc:
            self._writer.close()
            self._writer = None
            raise OSError(f"cannot listen on port {self.port}: {exc.strerror or exc} (is another "
                          "workstation or storescp using it? change it with 'workstation config set port N')") from None

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server = None
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def __enter__(self) -> StorageServer:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
