"""What a user reads when a node cannot be used, against real Orthancs: each failure in its own words.

Orthanc treats a calling AE title it does not know in two ways: with DicomAlwaysAllowEcho/Store
off it rejects the association ("calling AE title not recognised"); with them on (the session
fixture) it accepts the association and C-ECHO, and aborts it at the first C-FIND. Neither is a
timeout, and neither may be reported as one.
"""

from __future__ import annotations

import pytest

from tests.peers import WORKSTATION_AET, OrthancPeer
from workstation.core.cache import Cache
from workstation.core.cache.query import QueryFilter
from workstation.core.model.node import Node
from workstation.core.net.association import AssociationRejected, ConnectionFailed, NetworkError
from workstation.core.net.echo import echo
from workstation.core.net.find import find
from workstation.core.net.retrieve import retrieve

STRANGER = "STRANGER"   # an AE title neither Orthanc knows


def node_of(peer: OrthancPeer, aet: str | None = None) -> Node:
    return Node("pacs", aet or peer.aet, "127.0.0.1", peer.port, connect_timeout=3, network_timeout=10)


def test_a_pacs_that_rejects_our_ae_title_says_so_and_what_to_do(strict_orthanc):
    node = node_of(strict_orthanc)
    assert echo(node, WORKSTATION_AET) > 0   # the PACS works for an AE title it knows
    for attempt in (lambda: echo(node, STRANGER), lambda: list(find(node, STRANGER, "study", QueryFilter()))):
        with pytest.raises(AssociationRejected) as info:
            attempt()
        message = str(info.value)
        assert "rejected the association: Calling AE title not recognised" in message
        assert f"our AE title {STRANGER!r}" in message and "add it" in message
        assert "did not answer" not in message


def test_a_pacs_that_aborts_an_unknown_caller_is_not_said_to_be_silent(orthanc, tmp_path):
    node = node_of(orthanc)
    assert echo(node, STRANGER) > 0          # Orthanc lets anyone C-ECHO...
    with pytest.raises(NetworkError) as info:  # ...and aborts the search of an AE title it does not know
        list(find(node, STRANGER, "study", QueryFilter()))
    message = str(info.value)
    assert "aborted the association instead of answering the search" in message
    assert f"add our AE title {STRANGER!r}" in message and "did not answer" not in message
    cache = Cache(tmp_path / "home")
    try:
        with pytest.raises(NetworkError, match="aborted the association") as info:
            retrieve(node, STRANGER, cache, orthanc.study_uids()[0], method="get", associations=1)
        assert "did not answer" not in str(info.value)
    finally:
        cache.close()


def test_a_host_name_that_cannot_be_found_is_said_in_words():
    node = Node("far", "FAR", "no-such-host.invalid", 104, connect_timeout=3, network_timeout=5)
    for attempt in (lambda: echo(node, WORKSTATION_AET), lambda: list(find(node, WORKSTATION_AET, "study", QueryFilter()))):
        with pytest.raises(ConnectionFailed) as info:
            attempt()
        message = str(info.value)
        assert message == ("the host name 'no-such-host.invalid' of node far could not be found: "
                           "check the node's host")
        assert "Errno" not in message
