"""Socket and reactor settings for every association the workstation opens or accepts.

Profiling a C-GET of a CT series from Orthanc on loopback showed the time going to pynetdicom's
transport, not to bandwidth: Nagle's algorithm left on, sockets read 4 KiB per system call, the
DUL reactor sleeping 1 ms whenever it finds nothing to do, and standard logging handlers building
an event for every PDU. `EVENT_HANDLERS` fixes the first three per association through the
connection-open event (both roles); the pynetdicom settings below fix the last.
"""

from __future__ import annotations

import contextlib
import socket

from pynetdicom import _config, evt
from pynetdicom.association import Association
from pynetdicom.transport import AssociationSocket

REACTOR_DELAY = 0.0001
"""Idle sleep of the DUL reactor (pynetdicom's default is 1 ms). It sets the latency of every reply
we send and of noticing every PDU that arrives; 0.1 ms is what pynetdicom uses for its own DIMSE
polling. Zero would spin a core per open association."""

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


def tune(assoc: Association) -> None:
    """Nagle off, the faster reader, the shorter reactor sleep: for one association, before it talks."""
    holder = assoc.dul.socket
    if holder is None or holder.socket is None:
        return
    with contextlib.suppress(OSError):
        holder.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if type(holder) is AssociationSocket:
        holder.__class__ = FastAssociationSocket
    assoc.dul._run_loop_delay = REACTOR_DELAY


def _on_connection_open(event) -> None:
    tune(event.assoc)


EVENT_HANDLERS = [(evt.EVT_CONN_OPEN, _on_connection_open)]
"""Bind these to every association (requestor: `ae.associate(evt_handlers=...)`, acceptor: `start_server`)."""


def with_tuning(handlers: list | None) -> list:
    """`handlers` plus the tuning handler."""
    return [*EVENT_HANDLERS, *(handlers or [])]
