"""Remote nodes as the window sees them: echo, streamed searches, transfers, the Storage SCP.

Everything here runs core code (`workstation.core.net`) on workers of its own `JobRunner`, so
a dead node never starves the local cache's jobs, and answers with signals on the GUI thread.
Settings are read when a job is submitted: the immutable `Node` and plain values go into the
job; no worker reads settings or widgets.

- `find` streams batches of records (every 50 records or 100 ms) with, for studies, how many of
  their instances the local cache holds ("where it is").
- `retrieve` and `send` return a `Transfer`: progress, bytes, speed, cancel and retry.
- The Storage SCP of the running workstation starts with the service and restarts when the
  settings change; a busy port is reported in words and the rest keeps working.
- `instance_added(study, series)` tells the window, coalesced, that instances reached the cache
  (from a retrieval, a push or an import), so views of them can grow.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field, fields
from pathlib import Path

from PySide6.QtCore import QObject, QTimer, Signal

from workstation.core.cache import Cache, QueryFilter
from workstation.core.model import Series, Study
from workstation.core.model.node import Node
from workstation.core.net.echo import echo
from workstation.core.net.fetch_pool import shared_pool
from workstation.core.net.find import FindOutcome, find
from workstation.core.net.preview import fetch_preview
from workstation.core.net.retrieve import RetrieveReport, processes_by_default, retrieve
from workstation.core.net.send import SendReport, instances_to_send, send
from workstation.core.net.storage_scp import StorageServer, default_receivers
from workstation.core.pixels.image import ImageSource
from workstation.core.pixels.render import thumbnail
from workstation.core.settings import Settings, save_settings
from workstation.core.tasks import Cancelled
from workstation.services.jobs import Job, JobRunner

log = logging.getLogger(__name__)

BATCH_RECORDS = 50
BATCH_SECONDS = 0.1
SPEED_WINDOW = 3.0   # seconds of samples behind a transfer's speed
SIZE_SAMPLE_SECONDS = 0.25

QUEUED, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"


def where_it_is(remote_instances: int, local_instances: int) -> str:
    """'remote', 'both', or 'both (n/m local)' while only part of a remote study is local."""
    if local_instances <= 0:
        return "remote"
    if remote_instances and local_instances < remote_instances:
        return f"both ({local_instances}/{remote_instances} local)"
    return "both"


@dataclass(frozen=True)
class NodeQuery(QueryFilter):
    """A C-FIND filter with the referring physician, which the cache's filter does not carry."""

    ReferringPhysicianName: str = ""


@dataclass(frozen=True)
class FoundBatch:
    """Records of one streamed search batch; `local` maps StudyInstanceUID -> instances in the cache."""

    records: tuple
    local: dict = field(default_factory=dict)


def _local_counts(cache: Cache, study_uids: list[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for i in range(0, len(study_uids), 200):
        chunk = study_uids[i:i + 200]
        for study in cache.studies(QueryFilter(StudyInstanceUID="\\".join(chunk))):
            counts[study.StudyInstanceUID] = study.NumberOfStudyRelatedInstances
    return counts


def _study_bytes(cache: Cache, study_uid: str) -> int:
    found = cache.studies(QueryFilter(StudyInstanceUID=study_uid), limit=1)
    return found[0].size_bytes if found else 0


class Transfer(QObject):
    """One retrieval or send, as the transfers panel shows it. `changed` on every update."""

    changed = Signal()
    ended = Signal()

    def __init__(self, service: NetworkService, kind: str, node: Node, study_uid: str,
                 series_uids: list[str] | None, method: str | None, description: str) -> None:
        super().__init__()
        self.service = service
        self.kind = kind                  # "retrieve" or "send"
        self.node = node
        self.study_uid = study_uid
        self.series_uids = list(series_uids) if series_uids else None
        self.method = method
        self.description = description
        self.state = QUEUED
        self.done = 0
        self.total = 0
        self.bytes = 0
        self.speed = 0.0                  # MB/s over the last few seconds
        self.report: RetrieveReport | SendReport | None = None
        self.error = ""
        self.job: Job | None = None
        self.retried_by: Transfer | None = None
        self._samples: deque[tuple[float, int]] = deque()

    @property
    def finished(self) -> bool:
        return self.state in (DONE, FAILED, CANCELLED)

    def cancel(self) -> None:
        if self.job is not None and not self.finished:
            self.job.cancel()

    def retry(self) -> Transfer | None:
        """A new transfer for what is still missing (a retrieval fetches only what the cache lacks)."""
        if not self.finished or self.state == DONE and not self.missing():
            return None
        self.retried_by = self.service._retry(self)
        self.changed.emit()
        return self.retried_by

    def missing(self) -> int:
        if isinstance(self.report, RetrieveReport):
            return self.report.missing_count
        if isinstance(self.report, SendReport):
            return self.report.failed
        return self.total - self.done if self.total else 0

    def status_text(self) -> str:
        if self.state == QUEUED:
            return "waiting"
        if self.state == RUNNING:
            return f"{self.done} of {self.total}" if self.total else "starting…"
        if self.state == CANCELLED:
            return f"cancelled after {self.done} of {self.total}" if self.total else "cancelled"
        if self.state == FAILED:
            return self.error
        report = self.report
        if isinstance(report, RetrieveReport):
            parts = [f"{report.completed} received"]
            if report.already_local:
                parts.append(f"{report.already_local} already local")
            return ", ".join(parts) + f" in {report.seconds:.1f} s"
        if isinstance(report, SendReport):
            return f"{report.sent} sent in {report.seconds:.1f} s"
        return "done"

    # --- updates from the job (GUI thread) ----------------------------------------------------

    def _on_partial(self, item) -> None:
        what = item[0]
        if what == "started":
            self.state = RUNNING
        elif what == "progress":
            _, self.done, self.total, self.bytes = item
            self.state = RUNNING
            self._sample()
        elif what == "report" and item[1] is not None:
            self.report = item[1]
        self.changed.emit()

    def _sample(self) -> None:
        now = time.monotonic()
        self._samples.append((now, self.bytes))
        while len(self._samples) > 2 and now - self._samples[0][0] > SPEED_WINDOW:
            self._samples.popleft()
        t0, b0 = self._samples[0]
        self.speed = (self.bytes - b0) / (now - t0) / 1e6 if now - t0 > 0.05 else self.speed

    def _on_succeeded(self, report) -> None:
        self.report = report
        if isinstance(report, RetrieveReport):
            self.bytes = report.bytes or self.bytes
            self.total = max(self.total, report.completed + report.missing_count)
            self.done = report.completed
            problems = list(report.errors)
            if report.missing_count and not problems:
                problems.append(f"{report.missing_count} images did not arrive")
            if report.failed:
                problems.append(f"{report.failed} failed sub-operations")
        else:
            self.bytes = report.bytes
            self.done, self.total = report.sent, report.sent + report.failed
            problems = [f"{report.failed} of {self.total} images were refused: {report.failures[0]['reason']}"] \
                if report.failed else []
        if report.seconds > 0:
            self.speed = self.bytes / report.seconds / 1e6
        self.error = "; ".join(problems)
        self.state = FAILED if problems else DONE
        self.changed.emit()

    def _on_failed(self, message: str) -> None:
        self.error = message
        self.state = FAILED
        self.changed.emit()

    def _on_cancelled(self) -> None:
        self.state = CANCELLED
        self.changed.emit()

    def _on_ended(self) -> None:
        if not self.finished:
            self.state = FAILED
            self.error = self.error or "ended without an outcome"
        self.changed.emit()
        self.ended.emit()


class NetworkService(QObject):
    transfer_added = Signal(object)        # Transfer
    instance_added = Signal(str, str)      # StudyInstanceUID, SeriesInstanceUID (coalesced)
    instances_received = Signal(str, int)  # calling AE title, images pushed into the Storage SCP since last time
    server_changed = Signal(str)           # the Storage SCP's state in words
    settings_changed = Signal(object)      # Settings
    _wake = Signal()

    def __init__(self, home: Path, cache: Cache, settings: Settings, runner: JobRunner | None = None,
                 coalesce_ms: int = 150) -> None:
        super().__init__()
        self.home = Path(home)
        self.cache = cache
        self.settings = settings
        self.runner = runner or JobRunner(max_threads=16)
        self.transfers: list[Transfer] = []
        self.server: StorageServer | None = None
        self.server_status = "Storage SCP not started"
        self._server_lock = threading.Lock()
        self._server_generation = 0
        self._lock = threading.Lock()
        self._added: dict[tuple[str, str], None] = {}
        self._received: dict[str, int] = {}
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
        with self._lock:
            self._received[calling_aet] = self._received.get(calling_aet, 0) + 1
            wake = not self._scheduled and not self._closed
            self._scheduled = True
        if wake:
            self._wake.emit()

    def _drain(self) -> None:
        with self._lock:
            added, self._added = list(self._added), {}
            received, self._received = self._received, {}
            self._scheduled = False
        for study_uid, series_uid in added:
            self.instance_added.emit(study_uid, series_uid)
        for calling, count in received.items():
            self.instances_received.emit(calling, count)

    # --- settings and the Storage SCP ---------------------------------------------------------

    def apply_settings(self, settings: Settings) -> None:
        """Save new settings; the Storage SCP restarts when its AE title, port or callers changed."""
        old = self.settings
        save_settings(self.home, settings)
        self.settings = settings
        if (old.ae_title, old.port, old.allowed_calling_aets) != (
                settings.ae_title, settings.port, settings.allowed_calling_aets) or self.server is None:
            self.start_server()
        self.settings_changed.emit(settings)

    def start_server(self) -> Job:
        """(Re)start the Storage SCP with the current settings, on a worker (stopping one takes a moment)."""
        s = self.settings
        aet, port, allowed = s.ae_title, s.port, list(s.allowed_calling_aets)
        cache = self.cache
        with self._lock:
            self._server_generation += 1
            generation = self._server_generation

        def work(progress, cancel) -> str | None:
            with self._server_lock:
                if generation != self._server_generation:
                    return None   # a newer start is queued: starting this one would undo it
                if self.server is not None:
                    self.server.stop()
                    self.server = None
                server = StorageServer(cache, aet, port, allowed_calling_aets=allowed, receivers=default_receivers())
                server.subscribe(self._on_pushed)
                server.start()
                self.server = server
            return f"Receiving images on port {port} as {aet}."

        job = self.runner.submit("Storage SCP", work)
        job.succeeded.connect(self._on_server_state)
        job.failed.connect(lambda message: self._on_server_state(
            f"Not receiving images: {message.removeprefix('Storage SCP failed: ')}. Searching and "
            "C-GET retrieval still work; choose another port in Tools > Nodes and network."))
        return job

    def prepare_retrieval(self, delay_ms: int = 1500) -> None:
        """Start the retrieval worker processes a moment after start-up (off the UI thread), so the
        first C-GET does not wait for them and the window does not wait for them either."""
        associations = self.settings.retrieve_associations

        def start() -> None:
            if not self._closed and processes_by_default():
                self.runner.submit("retrieval workers", lambda progress, cancel: shared_pool(associations).prestart())

        QTimer.singleShot(delay_ms, self, start)

    def _on_server_state(self, text: str | None) -> None:
        if text is None:
            return
        self.server_status = text
        self.server_changed.emit(text)

    def shutdown(self, msecs: int = 10000) -> None:
        with self._lock:
            self._closed = True
        self.runner.close(msecs)
        with self._server_lock:
            if self.server is not None:
                self.server.stop()
                self.server = None

    # --- queries ------------------------------------------------------------------------------

    def echo(self, node: Node) -> Job:
        own = self.settings.ae_title
        return self.runner.submit(f"C-ECHO to {node.name}", lambda progress, cancel: echo(node, own))

    def find(self, node: Node, level: str, query: QueryFilter, limit: int | None = None,
             referring: str = "") -> Job:
        """Stream `FoundBatch`es as `job.partial`; the job succeeds with the `FindOutcome`."""
        if referring:
            query = NodeQuery(**{f.name: getattr(query, f.name) for f in fields(query)},
                              ReferringPhysicianName=referring)
        own = self.settings.ae_title
        limit = limit or self.settings.find_limit
        cache = self.cache

        def work(progress, cancel, publish) -> FindOutcome:
            outcome = FindOutcome()
            batch: list = []
            last = time.monotonic()

            def flush() -> None:
                local = _local_counts(cache, [r.StudyInstanceUID for r in batch]) if level == "study" else {}
                publish(FoundBatch(tuple(batch), local))
                batch.clear()

            for record in find(node, own, level, query, limit=limit, cancel=cancel, outcome=outcome):
                batch.append(record)
                now = time.monotonic()
                if len(batch) >= BATCH_RECORDS or now - last >= BATCH_SECONDS:
                    flush()
                    last = now
            if batch:
                flush()
            return outcome

        return self.runner.submit(f"Search on {node.name}", work, streaming=True)

    def locality(self, study_uids: list[str]) -> Job:
        """{StudyInstanceUID: instances in the cache} for these studies."""
        uids = list(study_uids)
        return self.runner.submit("where it is", lambda progress, cancel: _local_counts(self.cache, uids))

    def series(self, node: Node, study_uid: str) -> Job:
        """[(Series from the node, instances of it in the cache)]."""
        own = self.settings.ae_title
        cache = self.cache

        def work(progress, cancel) -> list[tuple[Series, int]]:
            remote = list(find(node, own, "series", QueryFilter(StudyInstanceUID=study_uid), cancel=cancel))
            local = {s.SeriesInstanceUID: s.NumberOfSeriesRelatedInstances for s in cache.series(study_uid)}
            return [(s, local.get(s.SeriesInstanceUID, 0)) for s in remote]

        return self.runner.submit(f"List series on {node.name}", work)

    def preview(self, node: Node, study_uid: str, series_uid: str, size: int = 96) -> Job:
        """A thumbnail (uint8 array) of a series the cache lacks: its middle image fetched into memory."""
        own = self.settings.ae_title

        def work(progress, cancel):
            ds = fetch_preview(node, own, study_uid, series_uid, cancel)
            return thumbnail(ImageSource.from_dataset(ds), size)

        return self.runner.submit(f"Preview from {node.name}", work)

    # --- transfers ----------------------------------------------------------------------------

    def retrieve(self, node: Node, study_uid: str, series_uids: list[str] | None = None,
                 method: str | None = None, description: str = "") -> Transfer:
        s = self.settings
        own, associations, own_port = s.ae_title, s.retrieve_associations, s.port
        method = method or node.method
        server = self.server if method == "move" else None
        cache = self.cache
        transfer = Transfer(self, "retrieve", node, study_uid, series_uids, method,
                            description or f"Study {study_uid}")

        def work(progress, cancel, publish) -> RetrieveReport:
            lock = threading.Lock()
            base = _study_bytes(cache, study_uid)
            state = {"bytes": 0, "sampled": 0.0, "published": 0.0}
            publish(("started",))

            def on_progress(done: int, total: int, message: str) -> None:
                with lock:
                    now = time.monotonic()
                    if now - state["sampled"] >= SIZE_SAMPLE_SECONDS or done >= total:
                        state["bytes"] = max(0, _study_bytes(cache, study_uid) - base)
                        state["sampled"] = now
                    if now - state["published"] >= 0.05 or done >= total or done == 0:
                        state["published"] = now
                        publish(("progress", done, total, state["bytes"]))

            try:
                return retrieve(node, own, cache, study_uid, series_uids, method, associations, server,
                                own_port, on_progress, cancel)
            except Cancelled as exc:
                publish(("report", getattr(exc, "report", None)))
                raise

        return self._start(transfer, f"Retrieve from {node.name}", work)

    def send(self, node: Node, study_uid: str, series_uids: list[str] | None = None, description: str = "",
             only_sops: set[str] | None = None) -> Transfer:
        """C-STORE a cached study (or series) to `node`; `only_sops` narrows it to the series holding them."""
        own = self.settings.ae_title
        cache = self.cache
        transfer = Transfer(self, "send", node, study_uid, series_uids, None, description or f"Study {study_uid}")

        def work(progress, cancel, publish) -> SendReport:
            publish(("started",))
            series = series_uids
            instances = instances_to_send(cache, study_uid, series)
            if only_sops:
                series = sorted({i.SeriesInstanceUID for i in instances if i.SOPInstanceUID in only_sops})
                instances = [i for i in instances if i.SeriesInstanceUID in series]
            sizes = {i.SOPInstanceUID: i.size_bytes for i in instances}
            sent = [0]

            def on_progress(done: int, total: int, sop: str) -> None:
                sent[0] += sizes.get(sop, 0)
                publish(("progress", done, total, sent[0]))

            try:
                return send(node, own, cache, study_uid, series, on_progress, cancel)
            except Cancelled as exc:
                publish(("report", getattr(exc, "report", None)))
                raise

        return self._start(transfer, f"Send to {node.name}", work)

    def _start(self, transfer: Transfer, name: str, work) -> Transfer:
        job = self.runner.submit(name, work, streaming=True)
        transfer.job = job
        job.partial.connect(transfer._on_partial)
        job.succeeded.connect(transfer._on_succeeded)
        job.failed.connect(transfer._on_failed)
        job.cancelled.connect(transfer._on_cancelled)
        job.ended.connect(transfer._on_ended)
        self.transfers.append(transfer)
        self.transfer_added.emit(transfer)
        return transfer

    def _retry(self, old: Transfer) -> Transfer:
        if old.kind == "retrieve":
            return self.retrieve(old.node, old.study_uid, old.series_uids, old.method, old.description)
        failed = None
        if isinstance(old.report, SendReport) and old.report.failures and old.state != CANCELLED:
            failed = {f["SOPInstanceUID"] for f in old.report.failures}
        return self.send(old.node, old.study_uid, old.series_uids, old.description, only_sops=failed)


def study_description(study: Study) -> str:
    """How a transfer names its study: patient, date and description."""
    name = study.PatientName.replace("^", " ").strip() or study.PatientID or "unknown patient"
    parts = [name, study.StudyDate[:4] + "-" + study.StudyDate[4:6] + "-" + study.StudyDate[6:]
             if len(study.StudyDate) == 8 else study.StudyDate, study.StudyDescription]
    return ", ".join(p for p in parts if p)
