"""The real peers start, answer C-ECHO, hold the preloaded studies and leave no process behind."""

from __future__ import annotations

import os

from tests.peers import OrthancPeer, PrintSCP, c_echo


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); read its state.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_orthanc_fixture_answers_echo_and_holds_the_samples(orthanc: OrthancPeer):
    assert c_echo(orthanc.aet, orthanc.port)
    # 3 TCIA patients x 2 studies, plus the phantom's 2 studies and the GE head.
    assert len(orthanc.study_uids()) == 9
    assert orthanc.instance_count() == 18 + 170


def test_orthanc_rejects_an_unknown_called_ae(orthanc: OrthancPeer):
    assert not c_echo("NOT-ORTHANC", orthanc.port)


def test_orthanc_stops_and_leaves_no_process(tmp_path):
    peer = OrthancPeer(tmp_path / "o")
    peer.start()
    pid = peer.proc.pid
    assert c_echo(peer.aet, peer.port)
    peer.stop()
    assert not _alive(pid)
    assert not c_echo(peer.aet, peer.port, timeout=1)


def test_print_scp_answers_echo_and_stops(tmp_path):
    peer = PrintSCP(tmp_path / "p")
    peer.start()
    pid = peer.proc.pid
    try:
        assert c_echo(peer.aet, peer.port)
        assert peer.stored_prints() == []
    finally:
        peer.stop()
    assert not _alive(pid)
