"""The pool of retrieval worker processes, kept warm between retrievals.

C-GET units run in `fetch_worker` processes so that retrieval uses every core (pynetdicom holds
the GIL for most of each received instance). Workers are made once and reused: from a process
with no other threads (the command line) they are forked, which takes milliseconds; from the GUI
they come from a fork server started early, so the first retrieval does not wait for a fresh
interpreter to import pydicom and pynetdicom.

A worker that dies in the middle of a unit is replaced; its unit reports the loss in words, and
everything it had already staged is committed.
"""

from __future__ import annotations

import atexit
import contextlib
import threading
from collections.abc import Callable, Iterator

from workstation.core import logs
from workstation.core.cache.files import remove_temps_of
from workstation.core.children import start_context
from workstation.core.model.node import Node
from workstation.core.net import fetch_worker
from workstation.core.net.association import NetworkError
from workstation.core.net.transfer import CancelFlag, Unit, UnitOutcome

Staged = Callable[[object, float], None]
"""staged(Parsed, arrival time): an instance the worker checked and wrote under a temporary name."""
Refused = Callable[[str, int, str], None]
"""refused(SOP Instance UID, C-STORE status, reason)."""


class _Worker:
    def __init__(self, process, conn) -> None:
        self.process = process
        self.conn = conn
        self.reusable = True
        """False once the worker is mid-unit with nobody reading it, or gone."""


    def close(self) -> None:
        """Tell the worker to stop (a forked sibling may hold our end of the pipe, so EOF may never
        reach it) and close our end."""
        with contextlib.suppress(OSError, ValueError):
            self.conn.send(("stop",))
        with contextlib.suppress(OSError):
            self.conn.close()


class FetchPool:
    """Up to `size` worker processes; `run` sends one unit to an idle one and relays what it reports."""

    def __init__(self, size: int = 4) -> None:
        self.size = max(1, size)
        self._idle: list[_Worker] = []
        self._busy: set[_Worker] = set()
        self._count = 0
        self._cond = threading.Condition()
        self._closed = False

    def _spawn(self) -> _Worker:
        context = start_context()
        parent, child = context.Pipe(duplex=True)
        process = context.Process(target=fetch_worker.serve, args=(child, logs.child_config()), name="retrieve-worker",
                                  daemon=True)
        process.start()
        child.close()
        return _Worker(process, parent)

    def prestart(self, count: int | None = None) -> None:
        """Start workers now (up to `count`, default the pool's size) so that the first retrieval finds them."""
        wanted = min(self.size, count or self.size)
        while True:
            with self._cond:
                if self._closed or self._count >= wanted:
                    return
                self._count += 1
            try:
                worker = self._spawn()
            except Exception:
                with self._cond:
                    self._count -= 1
                raise
            with self._cond:
                self._idle.append(worker)
                self._cond.notify()

    @contextlib.contextmanager
    def _worker(self) -> Iterator[_Worker]:
        with self._cond:
            while not self._idle and self._count >= self.size and not self._closed:
                self._cond.wait()
            if self._closed:
                raise NetworkError("the retrieval workers are shutting down")
            worker = None
            while self._idle and worker is None:
                worker = self._idle.pop()
                if not worker.process.is_alive():   # died while idle (killed, out of memory): replace it
                    worker.close()
                    self._count -= 1
                    worker = None
            if worker is None:
                self._count += 1
        if worker is None:
            try:
                worker = self._spawn()
            except Exception as exc:
                self._lost()
                raise NetworkError(f"cannot start a retrieval worker process: {exc}") from None
        with self._cond:
            self._busy.add(worker)
        try:
            yield worker
        finally:
            with self._cond:
                self._busy.discard(worker)
            if worker.reusable:
                try:
                    worker.conn.send(("release",))   # its association ends with the lane
                except OSError:
                    worker.reusable = False
            if worker.reusable and worker.process.is_alive() and not self._closed:
                with self._cond:
                    self._idle.append(worker)
                    self._cond.notify()
            else:
                worker.close()
                self._lost()

    def _lost(self) -> None:
        with self._cond:
            self._count -= 1
            self._cond.notify()

    @contextlib.contextmanager
    def lane(self) -> Iterator[Lane]:
        """One worker held for a run of units, each sent after the last ended, over one association."""
        with self._worker() as worker:
            yield Lane(worker)

    def run(self, node: Node, own_aet: str, unit: Unit, method: str, files_root: str, staged: Staged,
            refused: Refused, cancel: CancelFlag) -> UnitOutcome:
        """Run one C-GET or C-MOVE unit in a worker; raises NetworkError when it could not run or its worker died."""
        with self.lane() as lane:
            return lane.run(node, own_aet, unit, method, files_root, staged, refused, cancel)

    def pids(self, busy_only: bool = False) -> list[int]:
        """The process IDs of the workers (those running a unit now, with `busy_only`)."""
        with self._cond:
            workers = list(self._busy) + ([] if busy_only else self._idle)
        return [w.process.pid for w in workers]

    def close(self) -> None:
        """End the idle workers (their pipes close, they exit); busy ones end with their unit."""
        with self._cond:
            self._closed = True
            idle, self._idle = self._idle, []
            self._cond.notify_all()
        for worker in idle:
            worker.close()
        for worker in idle:
            worker.process.join(2)
            if worker.process.is_alive():
                worker.process.kill()


class Lane:
    """A worker held by one of a retrieval's parallel associations; `run` relays what it reports."""

    def __init__(self, worker: _Worker) -> None:
        self.worker = worker

    def open(self, node: Node, own_aet: str, method: str, sop_classes: tuple[str, ...]) -> None:
        """Let the worker negotiate its association now, before the first unit (a failure shows at that unit)."""
        if self.worker.reusable:
            with contextlib.suppress(OSError):
                self.worker.conn.send(("open", node, own_aet, method, sop_classes))

    def run(self, node: Node, own_aet: str, unit: Unit, method: str, files_root: str, staged: Staged,
            refused: Refused, cancel: CancelFlag) -> UnitOutcome:
        """Run one unit; raises NetworkError when it could not run or the worker died (the lane is over then)."""
        worker = self.worker
        if not worker.reusable:   # left mid-unit by an earlier failure
            raise NetworkError("the retrieval worker process could not be reached; retrieve again")
        worker.reusable = False
        conn = worker.conn
        try:
            conn.send(("unit", node, own_aet, unit, method, files_root))
        except OSError:
            worker.process.kill()
            raise NetworkError("the retrieval worker process could not be reached; retrieve again") from None
        cancel_sent = False
        reported: set[str] = set()
        while True:
            if cancel.cancelled and not cancel_sent:
                with contextlib.suppress(OSError):
                    conn.send(("cancel",))
                cancel_sent = True
            try:
                if not conn.poll(0.05):
                    if not worker.process.is_alive():
                        raise EOFError
                    continue
                message = conn.recv()
            except (EOFError, OSError):
                worker.process.join(1)
                remove_temps_of(files_root, unit.study_uid, worker.process.pid, reported)
                raise NetworkError(
                    f"the retrieval worker process stopped unexpectedly (exit code {worker.process.exitcode}); "
                    "what arrived is kept; retrieve again to fetch the rest") from None
            kind = message[0]
            if kind == "staged":
                reported.add(message[1].staged)
                staged(message[1], message[2])
            elif kind == "refused":
                refused(message[1], message[2], message[3])
            else:
                worker.reusable = True
                if kind == "done":
                    return message[1]
                raise NetworkError(message[1])


_shared: FetchPool | None = None
_shared_lock = threading.Lock()


def shared_pool(size: int) -> FetchPool:
    """The process-wide pool, grown to at least `size` workers."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = FetchPool(size)
            atexit.register(_shared.close)
        elif _shared.size < size:
            with _shared._cond:
                _shared.size = size
                _shared._cond.notify_all()
        return _shared
