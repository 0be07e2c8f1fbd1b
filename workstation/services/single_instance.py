"""One window per home: a second `workstation` on the same home hands its paths to the running window.

The window listens on a local socket named from the user and the home folder (hashed, so any path
fits); a later start on that home connects before it builds anything, sends its paths as one JSON
line, waits for the window's answer and exits, so no second window fights the first for the
Storage SCP port or the cache. A socket that a crashed window left behind answers no one: it is
removed and the new start listens itself. Qt's QtNetwork (non-GUI, like QtCore) does the talking.
"""

from __future__ import annotations

import enum
import hashlib
import json
import logging
import os
from pathlib import Path

from PySide6.QtCore import QObject, Signal
from PySide6.QtNetwork import QLocalServer, QLocalSocket

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_MS = 1000
ANSWER_TIMEOUT_MS = 15000
"""A window that is starting answers once its event loop runs; building it can take seconds on a busy machine."""


class HandOver(enum.Enum):
    DONE = "done"                # the running window took the paths (or was raised)
    NO_WINDOW = "no window"      # nobody listens: this start opens the window
    NO_ANSWER = "no answer"      # a window holds the socket but did not answer


def server_name(home: Path) -> str:
    """The local socket's name for `home`: per user (other users' windows are theirs) and per home folder."""
    user = str(os.getuid()) if hasattr(os, "getuid") else os.environ.get("USERNAME", "user")
    digest = hashlib.sha256(str(Path(home).resolve()).encode()).hexdigest()[:16]
    return f"workstation-{user}-{digest}"


def hand_over(home: Path, paths: list[str]) -> HandOver:
    """Give `paths` (absolute; none: just raise it) to the window running on `home`, if there is one."""
    socket = QLocalSocket()
    socket.connectToServer(server_name(home))
    if not socket.waitForConnected(CONNECT_TIMEOUT_MS):
        return HandOver.NO_WINDOW   # none, or a crashed window's socket (refused): the caller takes over
    socket.write(json.dumps({"paths": list(paths)}).encode() + b"\n")
    socket.waitForBytesWritten(CONNECT_TIMEOUT_MS)
    answer = b""
    while not answer.endswith(b"\n") and socket.waitForReadyRead(ANSWER_TIMEOUT_MS):
        answer += bytes(socket.readAll())
    socket.disconnectFromServer()
    return HandOver.DONE if answer.strip() == b"ok" else HandOver.NO_ANSWER


class InstanceServer(QObject):
    """The running window's end: hears later starts on the same home and hands on what they asked for."""

    handed_over = Signal(list)   # absolute paths to import and show; empty: just come to the front

    def __init__(self, home: Path, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.name = server_name(home)
        self.server = QLocalServer(self)
        self.server.setSocketOptions(QLocalServer.SocketOption.UserAccessOption)
        self.server.newConnection.connect(self._on_connection)
        self._buffers: dict[QLocalSocket, bytes] = {}

    def listen(self) -> bool:
        """Listen on the home's name; False when another window on this home listens already."""
        if self.server.listen(self.name):
            return True
        if self.server.serverError() == QLocalSocket.LocalSocketError.AddressInUseError:
            probe = QLocalSocket()
            probe.connectToServer(self.name)
            if probe.waitForConnected(CONNECT_TIMEOUT_MS):
                probe.disconnectFromServer()
                return False
            log.info("removing the local socket %s a stopped window left behind", self.name)
            QLocalServer.removeServer(self.name)
            if self.server.listen(self.name):
                return True
        log.warning("cannot listen on the local socket %s: %s (a second start will open a second window)",
                    self.name, self.server.errorString())
        return True

    def close(self) -> None:
        self.server.close()   # removes the socket file

    def _on_connection(self) -> None:
        while (socket := self.server.nextPendingConnection()) is not None:
            self._buffers[socket] = b""
            socket.readyRead.connect(lambda s=socket: self._on_ready(s))
            socket.disconnected.connect(lambda s=socket: self._forget(s))
            if socket.bytesAvailable():
                self._on_ready(socket)

    def _on_ready(self, socket: QLocalSocket) -> None:
        data = self._buffers.get(socket, b"") + bytes(socket.readAll())
        if not data.endswith(b"\n"):
            self._buffers[socket] = data
            return
        self._buffers[socket] = b""
        try:
            paths = [str(p) for p in json.loads(data)["paths"]]
        except (ValueError, KeyError, TypeError):
            log.warning("ignored a malformed request on the local socket %s", self.name)
            socket.write(b"error\n")
            return
        socket.write(b"ok\n")
        socket.flush()
        self.handed_over.emit(paths)

    def _forget(self, socket: QLocalSocket) -> None:
        self._buffers.pop(socket, None)
        socket.deleteLater()
