"""Child processes of the workstation (import and retrieval workers, Storage SCP receivers): how they
start, and that they die with it.

A kill -9 of the workstation must not leave a child staging files or holding an association open.
Forking is cheap but safe only from a process without other threads; the GUI, whose Qt threads
Python cannot see, says so once with `use_start_method("forkserver")` before it starts any child.
"""

from __future__ import annotations

import contextlib
import os
import sys

PRELOAD = ["workstation.core.net.fetch_worker", "workstation.core.net.receiver"]
"""What a fork server imports once, so that each child it forks starts warm."""

_start_method: str | None = None


def use_start_method(method: str | None) -> None:
    """Start children with `method` ("fork" or "forkserver") from now on; None: decide per start."""
    if method not in (None, "fork", "forkserver"):
        raise ValueError(f"unknown start method {method!r}")
    global _start_method
    _start_method = method


def fork_is_safe() -> bool:
    """Whether a child may be forked from this process now: Linux (children die with us), no start
    method chosen other than fork, and no other Python thread running."""
    import multiprocessing
    import threading

    return (sys.platform == "linux" and _start_method in (None, "fork")
            and threading.active_count() == 1 and "fork" in multiprocessing.get_all_start_methods())


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
    """The multiprocessing context to start a child with: fork where `fork_is_safe` (milliseconds),
    else a fork server that imported pydicom and pynetdicom once."""
    import multiprocessing

    if _start_method == "fork" or (_start_method is None and fork_is_safe()):
        return multiprocessing.get_context("fork")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD)
    return context
