"""A Storage SCP receiver process: serves the associations the workstation accepted and handed over.

The workstation binds the Storage SCP's port and accepts; each connection goes, with its file
descriptor, to the receiver process serving the fewest, so the associations a PACS opens for
C-MOVE (one per request, several at once) are served on several cores. (Receivers accepting from
a shared socket themselves were tried: the one that had just served took nearly every new
connection.) A receiver answers a C-MOVE sub-operation at once and a second thread checks the
instance and writes it under a temporary name in its cache folder, as a retrieval worker does; a
pushed instance (no move originator) is written durably and answered only once the workstation
has committed it, because the sender may delete its copy on Success.

To the workstation: ("staged", Parsed, calling AE, arrival time, token), ("refused", SOP Instance
UID, status, reason, calling AE, token), ("drained", n), ("ended",) when a connection closes.
From it: ("conn", address) followed by the connection's descriptor, ("ack", token, status) for a
push, ("drain", n) (answered once everything received before it is reported), ("stop",) or EOF.
"""

from __future__ import annotations

import itertools
import os
import queue
import socket
import threading
import time
from multiprocessing import reduction

from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, evt
from pynetdicom.sop_class import Verification
from pynetdicom.transport import ThreadedAssociationServer

from workstation.core.children import as_child
from workstation.core.net import received, transport
from workstation.core.net.received import STATUS_OUT_OF_RESOURCES, encoded

REFUSE_AFTER_FAILURE = 5.0
"""Seconds a receiver answers Out of Resources at once after a write failed (disk full, permissions),
instead of accepting instances it cannot store; then it tries again."""
PUSH_ANSWER_TIMEOUT = 60.0
"""Longest wait for the workstation to commit a pushed instance before answering Out of Resources."""


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


def serve(conn, address: tuple, aet: str, allowed: list[str], files_root: str) -> None:
    """The receiver's life: serve the connections handed over until the workstation says stop."""
    as_child()
    transport.install()
    send_lock = threading.Lock()

    def send(message) -> None:
        with send_lock:
            conn.send(message)

    answers = _Answers()
    staging: queue.SimpleQueue = queue.SimpleQueue()
    state = {"failing_until": 0.0}
    folders: set = set()

    def stage() -> None:
        while (item := staging.get()) is not None:
            if item[0] == "drain":
                send(("drained", item[1]))
                continue
            data, sop, calling, arrived, token = item
            parsed, status, reason = received.stage(data, files_root, folders, durable=token is not None)
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
        if event.request.MoveOriginatorApplicationEntityTitle:
            if time.monotonic() < state["failing_until"]:
                return STATUS_OUT_OF_RESOURCES
            staging.put((data, sop, calling, arrived, None))
            return 0x0000
        token, answered = answers.open()
        staging.put((data, sop, calling, arrived, token))
        answered.wait(PUSH_ANSWER_TIMEOUT)
        return answers.take(token)

    threading.Thread(target=stage, name="stager", daemon=True).start()
    ae = AE(ae_title=aet)
    ae.maximum_pdu_size = 0
    for context in AllStoragePresentationContexts:
        ae.add_supported_context(context.abstract_syntax, ALL_TRANSFER_SYNTAXES)
    ae.add_supported_context(Verification)
    if allowed:
        ae.require_calling_aet = sorted(allowed)
    handlers = [(evt.EVT_C_STORE, on_store), (evt.EVT_CONN_CLOSE, lambda event: send(("ended",)))]
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
            break
    answers.fail_all()
    os._exit(0)
