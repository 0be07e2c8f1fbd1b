"""Cancellation and progress for long jobs, shared by the CLI, the services and the tests.

Every long job takes a `CancelToken` and a `Progress` callback, so the same core code runs
under a terminal progress bar, a Qt worker with a cancel button, or a test.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

Progress = Callable[[int, int, str], None]
"""progress(done, total, message); total may be 0 when unknown."""


class Cancelled(Exception):
    """Raised inside a job when its token was cancelled."""


class CancelToken:
    """A thread-safe flag a job polls between items."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def raise_if_cancelled(self) -> None:
        if self._event.is_set():
            raise Cancelled()


def no_progress(done: int, total: int, message: str) -> None:
    """The default progress callback: report nothing."""
