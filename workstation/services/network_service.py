"""Remote nodes as the window sees them: the network's settings and its three services.

- `queries` (`QueryService`): C-ECHO, streamed searches, a study's series, where a study is.
- `queue` (`TransferQueue`): retrievals, sends and previews by priority, with progress and cancel.
- `storage` (`StorageService`): the running workstation's Storage SCP.
They share one `JobRunner` of their own, so a dead node never starves the local cache's jobs.
`instance_added(study, series)` tells the window, coalesced, that instances reached the cache
(from a retrieval, a push or an import), so views of them can grow; `instances_received(calling
AE, n, receiving)` counts what a sender pushes into the Storage SCP, from the first of its
associations to the end of the last: the running total while it goes on, then the whole.
"""

from __future__ import annotations

import threading
from pathlib import Path

from PySide6.QtCore import QObject, QTimer, Signal

from workstation.core.cache import Cache
from workstation.core.net.fetch_pool import shared_pool
from workstation.core.net.retrieve import processes_by_default
from workstation.core.settings import Settings, save_settings
from workstation.services.jobs import JobRunner
from workstation.services.query_service import QueryService
from workstation.services.storage_service import StorageService
from workstation.services.transfer_queue import TransferQueue


class _Sender:
    """A calling AE title's pushes in progress: its open associations and what they brought so far."""

    __slots__ = ("associations", "images", "changed")

    def __init__(self) -> None:
        self.associations = 0
        self.images = 0
        self.changed = False


class NetworkService(QObject):
    instance_added = Signal(str, str)      # StudyInstanceUID, SeriesInstanceUID (coalesced)
    instances_received = Signal(str, int, bool)  # calling AE title, images it pushed so far, still sending
    settings_changed = Signal(object)      # Settings
    _wake = Signal()

    def __init__(self, home: Path, cache: Cache, settings: Settings, runner: JobRunner | None = None,
                 coalesce_ms: int = 150) -> None:
        super().__init__()
        self.home = Path(home)
        self.cache = cache
        self.settings = settings
        self.runner = runner or JobRunner(max_threads=16)
        current = lambda: self.settings  # noqa: E731 - jobs read the settings of the moment they are asked for
        self.queries = QueryService(self.runner, cache, current)
        self.storage = StorageService(self.runner, cache, current, on_pushed=self._on_pushed,
                                      on_association=self._on_association)
        self.queue = TransferQueue(self.runner, cache, current, lambda: self.storage.server)
        self._lock = threading.Lock()
        self._added: dict[tuple[str, str], None] = {}
        self._senders: dict[str, _Sender] = {}   # calling AE title -> its pushes in progress
        self._scheduled = False
        self._closed = False
        self._drain_timer = QTimer(self, singleShot=True, interval=coalesce_ms)
        self._drain_timer.timeout.connect(self._drain)
        self._wake.connect(self._drain_timer.start)
        cache.subscribe(self._on_cache_stored)

    # --- coalesced announcements (called on any thread) ---------------------------------------

    def _on_cache_stored(self, study_uid: str, series_uid: str, sop_uid: str) -> None:
        with self._lock:
            self._added[(study_uid, series_uid)] = None
            wake = not self._scheduled and not self._closed
            self._scheduled = True
        if wake:
            self._wake.emit()

    def _on_pushed(self, calling_aet: str, sop_uid: str, size: int) -> None:
        self._update_sender(calling_aet, images=1)

    def _on_association(self, calling_aet: str, opened: bool) -> None:
        self._update_sender(calling_aet, associations=1 if opened else -1)

    def _update_sender(self, calling_aet: str, images: int = 0, associations: int = 0) -> None:
        with self._lock:
            sender = self._senders.setdefault(calling_aet, _Sender())
            sender.images += images
            sender.associations = max(0, sender.associations + associations)
            sender.changed = True
            wake = not self._scheduled and not self._closed
            self._scheduled = True
        if wake:
            self._wake.emit()

    def _drain(self) -> None:
        received: list[tuple[str, int, bool]] = []
        with self._lock:
            added, self._added = list(self._added), {}
            for calling, sender in list(self._senders.items()):
                if sender.changed and sender.images:
                    received.append((calling, sender.images, sender.associations > 0))
                sender.changed = False
                if sender.associations == 0:
                    del self._senders[calling]   # its next association starts a new count
            self._scheduled = False
        for study_uid, series_uid in added:
            self.instance_added.emit(study_uid, series_uid)
        for calling, count, receiving in received:
            self.instances_received.emit(calling, count, receiving)

    # --- settings -----------------------------------------------------------------------------

    def apply_settings(self, settings: Settings) -> None:
        """Save new settings; the Storage SCP restarts when its AE title, port or callers changed."""
        old = self.settings
        save_settings(self.home, settings)
        self.settings = settings
        if (old.ae_title, old.port, old.allowed_calling_aets) != (
                settings.ae_title, settings.port, settings.allowed_calling_aets) or self.storage.server is None:
            self.storage.start()
        self.settings_changed.emit(settings)

    def prepare_retrieval(self, delay_ms: int = 1500) -> None:
        """Start the retrieval worker processes a moment after start-up (off the UI thread), so the
        first C-GET does not wait for them and the window does not wait for them either."""
        associations = self.settings.retrieve_associations

        def start() -> None:
            if not self._closed and processes_by_default():
                self.runner.submit("retrieval workers", lambda progress, cancel: shared_pool(associations).prestart())

        QTimer.singleShot(delay_ms, self, start)

    def shutdown(self, msecs: int = 10000) -> None:
        with self._lock:
            self._closed = True
        self.runner.close(msecs)
        self.storage.stop()
