"""The running workstation's Storage SCP: started with the window, restarted when its settings change.

A busy port is reported in words (`server_changed`) and the rest keeps working; pushes are
counted per calling AE title, from the first of its associations to the end of the last, and
announced, coalesced, by the network service.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from PySide6.QtCore import QObject, Signal

from workstation.core.cache import Cache
from workstation.core.net.storage_scp import StorageServer, default_receivers
from workstation.core.settings import Settings
from workstation.services.jobs import Job, JobRunner


class StorageService(QObject):
    server_changed = Signal(str)           # the Storage SCP's state in words

    def __init__(self, runner: JobRunner, cache: Cache, settings: Callable[[], Settings],
                 on_pushed: Callable[[str, str, int], None] | None = None,
                 on_association: Callable[[str, bool], None] | None = None) -> None:
        super().__init__()
        self.runner = runner
        self.cache = cache
        self._settings = settings
        self._on_pushed = on_pushed
        self._on_association = on_association
        self.server: StorageServer | None = None
        self.status = "Storage SCP not started"
        self._lock = threading.Lock()          # the generation counter (held briefly, on the GUI thread)
        self._server_lock = threading.Lock()   # the server itself (held while it stops and starts)
        self._generation = 0

    def start(self) -> Job:
        """(Re)start the Storage SCP with the current settings, on a worker (stopping one takes a moment)."""
        s = self._settings()
        aet, port, allowed = s.ae_title, s.port, list(s.allowed_calling_aets)
        cache = self.cache
        with self._lock:
            self._generation += 1
            generation = self._generation

        def work(progress, cancel) -> str | None:
            with self._server_lock:
                if generation != self._generation:
                    return None   # a newer start is queued: starting this one would undo it
                if self.server is not None:
                    self.server.stop()
                    self.server = None
                server = StorageServer(cache, aet, port, allowed_calling_aets=allowed, receivers=default_receivers())
                if self._on_pushed is not None:
                    server.subscribe(self._on_pushed)
                if self._on_association is not None:
                    server.subscribe_associations(self._on_association)
                server.start()
                self.server = server
            return f"Receiving images on port {port} as {aet}."

        job = self.runner.submit("Storage SCP", work)
        job.succeeded.connect(self._on_state)
        job.failed.connect(lambda message: self._on_state(
            f"Not receiving images: {message.removeprefix('Storage SCP failed: ')}. Searching and "
            "C-GET retrieval still work; choose another port in Tools > Nodes and network."))
        return job

    def _on_state(self, text: str | None) -> None:
        if text is None:
            return
        self.status = text
        self.server_changed.emit(text)

    def stop(self) -> None:
        with self._server_lock:
            if self.server is not None:
                self.server.stop()
                self.server = None
