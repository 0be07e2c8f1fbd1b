"""One window per home, with real processes: `workstation FOLDER` while a window is open on the same
home hands the folder to that window and exits; a crashed window's socket does not stop the next start."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PySide6.QtNetwork import QLocalServer

from tests.peers import free_port
from workstation.core.settings import Settings, save_settings
from workstation.services.single_instance import server_name

pytestmark = [pytest.mark.timeout(240), pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")]

GE = "dcm_qa_ct/In/GE"                                  # 28 images, patient QMNx85rKkkg
LOCALIZER = "dcm_qa_ct/In/Philips/S21570/S1000"         # 1 image, patient PLASTIC


def workstation(home: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "workstation", "--home", str(home), *args]


def gui_env() -> dict[str, str]:
    return dict(os.environ, QT_QPA_PLATFORM="offscreen")


def listeners(port: int) -> set[int]:
    """The processes holding a socket that listens on TCP `port` (from /proc)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as lines:
            for line in list(lines)[1:]:
                fields = line.split()
                if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:   # 0A: LISTEN
                    inodes.add(fields[9])
    owners = set()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
            if any(os.readlink(f"/proc/{pid}/fd/{fd}") in {f"socket:[{i}]" for i in inodes} for fd in fds):
                owners.add(int(pid))
        except OSError:
            continue
    return owners


def wait_for(check, what: str, proc: subprocess.Popen | None = None, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"{what}: the window exited with status {proc.returncode}")
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"{what}: not after {timeout:.0f} s")


def studies(home: Path) -> dict[str, int]:
    listed = subprocess.run(workstation(home, "list", "--json"), capture_output=True, text=True, timeout=60)
    return {s["PatientID"]: s["NumberOfStudyRelatedInstances"] for s in json.loads(listed.stdout or "[]")}


def test_a_second_start_hands_its_folder_to_the_open_window_and_exits(workstation_home, samples, tmp_path):
    home, port = workstation_home, free_port()
    save_settings(home, Settings(port=port))
    started: list[subprocess.Popen] = []

    def open_window(*paths: str) -> subprocess.Popen:
        proc = subprocess.Popen(workstation(home, *paths), env=gui_env(), stdout=subprocess.DEVNULL,
                                stderr=open(tmp_path / f"window{len(started)}.err", "w"))  # noqa: SIM115
        started.append(proc)
        return proc

    try:
        first = open_window()
        wait_for(lambda: listeners(port) == {first.pid}, "the first window's Storage SCP", first)

        second = subprocess.run(workstation(home, str(samples / GE)), env=gui_env(), capture_output=True, text=True,
                                timeout=60)
        assert second.returncode == 0 and second.stderr == "", second.stderr
        assert wait_for(lambda: studies(home).get("QMNx85rKkkg") == 28, "the first window imported the folder")
        assert listeners(port) == {first.pid} and first.poll() is None   # still the one window, on its port

        raised = subprocess.run(workstation(home), env=gui_env(), capture_output=True, text=True, timeout=60)
        assert raised.returncode == 0 and raised.stderr == ""            # no paths: the window comes forward
        assert listeners(port) == {first.pid}

        first.send_signal(signal.SIGKILL)   # a crash leaves its socket behind
        first.wait(10)
        wait_for(lambda: not listeners(port), "the crashed window's port to close")
        after_crash = open_window(str(samples / LOCALIZER))
        wait_for(lambda: listeners(port) == {after_crash.pid}, "a window after the crash", after_crash)
        assert wait_for(lambda: studies(home).get("PLASTIC") == 1, "the new window imported its folder")
    finally:
        for proc in started:
            if proc.poll() is None:
                proc.kill()
            proc.wait(10)
        QLocalServer.removeServer(server_name(home))   # a killed window leaves its socket in the temporary folder
