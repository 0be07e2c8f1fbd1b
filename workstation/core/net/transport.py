"""Socket and reactor settings for every association the workstation opens or accepts.

Profiling a C-GET of a CT series from Orthanc on loopback showed the time going to pynetdicom's
transport, not to bandwidth: Nagle's algorithm left on, sockets read 4 KiB per system call, the
DUL reactor polling (it sleeps between looks at the socket and at its queue of PDUs to send, so
each look costs a wake-up, 16 % of a core per open association at 0.1 ms, and each reply waits
for the next look), and standard logging handlers building an event for every PDU.
`EVENT_HANDLERS` fixes the first three per association through the connection-open event (both
roles); the pynetdicom settings below fix the last.

The reactors keep their loops; only their idle sleeps change. pynetdicom's DUL sleeps with
`time.sleep` from inside its own thread, so `pynetdicom.dul` is given a `time` whose `sleep`, on
a tuned DUL thread, waits in `select` on the association's socket and on a wake-up pipe that
`send_pdu` and `kill_dul` write to: the reactor wakes when a PDU arrives or one is to be sent,
and costs nothing while the association is quiet. The association's own reactor (which serves
the requests an acceptor receives) polls every millisecond the same way; on an accepted
association its 1 ms sleep waits instead for a DIMSE message, an ACSE primitive or the end of the
DUL. A requested association keeps the poll (our thread waits for the reactor to pause before
each request).

The requestor's reactor is also kept away from DIMSE messages. pynetdicom pauses it for each
request with an Event it clears, then waits for a flag the reactor sets just before waiting on
that Event; right after a request ends, the reactor can still be on its way out of the previous
wait, so the next request starts and the reactor takes its response as a request of its own
("Received unexpected C-ECHO service message", then a DIMSE timeout and an abort). A faster
reactor made that race frequent (1 association in 16 during 50 C-ECHOs). Our requested
associations never serve requests from the peer (C-GET's C-STOREs are read by the thread that
sent the C-GET), so their reactor's look at the message queue always finds it empty.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import threading
import time
import types
import weakref

from pydicom.uid import UID
from pynetdicom import _config, association, dul, evt
from pynetdicom.association import Association
from pynetdicom.transport import AssociationSocket

IDLE_WAIT = 0.02
"""Longest wait of a tuned DUL reactor with nothing to do; it wakes at once for a PDU in either
direction, so this only bounds how late it notices its timers (ARTIM, in seconds)."""

# pynetdicom deep-copies the supported presentation contexts for every association it accepts: for a
# Storage SCP (170 SOP classes x 45 transfer syntaxes) 93 ms of rebuilding and re-validating 7,650
# pydicom UIDs, a quarter of a receiver's time in a C-MOVE of 140 CT slices. A UID is an immutable
# str (its instance dict stays empty), so its deep copy can be itself, as a str's is: 7.6 ms.
UID.__deepcopy__ = lambda self, memo: self

# The association module silences pynetdicom's logger, so its standard handlers (an Event object and
# log lines per PDU and DIMSE message, a pretty-printed identifier per C-FIND response) do work for nothing.
_config.LOG_HANDLER_LEVEL = "none"
_config.LOG_REQUEST_IDENTIFIERS = False
_config.LOG_RESPONSE_IDENTIFIERS = False


class FastAssociationSocket(AssociationSocket):
    """An AssociationSocket that reads a PDU into one buffer with as few system calls as the kernel allows."""

    def recv(self, nr_bytes: int) -> bytearray:
        """`nr_bytes` bytes, or fewer when the peer closed the connection (as pynetdicom's recv)."""
        buffer = bytearray(nr_bytes)
        view = memoryview(buffer)
        read = 0
        sock = self.socket
        while read < nr_bytes:
            n = sock.recv_into(view[read:], nr_bytes - read)
            if not n:
                view.release()
                del buffer[read:]
                return buffer
            read += n
        return buffer


class _Waker:
    """The wake-up pipe of one DUL reactor, and its wait on that pipe and the association's socket."""

    def __init__(self, provider) -> None:
        self._read, self._write = os.pipe()
        os.set_blocking(self._read, False)
        os.set_blocking(self._write, False)
        self._socket = provider.socket
        self._outgoing = provider.to_provider_queue
        self._waiting = False
        weakref.finalize(self, _close_fds, self._read, self._write)

    def wake(self) -> None:
        """After a PDU is queued to send (or the reactor told to stop): end a wait in progress."""
        if self._waiting:
            with contextlib.suppress(BlockingIOError, OSError):
                os.write(self._write, b"\0")

    def wait(self, timeout: float) -> None:
        """Until the socket is readable, `wake` is called, or `timeout` passes.

        `_waiting` is set before the queue is looked at: a PDU queued before that look is seen
        by it, one queued after finds `_waiting` set and writes to the pipe.
        """
        holder = self._socket
        sock = holder.socket if holder is not None else None
        self._waiting = True
        try:
            if self._outgoing.queue:
                return
            if sock is None or sock.fileno() < 0:
                raise ValueError
            select.select([sock, self._read], [], [], timeout)
        except (OSError, ValueError):
            time.sleep(min(timeout, 0.001))
        finally:
            self._waiting = False
        with contextlib.suppress(BlockingIOError, OSError):
            os.read(self._read, 4096)


def _close_fds(*fds: int) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)


def _sleep(seconds: float) -> None:
    """`time.sleep` as pynetdicom's DUL sees it: on a tuned reactor thread, the waker's wait."""
    waker = getattr(threading.current_thread(), "_workstation_waker", None)
    if waker is None:
        time.sleep(seconds)
    else:
        waker.wait(seconds)


class _Signal:
    """Wakes a tuned association reactor when something it polls for has arrived."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def wake(self) -> None:
        self._event.set()

    def wait(self, timeout: float) -> None:
        self._event.wait(timeout)
        self._event.clear()


ASSOCIATION_POLL = 0.001
"""The sleep of pynetdicom's association reactor loop (association.py); other sleeps stay sleeps."""


def _association_sleep(seconds: float) -> None:
    signal = getattr(threading.current_thread(), "_workstation_signal", None)
    if signal is None or seconds != ASSOCIATION_POLL:
        time.sleep(seconds)
    else:
        signal.wait(IDLE_WAIT)


def _time_with(sleep) -> types.SimpleNamespace:
    shim = types.SimpleNamespace(**{name: getattr(time, name) for name in dir(time) if not name.startswith("_")})
    shim.sleep = sleep
    return shim


dul.time = _time_with(_sleep)
association.time = _time_with(_association_sleep)


def _waking(method, *wakers):
    def call(*args, **kwargs):
        result = method(*args, **kwargs)
        for waker in wakers:
            waker.wake()
        return result

    return call


def tune(assoc: Association) -> None:
    """Nagle off, the faster reader, the waking reactor: for one association, before it talks."""
    provider = assoc.dul
    holder = provider.socket
    if holder is None or holder.socket is None:
        return
    with contextlib.suppress(OSError):
        holder.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if type(holder) is AssociationSocket:
        holder.__class__ = FastAssociationSocket
    if getattr(provider, "_workstation_waker", None) is not None:
        return
    waker = _Waker(provider)
    provider.send_pdu = _waking(provider.send_pdu, waker)
    provider._run_loop_delay = IDLE_WAIT
    provider._workstation_waker = waker
    if assoc.is_acceptor:
        signal = _Signal()
        provider.kill_dul = _waking(provider.kill_dul, waker, signal)
        provider.to_user_queue.put = _waking(provider.to_user_queue.put, signal)
        assoc.dimse.msg_queue.put = _waking(assoc.dimse.msg_queue.put, signal)
        assoc.kill = _waking(assoc.kill, signal)
        assoc._workstation_signal = signal
    else:
        provider.kill_dul = _waking(provider.kill_dul, waker)
        assoc.dimse.get_msg = _not_from(assoc, assoc.dimse.get_msg)


def _not_from(reactor: threading.Thread, get_msg):
    """`get_msg` that finds nothing when the association's own reactor thread asks."""

    def call(block: bool = False):
        if threading.current_thread() is reactor:
            return None, None
        return get_msg(block)

    return call


def _on_connection_open(event) -> None:
    tune(event.assoc)


EVENT_HANDLERS = [(evt.EVT_CONN_OPEN, _on_connection_open)]
"""Bind these to every association (requestor: `ae.associate(evt_handlers=...)`, acceptor: `start_server`)."""


def with_tuning(handlers: list | None) -> list:
    """`handlers` plus the tuning handler."""
    return [*EVENT_HANDLERS, *(handlers or [])]
