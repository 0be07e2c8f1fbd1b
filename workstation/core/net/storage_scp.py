"""The workstation's Storage SCP: receives pushed studies and C-MOVE sub-operations into the cache.

With `receivers` (what the workstation runs), the port is bound here and receiver processes
accept the associations (`receivers`, `receiver`), so a PACS's parallel C-MOVE associations are
served on several cores; they check and stage each instance, and this process commits them in
batches. With none (tests, and where processes cannot be used), handlers run on pynetdicom's
association threads here. Either way the received bytes are stored as received (no decode and
re-encode), and listeners (`subscribe`) hear of each instance once it is committed, so a
retrieval or the GUI can count them; `subscribe_refused` hears of each one refused, and why.

A pushed instance is committed before we answer Success: the sender may delete its copy. An
instance sent as a C-MOVE sub-operation (it names a move originator) is answered at once and
committed meanwhile: the PACS keeps its copy, and it sends the next instance only after our
answer, so writing (fsync included) no longer adds to every round trip. `subscribe_associations`
hears of each association a sender opens and, once what it sent is committed, of its end, so the
window can count a push while it goes on and say when it is over.
"""

from __future__ import annotations

import logging
import os
import socket
import sqlite3
import sys
import threading
import time
from collections.abc import Callable

from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, evt
from pynetdicom.sop_class import Verification
from pynetdicom.transport import ThreadedAssociationServer

from workstation.core.cache import Cache, CacheError
from workstation.core.net.ingest_queue import IngestQueue, answer_status
from workstation.core.net.received import STATUS_OUT_OF_RESOURCES, encoded, refusal
from workstation.core.net.receivers import ReceiverSet
from workstation.core.net.transport import SharedContexts, with_tuning

log = logging.getLogger(__name__)


StoredCallback = Callable[[str, str, int], None]
"""on_stored(calling_aet, sop_uid, size)."""
RefusedCallback = Callable[[str, str, int, str], None]
"""on_refused(calling_aet, sop_uid, status, reason)."""
AssociationCallback = Callable[[str, bool], None]
"""on_association(calling_aet, opened): True when an association was established, False when it
ended and every instance it brought is committed."""


def store_event(cache: Cache, event) -> tuple[int, str, int]:
    """Ingest one C-STORE request's bytes as received, now; (status, SOP Instance UID, size)."""
    status, size = ingest(cache, encoded(event), f"C-STORE from {event.assoc.requestor.ae_title}")
    return status, (str(event.request.AffectedSOPInstanceUID) if status == 0x0000 else ""), size


def ingest(cache: Cache, data: bytes, source: str) -> tuple[int, int]:
    """(status, size) of storing one received file durably; the status is the C-STORE answer it deserves."""
    try:
        cache.ingest_bytes(data, source=source)
    except (CacheError, OSError, sqlite3.Error) as exc:
        return answer_status(exc, source, 0)
    return 0x0000, len(data)


def default_receivers() -> int:
    """Receiver processes for the Storage SCP the workstation runs: one per core (2 to 4) on Linux,
    where they die with it; none elsewhere."""
    return max(2, min(4, os.cpu_count() or 2)) if sys.platform == "linux" else 0


class StorageServer:
    """A running Storage SCP on (host, port) with AE title `aet`; stop() ends it."""

    def __init__(self, cache: Cache, aet: str, port: int, host: str = "0.0.0.0",
                 allowed_calling_aets: list[str] | None = None, receivers: int = 0) -> None:
        self.cache = cache
        self.aet = aet
        self.port = port
        self.host = host
        self.allowed = {a.strip() for a in (allowed_calling_aets or []) if a.strip()}
        self.receivers = receivers
        self.received = 0
        self._lock = threading.Lock()
        self._listeners: list[tuple[Callable, bool]] = []
        self._refused_listeners: list[RefusedCallback] = []
        self._association_listeners: list[AssociationCallback] = []
        self._open: set[int] = set()   # established associations of the threads' server (ids)
        self._server: ThreadedAssociationServer | None = None
        self._listener: socket.socket | None = None
        self._processes: ReceiverSet | None = None
        self._writer: IngestQueue | None = None

    def subscribe(self, callback: StoredCallback, arrival: bool = False) -> None:
        """Hear of each committed instance; with `arrival`, also when it arrived (monotonic seconds)."""
        with self._lock:
            self._listeners.append((callback, arrival))

    def unsubscribe(self, callback: StoredCallback) -> None:
        with self._lock:
            self._listeners = [entry for entry in self._listeners if entry[0] != callback]

    def subscribe_refused(self, callback: RefusedCallback) -> None:
        """Hear of each instance refused, with its status and the reason in words."""
        with self._lock:
            self._refused_listeners.append(callback)

    def subscribe_associations(self, callback: AssociationCallback) -> None:
        """Hear of each association established, and of its end once what it brought is committed."""
        with self._lock:
            self._association_listeners.append(callback)

    def _association(self, calling: str, opened: bool) -> None:
        with self._lock:
            listeners = list(self._association_listeners)
        for listener in listeners:
            listener(calling, opened)

    def _association_ended(self, calling: str) -> None:
        """Announce an end once the instances received before it are committed."""
        writer = self._writer
        if writer is None:
            self._association(calling, False)
        else:
            writer.after(lambda: self._association(calling, False))

    def _on_established(self, event) -> None:
        with self._lock:
            self._open.add(id(event.assoc))
        self._association(event.assoc.requestor.ae_title.strip(), True)

    def _on_ended(self, event) -> None:
        with self._lock:
            if id(event.assoc) not in self._open:
                return   # never established, or already announced (an abort after a release)
            self._open.discard(id(event.assoc))
        self._association_ended(event.assoc.requestor.ae_title.strip())

    def _refused(self, calling: str, sop: str, status: int, reason: str) -> None:
        with self._lock:
            listeners = list(self._refused_listeners)
        for listener in listeners:
            listener(calling, sop, status, reason)

    def drain(self) -> None:
        """Wait until every instance received so far is committed (a retrieval calls this after its C-MOVE)."""
        if self._processes is not None:
            self._processes.drain()
        if self._writer is not None:
            self._writer.join()

    def receiver_pids(self) -> list[int]:
        return self._processes.pids() if self._processes is not None else []

    def _notify(self, calling: str, sop: str, status: int, size: int, arrived: float) -> None:
        if status != 0x0000:
            self._refused(calling, sop, status, "it could not be stored; the log says why")
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
        refused = refusal(encoded(event))
        if refused is not None:
            log.warning("refused %s from %s (status 0x%04X): %s", event.request.AffectedSOPInstanceUID, calling, *refused)
            self._refused(calling, str(event.request.AffectedSOPInstanceUID), *refused)
            return refused[0]
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
        """Listen on the port; raises OSError in words when it cannot (a busy port, most often)."""
        try:
            if self.receivers:
                self._start_receivers()
            else:
                self._start_threads()
        except OSError as exc:
            self.stop()
            raise OSError(f"cannot listen on port {self.port}: {exc.strerror or exc} (is another "
                          "workstation or storescp using it?)") from None   # each front end says how to change it

    def _start_threads(self) -> None:
        ae = AE(ae_title=self.aet)
        ae.maximum_pdu_size = 0
        for context in AllStoragePresentationContexts:
            ae.add_supported_context(context.abstract_syntax, ALL_TRANSFER_SYNTAXES)
        ae.add_supported_context(Verification)
        if self.allowed:  # others are rejected at association time: "calling AE title not recognised"
            ae.require_calling_aet = sorted(self.allowed)
        self._writer = IngestQueue(self.cache, self._notify)
        handlers = [(evt.EVT_C_STORE, self._on_store), (evt.EVT_ESTABLISHED, self._on_established),
                    (evt.EVT_RELEASED, self._on_ended), (evt.EVT_ABORTED, self._on_ended)]
        self._server = ae.start_server((self.host, self.port), block=False, evt_handlers=with_tuning(handlers),
                                       contexts=SharedContexts(ae.supported_contexts))

    def _start_receivers(self) -> None:
        self._listener = socket.create_server((self.host, self.port), backlog=64)
        self._processes = ReceiverSet(self._listener, self.aet, self.allowed, str(self.cache.files), self.receivers,
                                      refused=self._refused, associations=self._association)
        self._processes.start(lambda: IngestQueue(self.cache, self._notify, staged=True))
        self._writer = self._processes.writer

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server = None
        processes, self._processes = self._processes, None
        if processes is not None:
            processes.stop()
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if processes is not None:
            processes.remove_leftovers()

    def __enter__(self) -> StorageServer:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
