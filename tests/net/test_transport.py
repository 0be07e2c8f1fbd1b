"""The transport tuning: every association we open or accept has Nagle off, the one-buffer reader and the short reactor sleep."""

from __future__ import annotations

import socket
import threading

from pynetdicom import AE
from pynetdicom.sop_class import Verification

from tests.peers import WORKSTATION_AET, OrthancPeer, free_port
from workstation.core.net.association import associate
from workstation.core.net.node import Node
from workstation.core.net.storage_scp import StorageServer
from workstation.core.net.transport import REACTOR_DELAY, FastAssociationSocket, tune


def _nodelay(sock: socket.socket) -> int:
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)


def _tuned(assoc) -> bool:
    holder = assoc.dul.socket
    return (isinstance(holder, FastAssociationSocket) and _nodelay(holder.socket) == 1
            and assoc.dul._run_loop_delay == REACTOR_DELAY)


def test_requested_associations_are_tuned(orthanc: OrthancPeer):
    node = Node("pacs", orthanc.aet, "127.0.0.1", orthanc.port, connect_timeout=3, network_timeout=10)
    with associate(node, WORKSTATION_AET, [Verification]) as assoc:
        assert _tuned(assoc)
        assert assoc.send_c_echo().Status == 0x0000


def test_accepted_associations_are_tuned(tmp_path):
    from workstation.core.cache import Cache

    port = free_port()
    with Cache(tmp_path / "ws") as cache, StorageServer(cache, "WSSCP", port, host="127.0.0.1") as server:
        ae = AE("CALLER")
        ae.add_requested_context(Verification)
        assoc = ae.associate("127.0.0.1", port, ae_title="WSSCP")
        try:
            assert assoc.is_established
            accepted = server._server.active_associations
            assert accepted and all(_tuned(a) for a in accepted)
            assert assoc.send_c_echo().Status == 0x0000
        finally:
            assoc.release()


class _Holder:
    """Just enough of an association for tune() and FastAssociationSocket.recv."""

    def __init__(self, sock: socket.socket) -> None:
        from pynetdicom.transport import AssociationSocket

        self.dul = type("Dul", (), {})()
        holder = AssociationSocket.__new__(AssociationSocket)
        holder.socket = sock
        self.dul.socket = holder
        self.dul._run_loop_delay = 0.001


def test_recv_reads_exactly_what_is_asked_across_fragments_and_stops_at_close():
    left, right = socket.socketpair()
    try:
        fake = _Holder(right)
        tune(fake)
        holder = fake.dul.socket
        assert isinstance(holder, FastAssociationSocket) and fake.dul._run_loop_delay == REACTOR_DELAY
        payload = bytes(range(256)) * 300

        def send_in_pieces():
            for start in range(0, len(payload), 7000):
                left.sendall(payload[start:start + 7000])
            left.sendall(b"tail")
            left.close()

        sender = threading.Thread(target=send_in_pieces)
        sender.start()
        assert holder.recv(len(payload)) == payload
        assert holder.recv(100) == b"tail"
        sender.join()
    finally:
        right.close()
