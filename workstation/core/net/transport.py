"""Tuning of pynetdicom's transport for the workstation's associations, installed by one explicit call.

pynetdicom polls: its reactors sleep a millisecond between looks at the socket and their queues,
sockets keep Nagle's algorithm and read 4 KiB per call, and standard handlers log every PDU.
`install()` (called once by the CLI, the app and each child process) makes the reactors of tuned
associations wait for work instead; `tune(assoc)`, bound through `with_tuning(handlers)` to each
association we open or accept, sets its socket and reactors, and writes its C-STORE responses
directly. Importing this module changes nothing.

It relies on pynetdicom internals (see `UPSTREAM_SHAPES`), so pynetdicom is pinned to the minor
version it was written for and tests/net/test_transport_canary.py fails when any shape changes.
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

from pynetdicom import _config, association, dul, evt
from pynetdicom.association import Association
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.pdu_primitives import P_DATA
from pynetdicom.transport import AssociationSocket

WRITTEN_FOR = "3.0"
"""The pynetdicom minor version whose internals this module was written against (pyproject pins it)."""

IDLE_WAIT = 0.02
"""Longest wait of a tuned DUL reactor with nothing to do; it wakes at once for a PDU in either
direction, so this only bounds how late it notices its timers (ARTIM, in seconds)."""

ASSOCIATION_POLL = 0.001
"""The sleep of pynetdicom's association reactor loop (`Association._run_reactor`); only that one
becomes a wait for work, other sleeps stay sleeps."""

UPSTREAM_SHAPES = {
    "pynetdicom.dul.DULServiceProvider.run_reactor": ("time.sleep(self._run_loop_delay)",),
    "pynetdicom.dul.DULServiceProvider.send_pdu": ("self.to_provider_queue.put(primitive)",),
    "pynetdicom.dul.DULServiceProvider.kill_dul": ("self._kill_thread = True",),
    "pynetdicom.association.Association._run_reactor": (
        f"time.sleep({ASSOCIATION_POLL})", "self._reactor_checkpoint.wait()",
        "self.dimse.get_msg(block=False)", "self._serve_request(msg, cast(int, context_id))"),
    "pynetdicom.association.Association.send_n_set": (
        "self._reactor_checkpoint.clear()", "while not self._is_paused:", "self.dimse.get_msg(block=True)",
        "self._reactor_checkpoint.set()"),
    "pynetdicom.dimse.DIMSEServiceProvider.receive_primitive": (
        "isinstance(d_primitive, N_EVENT_REPORT) and d_primitive.is_valid_request",
        "target=make_target(self.assoc._serve_request)"),
    "pynetdicom.transport.AssociationSocket.recv": ("def recv(self, nr_bytes: int) -> bytearray:",),
    "pynetdicom.transport.RequestHandler.handle": ("evt.EVT_CONN_OPEN",),
    "pynetdicom.transport.RequestHandler._create_association": ("deepcopy(self.server.contexts)",),
    "pynetdicom.transport.AssociationServer.__init__": ("self.contexts = contexts",),
    "pynetdicom.dimse.DIMSEServiceProvider.send_msg": (
        "evt.trigger(self.assoc, evt.EVT_DIMSE_SENT", "dimse_msg.encode_msg(context_id, self.maximum_pdu_size)",
        "self.dul.send_pdu(pdata)"),
    "pynetdicom.association.Association._c_store_scp": (
        "rsp.MessageIDBeingRespondedTo = req.MessageID", "rsp.Status = status",
        "self.dimse.send_msg(rsp, cast(int, context.context_id))"),
    "pynetdicom.dimse_messages": ("".join(f'\n        "{k}",' for k in (
        "CommandGroupLength", "AffectedSOPClassUID", "CommandField", "MessageIDBeingRespondedTo",
        "CommandDataSetType", "Status", "AffectedSOPInstanceUID")).join(('"C-STORE-RSP": (', "")),),
}
"""Code in pynetdicom that the tuning relies on, by qualified name: text each must still contain."""

_installed = False
_install_lock = threading.Lock()


def install() -> None:
    """Let tuned associations' reactors wait for work, and keep pynetdicom's per-PDU logging handlers
    unbound. Idempotent; associations not tuned keep pynetdicom's own behaviour."""
    global _installed
    with _install_lock:
        if _installed:
            return
        dul.time = _time_with(_dul_sleep)
        association.time = _time_with(_association_sleep)
        # The standard handlers build an event and log lines for every PDU and DIMSE message (and a
        # pretty-printed identifier per C-FIND response) even when nothing reads them.
        _config.LOG_HANDLER_LEVEL = "none"
        _config.LOG_REQUEST_IDENTIFIERS = False
        _config.LOG_RESPONSE_IDENTIFIERS = False
        _installed = True


def installed() -> bool:
    return _installed


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


def _dul_sleep(seconds: float) -> None:
    """`time.sleep` as pynetdicom's DUL module sees it: on a tuned reactor thread, the waker's wait."""
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


def _waking(method, *wakers):
    def call(*args, **kwargs):
        result = method(*args, **kwargs)
        for waker in wakers:
            waker.wake()
        return result

    return call


def tune(assoc: Association) -> None:
    """Nagle off and the faster reader for one association, before it talks; with `install()` done,
    also reactors that wait for work."""
    provider = assoc.dul
    holder = provider.socket
    if holder is None or holder.socket is None:
        return
    with contextlib.suppress(OSError):
        holder.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if type(holder) is AssociationSocket:
        holder.__class__ = FastAssociationSocket
    if getattr(assoc.dimse, "_workstation_store_rsp", None) is None:
        assoc.dimse.send_msg = _store_responses_written_directly(assoc.dimse, assoc.dimse.send_msg)
        assoc.dimse._workstation_store_rsp = True
    if not _installed or getattr(provider, "_workstation_waker", None) is not None:
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
        assoc.dimse.get_msg = _requestor_get_msg(assoc, assoc.dimse.get_msg)


def _requestor_get_msg(assoc: Association, get_msg):
    """`dimse.get_msg` for a requested association: its own reactor finds nothing while a request of ours
    is in progress.

    A request pauses the association's reactor (it clears `_reactor_checkpoint`, then waits for
    `_is_paused`), but right after the previous request the reactor may still be leaving its wait
    with `_is_paused` stale, and then take the new request's response as a request of its own
    ("Received unexpected ... service message", a DIMSE timeout, an abort; 1 association in 16
    over 50 C-ECHOs with the faster reactor). Between our requests the reactor still serves the
    peer's requests. (N-EVENT-REPORT requests, a film printer's status, never reach this queue:
    pynetdicom serves them on a thread of their own.)
    """

    def call(block: bool = False):
        if threading.current_thread() is assoc and not assoc._reactor_checkpoint.is_set():
            return None, None
        return get_msg(block)

    return call


def store_response(sop_class: str, sop_instance: str, message_id: int, status: int) -> bytes:
    """The command set of a C-STORE response with a plain status, as pynetdicom encodes it (implicit VR LE)."""
    def element(number: int, value: bytes) -> bytes:
        return b"\x00\x00" + number.to_bytes(2, "little") + len(value).to_bytes(4, "little") + value

    def uid(value: str) -> bytes:
        raw = value.encode("ascii")
        return raw + b"\x00" if len(raw) % 2 else raw

    body = b"".join((
        element(0x0002, uid(sop_class)), element(0x0100, b"\x01\x80"), element(0x0120, message_id.to_bytes(2, "little")),
        element(0x0800, b"\x01\x01"), element(0x0900, status.to_bytes(2, "little")), element(0x1000, uid(sop_instance)),
    ))
    return element(0x0000, len(body).to_bytes(4, "little")) + body


def _store_responses_written_directly(dimse, send_msg):
    """`dimse.send_msg` that writes a plain C-STORE response's P-DATA itself.

    pynetdicom builds each response through pydicom datasets (about 0.3 ms per received instance,
    a seventh of a retrieval worker's time); the bytes are the same (a test compares them).
    Anything else, and responses with a comment or an offending element, go the usual way; the
    EVT_DIMSE_SENT event is not triggered for the direct ones (nothing of ours binds it).
    """
    def call(primitive, context_id: int) -> None:
        if (type(primitive) is C_STORE and primitive.MessageIDBeingRespondedTo is not None
                and isinstance(primitive.Status, int) and primitive.ErrorComment is None
                and primitive.OffendingElement is None and primitive.AffectedSOPClassUID
                and primitive.AffectedSOPInstanceUID):
            pdata = P_DATA()
            pdata.presentation_data_value_list = [[context_id, b"\x03" + store_response(
                str(primitive.AffectedSOPClassUID), str(primitive.AffectedSOPInstanceUID),
                primitive.MessageIDBeingRespondedTo, primitive.Status)]]
            dimse.dul.send_pdu(pdata)
            return
        send_msg(primitive, context_id)

    return call


class SharedContexts(list):
    """Supported presentation contexts that accepted associations share instead of deep-copying.

    pynetdicom deep-copies a server's contexts for every association it accepts; for a Storage SCP
    (170 SOP classes x 45 transfer syntaxes) that rebuilds and re-validates 7,650 UIDs each time.
    Negotiation only reads the acceptor's contexts, so each association gets a new list of the same
    context objects.
    """

    def __deepcopy__(self, memo) -> list:
        return list(self)


def _on_connection_open(event) -> None:
    tune(event.assoc)


EVENT_HANDLERS = [(evt.EVT_CONN_OPEN, _on_connection_open)]
"""Bind these to every association (requestor: `ae.associate(evt_handlers=...)`, acceptor: `start_server`)."""


def with_tuning(handlers: list | None) -> list:
    """`handlers` plus the tuning handler."""
    return [*EVENT_HANDLERS, *(handlers or [])]
