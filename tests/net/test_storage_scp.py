"""The Storage SCP on threads and in receiver processes: pushes, callers, echo, a dead receiver, a busy port."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time

import pytest

from tests.peers import dcmtk, free_port, peer_env
from workstation.core.cache import Cache
from workstation.core.net.storage_scp import StorageServer

MODES = pytest.mark.parametrize("receivers", [0, 2], ids=["threads", "receiver-processes"])


def push(folder, port: int, calling: str = "STORESCU") -> subprocess.CompletedProcess:
    return subprocess.run([dcmtk("storescu"), "+sd", "-aet", calling, "-aec", "WSSCP", "127.0.0.1", str(port), str(folder)],
                          capture_output=True, text=True, env=peer_env())


@MODES
def test_a_push_is_committed_before_it_is_answered(tmp_path, samples, receivers):
    port = free_port()
    heard: list[tuple[str, str]] = []
    with Cache(tmp_path / "ws") as cache, StorageServer(cache, "WSSCP", port, host="127.0.0.1",
                                                        receivers=receivers) as server:
        server.subscribe(lambda calling, sop, size: heard.append((calling, sop)))
        done = push(samples / "dcm_qa_ct/In/GE", port)
        assert done.returncode == 0, done.stderr
        # storescu has every answer: each instance was in the cache before its Success went out
        assert server.received == 28 and len(heard) == 28 and {c for c, _ in heard} == {"STORESCU"}
        assert cache.studies()[0].NumberOfStudyRelatedInstances == 28
        assert cache.verify().ok
        echo = subprocess.run([dcmtk("echoscu"), "-aec", "WSSCP", "127.0.0.1", str(port)], capture_output=True, env=peer_env())
        assert echo.returncode == 0


@MODES
def test_each_association_is_heard_opened_and_ended_once_what_it_brought_is_committed(tmp_path, samples, receivers):
    port = free_port()
    heard: list[str] = []
    associations: list[tuple[str, bool, int]] = []
    with Cache(tmp_path / "ws") as cache, StorageServer(cache, "WSSCP", port, host="127.0.0.1", receivers=receivers,
                                                        allowed_calling_aets=["STORESCU", "ECHOSCU"]) as server:
        server.subscribe(lambda calling, sop, size: heard.append(sop))
        server.subscribe_associations(lambda calling, opened: associations.append((calling, opened, len(heard))))
        assert push(samples / "dcm_qa_ct/In/GE", port).returncode == 0
        assert push(samples / "dcm_qa_ct/In/GE", port, calling="INTRUDER").returncode != 0   # never established
        echo = subprocess.run([dcmtk("echoscu"), "-aet", "ECHOSCU", "-aec", "WSSCP", "127.0.0.1", str(port)],
                              capture_output=True, env=peer_env())
        assert echo.returncode == 0
        deadline = time.monotonic() + 10
        while len(associations) < 4 and time.monotonic() < deadline:
            time.sleep(0.02)
    assert associations == [("STORESCU", True, 0), ("STORESCU", False, 28), ("ECHOSCU", True, 28),
                            ("ECHOSCU", False, 28)]


@MODES
def test_only_the_allowed_calling_ae_titles_may_push(tmp_path, samples, receivers):
    port = free_port()
    with Cache(tmp_path / "ws") as cache, StorageServer(cache, "WSSCP", port, host="127.0.0.1", receivers=receivers,
                                                        allowed_calling_aets=["CT1"]) as server:
        refused = push(samples / "dcm_qa_ct/In/GE", port, calling="INTRUDER")
        assert refused.returncode != 0 and "Rejected" in refused.stderr
        assert cache.studies() == [] and server.received == 0
        accepted = push(samples / "dcm_qa_ct/In/GE", port, calling="CT1")
        assert accepted.returncode == 0, accepted.stderr
        assert server.received == 28


def test_a_receiver_that_dies_is_replaced_and_receiving_goes_on(tmp_path, samples):
    port = free_port()
    with Cache(tmp_path / "ws") as cache, StorageServer(cache, "WSSCP", port, host="127.0.0.1", receivers=2) as server:
        victims = server.receiver_pids()
        assert len(victims) == 2
        os.kill(victims[0], signal.SIGKILL)
        deadline = time.monotonic() + 10
        while (len(server.receiver_pids()) < 2 or victims[0] in server.receiver_pids()) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert victims[0] not in server.receiver_pids() and len(server.receiver_pids()) == 2
        done = push(samples / "dcm_qa_ct/In/GE", port)
        assert done.returncode == 0, done.stderr
        assert server.received == 28 and cache.verify().ok


@MODES
def test_a_busy_port_is_reported_in_words(tmp_path, receivers):
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    try:
        with Cache(tmp_path / "ws") as cache:
            server = StorageServer(cache, "WSSCP", busy.getsockname()[1], host="127.0.0.1", receivers=receivers)
            with pytest.raises(OSError, match=r"cannot listen on port \d+: .*is another workstation or storescp using it"):
                server.start()
            assert server.receiver_pids() == []
    finally:
        busy.close()


@MODES
def test_malformed_pushes_are_refused_with_their_status_and_heard_of(tmp_path, receivers, monkeypatch):
    from pydicom.uid import ImplicitVRLittleEndian

    from tests.net.test_cli_net import _encode, _instance, _part10, _send_raw

    files = [_part10(tmp_path / "explicit.dcm", _encode(_instance("1.2.826.0.1.3680043.10.1.2.1"), False),
                     ImplicitVRLittleEndian, "1.2.826.0.1.3680043.10.1.2.1"),
             _part10(tmp_path / "other.dcm", _encode(_instance("1.2.826.0.1.3680043.10.1.2.2"), True),
                     ImplicitVRLittleEndian, "1.2.826.0.1.3680043.10.1.2.3")]
    port = free_port()
    refused: list[tuple[str, int]] = []
    with Cache(tmp_path / "ws") as cache, StorageServer(cache, "WORKSTATION", port, host="127.0.0.1",
                                                        receivers=receivers) as server:
        server.subscribe_refused(lambda calling, sop, status, reason: refused.append((sop, status)))
        assert _send_raw(port, files, monkeypatch) == [0xC000, 0xA900]
        assert cache.studies() == [] and server.received == 0
    assert refused == [("1.2.826.0.1.3680043.10.1.2.1", 0xC000), ("1.2.826.0.1.3680043.10.1.2.3", 0xA900)]


def test_out_of_resources_is_answered_only_for_resources():
    import errno
    import sqlite3

    from workstation.core.cache import CacheError
    from workstation.core.net.received import failure_status

    assert failure_status(OSError(errno.ENOSPC, "No space left on device")) == 0xA700
    assert failure_status(OSError(errno.EDQUOT, "Disk quota exceeded")) == 0xA700
    assert failure_status(sqlite3.OperationalError("database or disk is full")) == 0xA700
    assert failure_status(OSError(errno.EACCES, "Permission denied")) == 0xC001
    assert failure_status(OSError(errno.EIO, "Input/output error")) == 0xC001
    assert failure_status(CacheError("missing SOPInstanceUID")) == 0xC000
