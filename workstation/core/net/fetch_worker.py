"""A retrieval worker process: runs C-GET (and C-MOVE) units over its own associations, on its own interpreter.

pynetdicom spends about 4 ms of Python on every received instance (35 PDUs of 16 KiB for a CT
slice, three DIMSE messages), all under one GIL, so threads in one process cannot use a second
core. A worker runs one unit at a time: it answers each C-STORE at once, and a second thread
checks the instance's header and writes its bytes under a temporary name in the final cache
folder (`files.stage_bytes`). The main process then only renames the file into place and writes
its index row, in batches. A C-MOVE unit only sends the request and reads its pending responses
here (the instances reach the Storage SCP's receivers), which keeps that work off the main process.

The association stays open from one unit to the next (`transfer.Session`) until the parent says
("release",), so a retrieval's pieces follow each other without a new negotiation.

The parent talks over a duplex pipe. To the worker: ("unit", node, own_aet, unit, method, files_root),
("open", node, own_aet, method, sop_classes) (negotiate ahead of the first unit), ("release",),
("cancel",), ("stop",), or EOF (the parent is gone). To the parent: ("staged", Parsed,
arrived), ("refused", sop, status, reason), then ("done", UnitOutcome) or ("error", text).
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading

from workstation.core import logs
from workstation.core.children import as_child
from workstation.core.net import transport
from workstation.core.net.association import NetworkError
from workstation.core.net.received import STATUS_OUT_OF_RESOURCES, encoded, refusal, stage
from workstation.core.net.transfer import Session


class _Flag:
    """The cancel flag of the unit running now, set by the pipe reader."""

    def __init__(self) -> None:
        self.cancelled = False


class _Stager:
    """Checks and writes received instances in arrival order on a thread of the worker."""

    def __init__(self, send) -> None:
        self.send = send
        self.failing = False
        self._folders: set = set()
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._idle = threading.Event()
        self._idle.set()
        self._pending = 0
        self._lock = threading.Lock()
        threading.Thread(target=self._run, name="stager", daemon=True).start()

    def put(self, data: bytes, sop: str, arrived: float, files_root: str) -> None:
        with self._lock:
            self._pending += 1
            self._idle.clear()
        self._queue.put((data, sop, arrived, files_root))

    def wait_idle(self) -> None:
        self._idle.wait()

    def _run(self) -> None:
        while True:
            data, sop, arrived, files_root = self._queue.get()
            parsed, status, reason = stage(data, files_root, self._folders)
            if parsed is not None:
                self.send(("staged", parsed, arrived))
            else:
                self.failing = self.failing or status == STATUS_OUT_OF_RESOURCES
                self.send(("refused", sop, status, reason))
            with self._lock:
                self._pending -= 1
                if not self._pending:
                    self._idle.set()


def _session_for(session: Session | None, node, own_aet: str, method: str, on_store) -> Session:
    """The session to run with: the open one when it talks to the same node the same way, else a new one."""
    if session is not None and (session.node, session.own_aet, session.method) == (node, own_aet, method):
        return session
    if session is not None:
        session.close()
    return Session(node, own_aet, method, on_store if method == "get" else None)


def serve(conn, log_config=None) -> None:
    """The worker's main loop: one unit at a time until the pipe closes."""
    as_child()
    logs.setup_child(log_config)
    transport.install()
    send_lock = threading.Lock()

    def send(message) -> None:
        with send_lock:
            conn.send(message)

    units: queue.SimpleQueue = queue.SimpleQueue()
    flag = _Flag()

    def read() -> None:
        while True:
            try:
                message = conn.recv()
            except (EOFError, OSError):
                flag.cancelled = True
                units.put(None)
                return
            if message[0] == "cancel":
                flag.cancelled = True
            elif message[0] == "stop":
                flag.cancelled = True
                units.put(None)
                return
            else:
                units.put(message)

    threading.Thread(target=read, name="pipe", daemon=True).start()
    stager = _Stager(send)
    session: Session | None = None
    roots = {"files": ""}

    def on_store(event, arrived: float) -> int:
        if stager.failing:
            return STATUS_OUT_OF_RESOURCES
        data, sop = encoded(event), str(event.request.AffectedSOPInstanceUID)
        if (problem := refusal(data)) is not None:
            send(("refused", sop, *problem))
            return problem[0]
        stager.put(data, sop, arrived, roots["files"])
        return 0x0000

    while (message := units.get()) is not None:
        if message[0] == "release":
            if session is not None:
                session.close()
                session = None
            continue
        if message[0] == "open":
            _, node, own_aet, method, classes = message
            session = _session_for(session, node, own_aet, method, on_store)
            with contextlib.suppress(NetworkError):   # the first unit tries again and reports it
                session.prepare(classes)
            continue
        _, node, own_aet, unit, method, files_root = message
        flag.cancelled = False
        stager.failing = False
        roots["files"] = files_root
        session = _session_for(session, node, own_aet, method, on_store)
        try:
            outcome = session.run(unit, flag)
        except NetworkError as exc:
            session = None
            stager.wait_idle()
            send(("error", str(exc)))
        except Exception as exc:  # a bug here must reach the user as words, and the worker lives on
            session = None
            stager.wait_idle()
            send(("error", f"the retrieval worker failed: {type(exc).__name__}: {exc}"))
        else:
            stager.wait_idle()
            send(("done", outcome))
    if session is not None:
        session.close()
    os._exit(0)
