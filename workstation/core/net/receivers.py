"""The Storage SCP's receiver processes, seen from the workstation: accept, hand over, relay, drain, stop.

One thread accepts on the Storage SCP's port and hands each connection (its descriptor) to the
receiver (`receiver.serve`) serving the fewest. A thread per receiver reads what it reports:
staged instances go to the Storage SCP's `IngestQueue` (a push's commit outcome goes back as its
answer), drain markers tell `drain` that everything received before them is in the queue. A
receiver that dies is replaced; the associations it was serving end, and their senders see the
association dropped. What dead receivers left in their staging folders is removed when the set
starts and after it stops.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import socket
import threading
import time
from collections.abc import Callable
from multiprocessing import reduction

from workstation.core import logs
from workstation.core.children import start_context
from workstation.core.net import receiver
from workstation.core.net.ingest_queue import IngestQueue
from workstation.core.net.received import remove_abandoned

log = logging.getLogger(__name__)

ACCEPT_POLL = 0.2
"""How often the accepting thread looks whether the server is stopping."""
RESPAWN_WAIT = 10.0
"""Longest a new connection waits for a receiver while dead ones are being replaced."""
RESPAWN_LIMIT = 3
RESPAWN_WINDOW = 60.0
"""A receiver that dies is replaced, but no more than RESPAWN_LIMIT times a minute: one that cannot
start at all must not turn into a storm of processes."""


class _Receiver:
    def __init__(self, process, conn) -> None:
        self.process = process
        self.conn = conn
        self.lock = threading.Lock()
        self.load = 0
        """Connections handed over and not yet closed."""
        self.open: list[str] = []
        """The calling AE titles of its established associations."""

    def send(self, message) -> None:
        with self.lock, contextlib.suppress(OSError):
            self.conn.send(message)

    def hand_over(self, client: socket.socket, address) -> bool:
        with self.lock:
            try:
                self.conn.send(("conn", address))
                reduction.send_handle(self.conn, client.fileno(), self.process.pid)
            except OSError:
                return False
        return True


class ReceiverSet:
    """`count` receiver processes on `listener`, reporting into `writer`."""

    def __init__(self, listener: socket.socket, aet: str, allowed: set[str], files_root: str, count: int,
                 refused: Callable[[str, str, int, str], None] | None = None,
                 associations: Callable[[str, bool], None] | None = None) -> None:
        self.listener = listener
        self.aet = aet
        self.allowed = sorted(allowed)
        self.files_root = files_root
        self.count = max(1, count)
        self.writer: IngestQueue | None = None
        self.refused = refused
        """refused(calling AE, SOP Instance UID, status, reason) for each instance a receiver refused."""
        self.associations = associations
        """associations(calling AE, opened) as a receiver's association is established, and once it ended
        and what it brought is committed."""
        self._receivers: list[_Receiver] = []
        self._readers: list[threading.Thread] = []
        self._gave_up = False
        self._respawns: list[float] = []
        self._lock = threading.Lock()
        self._stopping = False
        self._drains: dict[int, tuple[threading.Event, set[_Receiver]]] = {}
        self._drain_numbers = itertools.count(1)
        self._accepting: threading.Thread | None = None

    def start(self, writer: Callable[[], IngestQueue]) -> None:
        """All processes first, then the writer (`writer()` makes it) and the reader threads: forking is
        cheap only while this process has no other thread. What dead receivers left is removed first."""
        removed = remove_abandoned(self.files_root)
        if removed:
            log.info("removed %d instances a stopped Storage SCP receiver had not handed over", removed)
        started = [self._spawn() for _ in range(self.count)]
        self.writer = writer()
        for entry in started:
            self._listen_to(entry)
        self.listener.settimeout(ACCEPT_POLL)
        self._accepting = threading.Thread(target=self._accept, name="storage-accept", daemon=True)
        self._accepting.start()

    def _accept(self) -> None:
        while not self._stopping:
            try:
                client, address = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                if self._stopping:
                    return
                continue
            with client:
                for _ in range(2):
                    alive = self._alive()
                    if not alive:
                        log.error("no Storage SCP receiver is running: a connection from %s was closed", address)
                        break
                    entry = min(alive, key=lambda r: r.load)
                    entry.load += 1
                    if entry.hand_over(client, address):
                        break
                    entry.load -= 1

    def _alive(self) -> list[_Receiver]:
        """The receivers alive now, waiting a little while dead ones are being replaced."""
        deadline = time.monotonic() + RESPAWN_WAIT
        while True:
            with self._lock:
                alive = [r for r in self._receivers if r.process.is_alive()]
            if alive or self._stopping or self._gave_up or time.monotonic() > deadline:
                return alive
            time.sleep(0.05)

    def _spawn(self) -> _Receiver:
        context = start_context()
        parent, child = context.Pipe(duplex=True)
        process = context.Process(target=receiver.serve, name="storage-receiver", daemon=True,
                                  args=(child, self.listener.getsockname(), self.aet, self.allowed, self.files_root,
                                        logs.child_config()))
        process.start()
        child.close()
        entry = _Receiver(process, parent)
        with self._lock:
            self._receivers.append(entry)
        return entry

    def _listen_to(self, entry: _Receiver) -> None:
        reader = threading.Thread(target=self._read, args=(entry,), name="receiver-reader", daemon=True)
        with self._lock:
            self._readers.append(reader)
        reader.start()

    def _read(self, entry: _Receiver) -> None:
        while True:
            try:
                message = entry.conn.recv()
            except (EOFError, OSError):
                break
            kind = message[0]
            if kind == "staged":
                _, parsed, calling, arrived, token = message
                done = None if token is None else (lambda status, token=token: entry.send(("ack", token, status)))
                self.writer.put(parsed, parsed.sop, calling, arrived, done=done, durable=token is not None)
            elif kind == "refused":
                _, sop, status, reason, calling, token = message
                log.warning("refused %s from %s (status 0x%04X): %s", sop, calling, status, reason)
                if token is not None:
                    entry.send(("ack", token, status))
                if self.refused is not None:
                    self.refused(calling, sop, status, reason)
            elif kind == "association":
                self._on_association(entry, message[1], message[2])
            elif kind == "drained":
                self._drained(message[1], entry)
            elif kind == "ended":
                entry.load = max(0, entry.load - 1)
        with self._lock:
            if entry in self._receivers:
                self._receivers.remove(entry)
            stopping = self._stopping
        for calling in list(entry.open):   # a receiver that died ended its associations with it
            self._on_association(entry, calling, False)
        for number in list(self._drains):
            self._drained(number, entry)
        if not stopping:
            entry.process.join(1)
            now = time.monotonic()
            self._respawns = [t for t in self._respawns if now - t < RESPAWN_WINDOW] + [now]
            if len(self._respawns) > RESPAWN_LIMIT:
                self._gave_up = True
                log.error("Storage SCP receiver processes keep stopping (exit code %s); not starting more",
                          entry.process.exitcode)
                return
            log.error("a Storage SCP receiver process stopped (exit code %s); starting another",
                      entry.process.exitcode)
            self._listen_to(self._spawn())

    def _on_association(self, entry: _Receiver, calling: str, opened: bool) -> None:
        if opened:
            entry.open.append(calling)
        elif calling in entry.open:
            entry.open.remove(calling)
        else:
            return
        if self.associations is None:
            return
        if opened:
            self.associations(calling, True)
        else:   # the receiver sent it after what it staged: it is announced once that is committed
            self.writer.after(lambda: self.associations(calling, False))

    def _drained(self, number: int, entry: _Receiver) -> None:
        waiting = self._drains.get(number)
        if waiting is not None:
            waiting[1].discard(entry)
            if not waiting[1]:
                waiting[0].set()

    def drain(self, timeout: float = 30.0) -> bool:
        """Wait until every receiver has reported all it received so far (not yet committed: join the writer)."""
        number = next(self._drain_numbers)
        event = threading.Event()
        with self._lock:
            pending = set(self._receivers)
        if not pending:
            return True
        self._drains[number] = (event, pending)
        for entry in list(pending):
            entry.send(("drain", number))
        try:
            return event.wait(timeout)
        finally:
            self._drains.pop(number, None)

    def pids(self) -> list[int]:
        with self._lock:
            return [r.process.pid for r in self._receivers]

    def stop(self) -> None:
        with self._lock:
            self._stopping = True
            receivers, self._receivers = list(self._receivers), []
        if self._accepting is not None:
            self._accepting.join(ACCEPT_POLL * 4)
        for entry in receivers:
            entry.send(("stop",))   # a forked sibling may hold our end of the pipe: EOF alone may never come
        for entry in receivers:
            entry.process.join(receiver.STOP_STAGING_TIMEOUT + 3)
            if entry.process.is_alive():
                entry.process.kill()
                entry.process.join(1)
        with self._lock:
            readers = list(self._readers)
        for reader in readers:   # everything the receivers reported is in the writer's queue after this
            reader.join(2)
        for entry in receivers:
            with contextlib.suppress(OSError):
                entry.conn.close()

    def remove_leftovers(self) -> None:
        """After `stop` and the writer's last commit: remove what the stopped receivers staged and nobody took."""
        remove_abandoned(self.files_root)
