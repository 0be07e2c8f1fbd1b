"""A minimal event for Qt-free models: widgets and other models connect callbacks and hear changes.

Everything happens on the caller's thread (the GUI thread in the window); a callback that raises
does not stop the others from hearing the event.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)


class Event:
    """`connect(callback)`, `disconnect(callback)`, `emit(*args)`; callbacks run in connection order."""

    __slots__ = ("_callbacks", "_blocked")

    def __init__(self) -> None:
        self._callbacks: list[Callable[..., Any]] = []
        self._blocked = 0

    def connect(self, callback: Callable[..., Any]) -> Callable[..., Any]:
        if callback not in self._callbacks:
            self._callbacks.append(callback)
        return callback

    def disconnect(self, callback: Callable[..., Any] | None = None) -> None:
        """One callback, or all of them with None."""
        if callback is None:
            self._callbacks.clear()
        elif callback in self._callbacks:
            self._callbacks.remove(callback)

    def emit(self, *args: Any) -> None:
        if self._blocked:
            return
        for callback in list(self._callbacks):
            try:
                callback(*args)
            except Exception:
                log.exception("a listener of an event failed")

    def __len__(self) -> int:
        return len(self._callbacks)
