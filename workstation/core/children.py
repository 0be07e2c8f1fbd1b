"""Child processes of the workstation (import and retrieval workers, Storage SCP receivers) die with it.

A kill -9 of the workstation must not leave a child staging files or holding an association open.
"""

from __future__ import annotations

import contextlib
import os
import sys


def as_child(expected: int | None = None) -> None:
    """Set up a child process: Ctrl-C is left to the parent (which stops its children in order), and
    Linux SIGKILLs the child when its parent dies (PR_SET_PDEATHSIG); exit at once when the parent
    (`expected`, else the one we have now) is already gone."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.platform != "linux":
        return
    import ctypes

    parent = os.getppid() if expected is None else expected
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)
    if os.getppid() != parent:
        os._exit(1)


def start_context():
    """How to start a child: fork from a single-threaded process without Qt (milliseconds, and safe
    there), else from a fork server that imported pydicom and pynetdicom once. Qt's own threads are
    not Python threads, so `threading.active_count` does not see them."""
    import multiprocessing
    import threading

    if (threading.active_count() == 1 and "PySide6.QtCore" not in sys.modules
            and "fork" in multiprocessing.get_all_start_methods()):
        return multiprocessing.get_context("fork")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["workstation.core.net.fetch_worker", "workstation.core.net.receiver"])
    return context
