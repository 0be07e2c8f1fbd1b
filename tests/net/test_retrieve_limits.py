"""A retrieval keeps to the node's limit on concurrent associations and reuses its associations.

Orthanc runs with DicomThreadsCount 2 behind a TCP relay of the test's own that counts the
connections open at once; the relay is a plain byte pump, so Orthanc answers everything itself.
"""

from __future__ import annotations

import socket
import threading

import pytest

from tests.peers import ORTHANC_BIN, WORKSTATION_AET, OrthancPeer, require_binary, running
from workstation.core.cache import Cache, QueryFilter
from workstation.core.model.node import Node
from workstation.core.net.find import find
from workstation.core.net.retrieve import plan, retrieve

PHANTOM = ("dcm_qa_ct", "In", "Philips", "S21570")


class LimitedOrthanc(OrthancPeer):
    def config(self) -> dict:
        return {**super().config(), "DicomThreadsCount": 2}


class CountingRelay:
    """Relays TCP connections from a loopback port to the PACS; counts them, and how many were open at once."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.lock = threading.Lock()
        self.open = 0
        self.most_open = 0
        self.total = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def reset(self) -> None:
        with self.lock:
            self.most_open = self.open
            self.total = 0

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            with self.lock:
                self.open += 1
                self.total += 1
                self.most_open = max(self.most_open, self.open)
            done = threading.Barrier(2, action=lambda c=client, u=upstream: self._closed(c, u))
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst, done), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, done: threading.Barrier) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        for sock in (src, dst):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        done.wait()

    def _closed(self, *socks: socket.socket) -> None:
        for sock in socks:
            sock.close()
        with self.lock:
            self.open -= 1

    def close(self) -> None:
        self.listener.close()


@pytest.fixture(scope="module")
def limited(tmp_path_factory, samples):
    require_binary(ORTHANC_BIN, "orthanc")
    with running(LimitedOrthanc(tmp_path_factory.mktemp("limited"))) as peer:
        peer.upload(p for p in sorted(samples.joinpath(*PHANTOM).rglob("*")) if p.is_file())
        relay = CountingRelay(peer.port)
        yield peer, relay
        relay.close()


def _study(node: Node) -> tuple[str, str]:
    study = next(iter(find(node, WORKSTATION_AET, "study", QueryFilter(PatientID="PLASTIC")))).StudyInstanceUID
    big = max(find(node, WORKSTATION_AET, "series", QueryFilter(StudyInstanceUID=study)),
              key=lambda s: s.NumberOfSeriesRelatedInstances)
    return study, big.SeriesInstanceUID


@pytest.mark.parametrize(("processes", "most"), [(True, 2), (False, 1)], ids=["worker-processes", "threads"])
def test_a_retrieval_never_holds_more_associations_than_the_node_allows(limited, tmp_path, processes, most):
    """Threads fetch the two series whole (two units), worker processes cut the big one to fill the lanes."""
    peer, relay = limited
    node = Node("pacs", peer.aet, "127.0.0.1", relay.port, network_timeout=15, max_associations=most)
    study, _ = _study(node)
    relay.reset()
    with Cache(tmp_path / "ws") as cache:
        report = retrieve(node, WORKSTATION_AET, cache, study, associations=4, processes=processes)
    assert (report.completed, report.missing, report.errors) == (141, [], [])
    assert relay.most_open == most


def test_the_lanes_keep_their_associations_from_piece_to_piece(limited, tmp_path):
    """The series is cut into more pieces than there are lanes, yet each lane connects once, and the
    lanes that negotiate while the plan lists leave room for the plan's own association."""
    peer, relay = limited
    node = Node("pacs", peer.aet, "127.0.0.1", relay.port, network_timeout=15, max_associations=3)
    study, series = _study(node)
    with Cache(tmp_path / "ws") as cache:
        pieces = plan(node, WORKSTATION_AET, cache, study, [series], 3, split=True).units
        assert len(pieces) > 3
        relay.reset()
        report = retrieve(node, WORKSTATION_AET, cache, study, series_uids=[series], associations=8)
    assert (report.completed, report.missing, report.errors) == (140, [], [])
    searches = 1   # one association for the plan's three: the series, the study's SOP classes, the instances
    assert relay.total == searches + 3 and relay.most_open == 3
