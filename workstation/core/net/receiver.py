"""A Storage SCP receiver process: serves the associations the workstation accepted and handed over.

The workstation binds the Storage SCP's port and accepts; each connection goes, with its file
descriptor, to the receiver process serving the fewest, so the associations a PACS opens for
C-MOVE (one per request, several at once) are served on several cores. (Receivers accepting from
a shared socket themselves were tried: the one that had just served took nearly every new
connection.) A receiver refuses at once what `received.refusal` finds wrong, answers a C-MOVE
sub-operation at once, and a second thread checks the instance and writes it under a temporary
name in the receiver's own locked staging folder (`received.StagingFolder`), so what a killed
receiver leaves is removed at the next start; a pushed instance (no move originator) is written
durably and answered only once the workstation has committed it, because the sender may delete
its copy on Success. Asked to stop, a receiver stages what it has already answered before it exits.

To the workstation: ("staged", Parsed, calling AE, arrival time, token), ("refused", SOP Instance
UID, status, reason, calling AE, token), ("drained", n), ("association", calling AE, True) when an
association is established and ("association", calling AE, False) after what it brought was
staged, ("ended",) when a connection closes.
From it: ("conn", address) followed by the connection's descriptor, ("ack", token, status) for a
push, ("drain", n) (answered once everything received before it is reported), ("stop",) or EOF.
"""

from __future__ import annotations

import itertools
import logging
import os
import queue
import socket
import threading
import time
from multiprocessing import reduction

from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, evt
from pynetdicom.sop_class import Verification
from pynetdicom.transport import ThreadedAssociationServer

from workstation.core import logs
from workstation.core.children import as_child
from workstation.core.net import received, transport
from workstation.core.net.received import STATUS_OUT_OF_RESOURCES, StagingFolder, encoded

log = logging.getLogger(__name__)

REFUSE_AFTER_FAILURE = 5.0
"""Seconds a receiver answers Out of Resources at once after a write failed (disk full, permissions),
instead of accepting instances it cannot store; then it tries again."""
PUSH_ANSWER_TIMEOUT = 60.0
"""Longest wait for the workstation to commit a pushed instance before answering Out of Resources."""
STOP_STAGING_TIMEOUT = 10.0
"""Longest a stopping receiver spends staging what it already answered."""


def handed_server(address: tuple):
    """A pynetdicom server class that never binds or listens: connections are handed to `process_request`."""

    class _Handed(ThreadedAssociationServer):
        def server_bind(self) -> None:
            self.socket.close()
            self.server_address = address

        def server_activate(self) -> None:
            """The workstation listens."""

    return _Handed


class _Answers:
    """Pushed instances waiting for the workstation's commit: token -> (event, status)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiting: dict[int, list] = {}
        self._tokens = itertools.count(1)

    def open(self) -> tuple[int, threading.Event]:
        event = threading.Event()
        with self._lock:
            token = next(self._tokens)
            # unanswered (the workstation too busy to commit in time, or stopping): the sender may try again later
            self._waiting[token] = [event, STATUS_OUT_OF_RESOURCES]
        return token, event

    def answer(self, token: int, status: int) -> None:
        with self._lock:
            entry = self._waiting.get(token)
        if entry is not None:
            entry[1] = status
            entry[0].set()

    def take(self, token: int) -> int:
        with self._lock:
            return self._waiting.pop(token, [None, STATUS_OUT_OF_RESOURCES])[1]

    def fail_all(self) -> None:
        with self._lock:
            entries = list(self._waiting.values())
        for entry in entries:
            entry[0].set()


def serve(conn, address: tuple, aet: str, allowed: list[str], files_root: str, log_config=None) -> None:
    """The receiver's life: serve the connections handed over until the workstation says stop."""
    as_child()
    logs.setup_child(log_config)
    try:
        _serve(conn, address, aet, allowed, files_root)
    except BaseException:  # the traceback belongs in the log, not on the workstation's terminal
        log.exception("the Storage SCP receiver process failed")
        os._exit(1)
    os._exit(0)


def _serve(conn, address: tuple, aet: str, allowed: list[str], files_root: str) -> None:
    transport.install()
    send_lock = threading.Lock()

    def send(message) -> None:
        with send_lock:
            conn.send(message)

    answers = _Answers()
    staging: queue.SimpleQueue = queue.SimpleQueue()
    state = {"failing_until": 0.0, "stopping": False}
    staging_lock = threading.Lock()   # nothing is queued after the stop marker: it would never be staged
    folder = StagingFolder(files_root)
    folders: set = set()

    def stage() -> None:
        while (item := staging.get()) is not None:
            if item[0] == "drain":
                send(("drained", item[1]))
                continue
            if item[0] == "association":
                send(item)
                continue
            data, sop, calling, arrived, token = item
            parsed, status, reason = received.stage(data, files_root, folders, durable=token is not None,
                                                    into=folder.path)
            if parsed is not None:
                send(("staged", parsed, calling, arrived, token))
                continue
            if status == STATUS_OUT_OF_RESOURCES:
                state["failing_until"] = time.monotonic() + REFUSE_AFTER_FAILURE
            send(("refused", sop, status, reason, calling, token))

    def on_store(event) -> int:
        arrived = time.monotonic()
        calling = event.assoc.requestor.ae_title.strip()
        sop = str(event.request.AffectedSOPInstanceUID)
        data = encoded(event)
        refused = received.refusal(data)
        if refused is not None:
            send(("refused", sop, *refused, calling, None))
            return refused[0]
        moved = bool(event.request.MoveOriginatorApplicationEntityTitle)
        if moved and time.monotonic() < state["failing_until"]:
            return STATUS_OUT_OF_RESOURCES
        with staging_lock:
            if state["stopping"]:
                return STATUS_OUT_OF_RESOURCES   # stopping: the sender may try again later
            token, answered = (None, None) if moved else answers.open()
            staging.put((data, sop, calling, arrived, token))
        if moved:
            return 0x0000
        answered.wait(PUSH_ANSWER_TIMEOUT)
        return answers.take(token)

    stager = threading.Thread(target=stage, name="stager", daemon=True)
    stager.start()
    ae = AE(ae_title=aet)
    ae.maximum_pdu_size = 0
    for context in AllStoragePresentationContexts:
        ae.add_supported_context(context.abstract_syntax, ALL_TRANSFER_SYNTAXES)
    ae.add_supported_context(Verification)
    if allowed:
        ae.require_calling_aet = sorted(allowed)
    established: set[int] = set()

    def on_established(event) -> None:
        established.add(id(event.assoc))
        send(("association", event.assoc.requestor.ae_title.strip(), True))

    def on_ended(event) -> None:
        if id(event.assoc) in established:   # once, and only for associations that were established
            established.discard(id(event.assoc))
            with staging_lock:   # after the instances it brought, which the stager reports first
                if not state["stopping"]:
                    staging.put(("association", event.assoc.requestor.ae_title.strip(), False))

    handlers = [(evt.EVT_C_STORE, on_store), (evt.EVT_CONN_CLOSE, lambda event: send(("ended",))),
                (evt.EVT_ESTABLISHED, on_established), (evt.EVT_RELEASED, on_ended), (evt.EVT_ABORTED, on_ended)]
    server = ae.make_server(address, evt_handlers=transport.with_tuning(handlers), server_class=handed_server(address),
                            contexts=transport.SharedContexts(ae.supported_contexts))
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            break
        if message[0] == "conn":
            try:
                client = socket.socket(fileno=reduction.recv_handle(conn))
            except OSError:
                send(("ended",))
                continue
            server.process_request(client, message[1])
        elif message[0] == "ack":
            answers.answer(message[1], message[2])
        elif message[0] == "drain":
            staging.put(message)
        elif message[0] == "stop":
            with staging_lock:
                state["stopping"] = True
                staging.put(None)   # what was answered Success is staged and reported before we go
            stager.join(STOP_STAGING_TIMEOUT)
            break
    answers.fail_all()
