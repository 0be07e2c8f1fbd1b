"""The workstation's Storage SCP: receives pushed studies and C-MOVE sub-operations into the cache.

Handlers run on pynetdicom's association threads; they write the received bytes through the
cache's one ingest (no decode and re-encode) and return a status, nothing else. Listeners
(`on_stored`) hear of each instance so a retrieval or the GUI can count them.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, evt
from pynetdicom.sop_class import Verification
from pynetdicom.transport import ThreadedAssociationServer

from workstation.core.cache import Cache, CacheError

log = logging.getLogger(__name__)

STATUS_OUT_OF_RESOURCES = 0xA700
STATUS_CANNOT_UNDERSTAND = 0xC000

StoredCallback = Callable[[str, str, int], None]
"""on_stored(calling_aet, sop_uid, size)."""


def store_event(cache: Cache, event) -> tuple[int, str, int]:
    """Ingest one C-STORE request's bytes as received; (status, SOP Instance UID, size). Shared with C-GET."""
    data = event.encoded_dataset(include_meta=True)
    try:
        cache.ingest_bytes(data, source=f"C-STORE from {event.assoc.requestor.ae_title}")
    except CacheError as exc:
        log.warning("refused an instance from %s: %s", event.assoc.requestor.ae_title, exc)
        return STATUS_CANNOT_UNDERSTAND, "", 0
    except OSError as exc:
        log.error("cannot store an instance: %s", exc)
        return STATUS_OUT_OF_RESOURCES, "", 0
    return 0x0000, str(event.request.AffectedSOPInstanceUID), len(data)


class StorageServer:
    """A running Storage SCP on (host, port) with AE title `aet`; stop() ends it."""

    def __init__(self, cache: Cache, aet: str, port: int, host: str = "0.0.0.0",
                 allowed_calling_aets: list[str] | None = None) -> None:
        self.cache = cache
        self.aet = aet
        self.port = port
        self.host = host
        self.allowed = {a.strip() for a in (allowed_calling_aets or []) if a.strip()}
        self.received = 0
        self._lock = threading.Lock()
        self._listeners: list[StoredCallback] = []
        self._server: ThreadedAssociationServer | None = None

    def subscribe(self, callback: StoredCallback) -> None:
        with self._lock:
            self._listeners.append(callback)

    def unsubscribe(self, callback: StoredCallback) -> None:
        with self._lock:
            if callback in self._listeners:
                self._listeners.remove(callback)

    def _on_store(self, event) -> int:
        status, sop, size = store_event(self.cache, event)
        if status == 0x0000:
            with self._lock:
                self.received += 1
                listeners = list(self._listeners)
            calling = event.assoc.requestor.ae_title.strip()
            for listener in listeners:
                listener(calling, sop, size)
        return status

    def start(self) -> None:
        ae = AE(ae_title=self.aet)
        ae.maximum_pdu_size = 0
        for context in AllStoragePresentationContexts:
            ae.add_supported_context(context.abstract_syntax, ALL_TRANSFER_SYNTAXES)
        ae.add_supported_context(Verification)
        if self.allowed:  # others are rejected at association time: "calling AE title not recognised"
            ae.require_calling_aet = sorted(self.allowed)
        try:
            self._server = ae.start_server((self.host, self.port), block=False,
                                           evt_handlers=[(evt.EVT_C_STORE, self._on_store)])
        except OSError as exc:
            raise OSError(f"cannot listen on port {self.port}: {exc.strerror or exc} (is another "
                          "workstation or storescp using it? change it with 'workstation config set port N')") from None

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server = None

    def __enter__(self) -> StorageServer:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
