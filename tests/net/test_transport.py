"""The transport tuning: every association we open or accept has Nagle off, the one-buffer reader and a
reactor that waits for work instead of polling; requested associations survive back-to-back requests."""

from __future__ import annotations

import socket
import threading

import pytest
from pynetdicom import AE
from pynetdicom.sop_class import Verification

from tests.peers import WORKSTATION_AET, OrthancPeer, free_port
from workstation.core.model.node import Node
from workstation.core.net import transport
from workstation.core.net.association import associate
from workstation.core.net.storage_scp import StorageServer
from workstation.core.net.transport import IDLE_WAIT, FastAssociationSocket


def _nodelay(sock: socket.socket) -> int:
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)


def _tuned(assoc) -> bool:
    holder = assoc.dul.socket
    return (isinstance(holder, FastAssociationSocket) and _nodelay(holder.socket) == 1
            and assoc.dul._run_loop_delay == IDLE_WAIT and assoc.dul._workstation_waker is not None)


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


def test_recv_reads_exactly_what_is_asked_across_fragments_and_stops_at_close():
    left, right = socket.socketpair()
    try:
        holder = FastAssociationSocket.__new__(FastAssociationSocket)
        holder.socket = right
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


def test_back_to_back_requests_never_lose_a_response_to_the_reactor(orthanc: OrthancPeer):
    """pynetdicom's reactor could take the response to a request sent right after another one (its
    pause handshake races); with the faster reactor that aborted 1 association in 16 here."""
    node = Node("pacs", orthanc.aet, "127.0.0.1", orthanc.port, connect_timeout=3, network_timeout=10)
    for _ in range(20):
        with associate(node, WORKSTATION_AET, [Verification]) as assoc:
            for _ in range(40):
                assert assoc.send_c_echo().Status == 0x0000


def test_quiet_associations_wait_in_their_wakers_and_still_answer(tmp_path, orthanc: OrthancPeer):
    """While nothing is sent, the DUL reactors of open associations sit in their waker's wait on the socket
    and wake-up pipe (not in pynetdicom's 1 ms polling sleep), and a request after the quiet spell is
    answered. The CPU this saves is measured in benchmarks/bench_network_waits.py."""
    import time

    from workstation.core.cache import Cache

    node = Node("pacs", orthanc.aet, "127.0.0.1", orthanc.port, connect_timeout=3, network_timeout=10)
    port = free_port()
    own = Node("self", "WSSCP", "127.0.0.1", port, connect_timeout=3, network_timeout=10)
    with Cache(tmp_path / "ws") as cache, StorageServer(cache, "WSSCP", port, host="127.0.0.1"), \
            associate(node, WORKSTATION_AET, [Verification]) as pacs, \
            associate(own, "CALLER", [Verification]) as caller:
        wakers = [pacs.dul._workstation_waker, caller.dul._workstation_waker]
        assert all(w is not None for w in wakers)
        waiting = [0, 0]
        for _ in range(200):  # a sleep between looks is not a threshold: the count of looks is fixed
            time.sleep(0.002)
            for i, waker in enumerate(wakers):
                waiting[i] += waker._waiting
        assert min(waiting) >= 150, f"of 200 looks, the reactors were waiting for work in only {waiting}"
        assert pacs.send_c_echo().Status == 0x0000 and caller.send_c_echo().Status == 0x0000


def _printer_scp(port: int, events_sent: list):
    """A pynetdicom print SCP that sends N-EVENT-REPORTs on the association the SCU opened: while it
    handles each request (before answering it), and from another thread right after each N-SET is
    answered. (pynetdicom as an acceptor cannot send a request of its own while requests arrive, so
    the SCU here waits for the second report before its next request.)"""
    from pydicom.dataset import Dataset
    from pynetdicom import evt
    from pynetdicom.sop_class import BasicGrayscalePrintManagementMeta, Printer, PrinterInstance

    def report(assoc, info: str) -> None:
        ds = Dataset()
        ds.PrinterStatus = "NORMAL"
        ds.PrinterStatusInfo = info
        status, _ = assoc.send_n_event_report(ds, 1, Printer, PrinterInstance, msg_id=len(events_sent) + 100,
                                              meta_uid=BasicGrayscalePrintManagementMeta)
        events_sent.append((info, getattr(status, "Status", None)))

    def on_create(event):
        report(event.assoc, "DURING N-CREATE")
        ds = Dataset()
        ds.NumberOfCopies = "1"
        return 0x0000, ds

    def on_set(event):
        number = event.request.MessageID
        report(event.assoc, f"DURING N-SET {number}")
        threading.Thread(target=report, args=(event.assoc, f"AFTER N-SET {number}")).start()
        return 0x0000, event.attribute_list

    ae = AE("PRINTSCP")
    ae.add_supported_context(BasicGrayscalePrintManagementMeta)
    return ae.start_server(("127.0.0.1", port), block=False,
                           evt_handlers=[(evt.EVT_N_CREATE, on_create), (evt.EVT_N_SET, on_set)])


def test_event_reports_from_the_peer_reach_their_handler_and_every_request_gets_its_own_answer():
    """A film printer reports job and printer status with N-EVENT-REPORTs on the print SCU's association,
    while a request of ours waits for its answer or between two of them. Each must reach our handler
    and be answered, never be taken as the response to a request of ours."""
    from pydicom.dataset import Dataset
    from pydicom.uid import generate_uid
    from pynetdicom import evt
    from pynetdicom.sop_class import BasicFilmSession, BasicGrayscalePrintManagementMeta

    port = free_port()
    sent: list = []
    received: list[str] = []
    arrived = threading.Condition()
    server = _printer_scp(port, sent)
    node = Node("printer", "PRINTSCP", "127.0.0.1", port, connect_timeout=3, network_timeout=10)

    def on_event(event):
        with arrived:
            received.append(str(event.event_information.PrinterStatusInfo))
            arrived.notify_all()
        return 0x0000, None

    try:
        with associate(node, WORKSTATION_AET, [BasicGrayscalePrintManagementMeta],
                       evt_handlers=[(evt.EVT_N_EVENT_REPORT, on_event)]) as assoc:
            session = generate_uid()
            attributes = Dataset()
            attributes.NumberOfCopies = "1"   # pynetdicom sends no data set at all for an empty one
            status, _ = assoc.send_n_create(attributes, BasicFilmSession, session, msg_id=1,
                                            meta_uid=BasicGrayscalePrintManagementMeta)
            assert status.Status == 0x0000
            for msg_id in range(2, 22):
                change = Dataset()
                change.NumberOfCopies = str(msg_id)
                status, attributes = assoc.send_n_set(change, BasicFilmSession, session, msg_id=msg_id,
                                                      meta_uid=BasicGrayscalePrintManagementMeta)
                assert status.Status == 0x0000
                assert attributes.NumberOfCopies == msg_id   # this request's own answer
                with arrived:
                    assert arrived.wait_for(lambda n=msg_id: f"AFTER N-SET {n}" in received, timeout=5)
            assert assoc.is_established
    finally:
        server.shutdown()
    expected = ["DURING N-CREATE"] + [f"{when} N-SET {i}" for i in range(2, 22) for when in ("DURING", "AFTER")]
    assert received == expected
    assert [info for info, _ in sent] == expected and {status for _, status in sent} == {0x0000}


def test_a_request_from_the_peer_between_ours_is_served_on_a_requested_association():
    """The requested association's reactor is kept from responses meant for our requests, not from the
    peer's own requests: a C-ECHO the peer sends between two of ours is answered."""
    from pynetdicom import build_role, evt

    answers: list = []
    done = threading.Event()

    def on_echo(event):
        if done.is_set():
            return 0x0000            # our second echo: nothing to send back
        def echo_back():
            answers.append(event.assoc.send_c_echo(msg_id=99).Status)
            done.set()
        threading.Timer(0.2, echo_back).start()   # once this echo is answered: ours is not waiting then
        return 0x0000

    port = free_port()
    ae = AE("PEER")
    ae.add_supported_context(Verification, scu_role=True, scp_role=True)
    server = ae.start_server(("127.0.0.1", port), block=False, evt_handlers=[(evt.EVT_C_ECHO, on_echo)])
    node = Node("peer", "PEER", "127.0.0.1", port, connect_timeout=3, network_timeout=10)
    try:
        with associate(node, WORKSTATION_AET, [Verification],
                       ext_neg=[build_role(Verification, scu_role=True, scp_role=True)]) as assoc:
            assert assoc.send_c_echo(msg_id=1).Status == 0x0000
            assert done.wait(5)
            assert assoc.send_c_echo(msg_id=2).Status == 0x0000
    finally:
        server.shutdown()
    assert answers == [0x0000]


@pytest.mark.parametrize(("sop", "status"), [("1.2.3.45", 0x0000), ("1.2.3.4", 0xA700)],
                         ids=["odd-uid-success", "even-uid-out-of-resources"])
def test_a_store_response_written_directly_is_the_one_pynetdicom_encodes(sop, status):
    from pynetdicom.dimse_messages import C_STORE_RSP
    from pynetdicom.dimse_primitives import C_STORE

    rsp = C_STORE()
    rsp.MessageID = rsp.MessageIDBeingRespondedTo = 7
    rsp.AffectedSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    rsp.AffectedSOPInstanceUID = sop
    rsp.Status = status
    message = C_STORE_RSP()
    message.primitive_to_message(rsp)
    (pdata,) = message.encode_msg(5, 16382)
    assert [list(pdv) for pdv in pdata.presentation_data_value_list] == [
        [5, b"\x03" + transport.store_response("1.2.840.10008.5.1.4.1.1.2", sop, 7, status)]]
