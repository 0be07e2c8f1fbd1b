"""Retrievals, sends and previews in one queue with priorities, as the transfers panel shows them.

The study the user opened goes first, then previews of a node's series, then what the user asked
for without opening it, then background work (prefetch of priors, print jobs); a higher priority
overtakes queued lower ones and lower ones leave slots free (`core/scheduling.py`). Each job runs
core code on a worker of the network's `JobRunner`; a `Transfer` follows one retrieval or send
(progress, bytes, speed, cancel, retry) on the GUI thread.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

from PySide6.QtCore import QObject, Signal

from workstation.core.cache import Cache, QueryFilter
from workstation.core.dicom.dates import iso_date
from workstation.core.model import Study
from workstation.core.model.node import Node
from workstation.core.model.printer import Printer, box_count
from workstation.core.net.preview import fetch_preview
from workstation.core.net.print_scu import PrintError, PrintReport
from workstation.core.net.retrieve import RetrieveReport, retrieve
from workstation.core.net.send import SendReport, instances_to_send, send
from workstation.core.net.storage_scp import StorageServer
from workstation.core.pixels.image import ImageSource
from workstation.core.pixels.render import thumbnail
from workstation.core.printing import FilmOptions, PrintItem, planned_films, print_job
from workstation.core.scheduling import Priority, Scheduler, Ticket
from workstation.core.settings import Settings
from workstation.core.tasks import Cancelled
from workstation.services.jobs import Job, JobRunner

SPEED_WINDOW = 3.0   # seconds of samples behind a transfer's speed
SIZE_SAMPLE_SECONDS = 0.25

QUEUED, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"


def _study_bytes(cache: Cache, study_uid: str) -> int:
    found = cache.studies(QueryFilter(StudyInstanceUID=study_uid), limit=1)
    return found[0].size_bytes if found else 0


class Transfer(QObject):
    """One retrieval, send or print job, as the transfers panel shows it. `changed` on every update."""

    changed = Signal()
    ended = Signal()

    def __init__(self, queue: TransferQueue, kind: str, node: Node, study_uid: str,
                 series_uids: list[str] | None, method: str | None, description: str,
                 priority: Priority = Priority.REQUESTED) -> None:
        super().__init__()
        self.queue = queue
        self.priority = priority
        self.kind = kind                  # "retrieve", "send" or "print"
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
        self.report: RetrieveReport | SendReport | PrintReport | None = None
        self.print_job: tuple | None = None   # a print's (printer, items, options), for retry
        self.error = ""
        self.job: Job | None = None
        self.ticket: Ticket | None = None   # its place in the queue
        self.retried_by: Transfer | None = None
        self.detail = ""                    # where a running job is ("film 2 of 3")
        self.printed_films = 0              # a failed print job's films printed before the failure
        self.events: list[str] = []         # a printer's event reports
        self._samples: deque[tuple[float, int]] = deque()

    @property
    def finished(self) -> bool:
        return self.state in (DONE, FAILED, CANCELLED)

    def cancel(self) -> None:
        """Stop it; a transfer still waiting in the queue leaves it without opening an association."""
        if self.job is not None and not self.finished:
            self.job.cancel()

    def retry(self) -> Transfer | None:
        """A new transfer for what is still missing (a retrieval fetches only what the cache lacks)."""
        if not self.finished or self.state == DONE and not self.missing():
            return None
        self.retried_by = self.queue._retry(self)
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
            where = f"{self.detail}; " if self.detail else ""
            event = f" ({self.events[-1]})" if self.events else ""
            return (f"{where}{self.done} of {self.total}" if self.total else "starting…") + event
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
        if isinstance(report, PrintReport):
            films = f"{report.films} film{'s' if report.films != 1 else ''}"
            notes = report.warnings + report.events
            return f"{films}, {report.images} images {report.status}" + (f": {'; '.join(notes)}" if notes else "")
        return "done"

    # --- updates from the job (GUI thread) ----------------------------------------------------

    def _on_partial(self, item) -> None:
        what = item[0]
        if what == "started":
            self.state = RUNNING
        elif what == "progress":
            _, self.done, self.total, self.bytes, *detail = item
            self.detail = detail[0] if detail else self.detail
            self.state = RUNNING
            self._sample()
        elif what == "event":   # a printer's N-EVENT-REPORT, in words
            self.events.append(item[1])
        elif what == "printed":  # films a failed print job printed before it stopped
            self.printed_films = item[1]
        elif what == "report" and item[1] is not None:
            self.report = report = item[1]   # what a cancelled transfer had done by then
            if isinstance(report, RetrieveReport):
                self.done, self.bytes = max(self.done, report.completed), max(self.bytes, report.bytes or 0)
            elif isinstance(report, SendReport):
                self.done, self.bytes = max(self.done, report.sent), max(self.bytes, report.bytes or 0)
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
        if isinstance(report, PrintReport):
            self.done = self.total = report.images
            self.error = ""
            self.state = DONE
            self.changed.emit()
            return
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
        name = self.job.name if self.job is not None else ""
        self.error = message.removeprefix(f"{name} failed: ")   # the row and the status line name the transfer
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


class TransferQueue(QObject):
    transfer_added = Signal(object)        # Transfer
    transfers_removed = Signal(list)       # [Transfer]: finished ones the user cleared from the list

    def __init__(self, runner: JobRunner, cache: Cache, settings: Callable[[], Settings],
                 server: Callable[[], StorageServer | None], scheduler: Scheduler | None = None) -> None:
        super().__init__()
        self.runner = runner
        self.cache = cache
        self._settings = settings
        self._server = server
        self.scheduler = scheduler or Scheduler()
        self.transfers: list[Transfer] = []

    def preview(self, node: Node, study_uid: str, series_uid: str, size: int = 96,
                priority: Priority = Priority.PREVIEW) -> Job:
        """A thumbnail (uint8 array) of a series the cache lacks: its middle image fetched into memory."""
        own = self._settings().ae_title

        def work(progress, cancel):
            ds = fetch_preview(node, own, study_uid, series_uid, cancel)
            return thumbnail(ImageSource.from_dataset(ds), size)

        job = self.runner.prepare(f"Preview from {node.name}", work)
        self._enqueue(job, priority, "preview")
        return job

    def _enqueue(self, job: Job, priority: Priority, group: str = "") -> Ticket:
        """Start `job` when the scheduler gives it a slot; cancelling it while it waits takes it out."""
        ticket = self.scheduler.submit(priority, job.name, lambda: self.runner.start(job), group)
        job.ended.connect(lambda: self.scheduler.finished(ticket))

        def withdraw() -> None:
            if self.scheduler.withdraw(ticket):
                self.runner.start(job)   # already cancelled: it ends as cancelled without running

        job.on_cancel = withdraw
        return ticket

    def retrieve(self, node: Node, study_uid: str, series_uids: list[str] | None = None,
                 method: str | None = None, description: str = "",
                 priority: Priority = Priority.REQUESTED) -> Transfer:
        """Retrieve what the cache lacks of a study (or some series); the same retrieval already
        waiting in the queue is moved up to `priority` and returned instead of asked for twice."""
        method = method or node.method
        for waiting in self.transfers:
            if (waiting.kind == "retrieve" and waiting.state == QUEUED and waiting.node == node
                    and waiting.study_uid == study_uid and waiting.series_uids == (list(series_uids) if series_uids else None)
                    and waiting.method == method):
                if priority < waiting.priority:
                    waiting.priority = priority
                    self.scheduler.promote(waiting.ticket, priority)
                return waiting
        s = self._settings()
        own, associations, own_port = s.ae_title, s.retrieve_associations, s.port
        server_of = self._server
        cache = self.cache
        transfer = Transfer(self, "retrieve", node, study_uid, series_uids, method,
                            description or f"Study {study_uid}", priority)

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

            server = server_of() if method == "move" else None   # the one running when its turn comes
            try:
                return retrieve(node, own, cache, study_uid, series_uids, method, associations, server,
                                own_port, on_progress, cancel)
            except Cancelled as exc:
                publish(("report", getattr(exc, "report", None)))
                raise

        return self._start(transfer, f"Retrieve from {node.name}", work)

    def send(self, node: Node, study_uid: str, series_uids: list[str] | None = None, description: str = "",
             only_sops: set[str] | None = None, priority: Priority = Priority.REQUESTED) -> Transfer:
        """C-STORE a cached study (or series) to `node`; `only_sops` narrows it to the series holding them."""
        own = self._settings().ae_title
        cache = self.cache
        transfer = Transfer(self, "send", node, study_uid, series_uids, None, description or f"Study {study_uid}",
                            priority)

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

    def print(self, printer: Printer, items: list[PrintItem], options: FilmOptions, description: str = "",
              priority: Priority = Priority.REQUESTED) -> Transfer:
        """A print job: its films rendered and sent on a worker, one job at a time per printer (a film
        printer serves one association), progress per image box."""
        own = self._settings().ae_title
        transfer = Transfer(self, "print", printer.node(), "", None, None,
                            description or f"{len(items)} image{'s' if len(items) != 1 else ''} to film", priority)
        transfer.print_job = (printer, list(items), options)

        def work(progress, cancel, publish) -> PrintReport:
            publish(("started",))

            def on_progress(done: int, total: int, message: str) -> None:
                publish(("progress", done, total, 0, message.split(":")[0]))   # "film 2 of 3"

            try:
                return print_job(printer, own, items, options, on_progress, cancel,
                                 on_event=lambda words: publish(("event", words)))
            except PrintError as exc:   # what was printed before: a retry sends only the rest
                publish(("printed", exc.report.films if exc.report is not None else 0))
                raise

        group = f"print:{printer.name}"
        self.scheduler.group_limits.setdefault(group, 1)
        return self._start(transfer, f"Print to {printer.name}", work, group)

    def _start(self, transfer: Transfer, name: str, work, group: str = "") -> Transfer:
        job = self.runner.prepare(name, work, streaming=True)
        transfer.job = job
        job.partial.connect(transfer._on_partial)
        job.succeeded.connect(transfer._on_succeeded)
        job.failed.connect(transfer._on_failed)
        job.cancelled.connect(transfer._on_cancelled)
        job.ended.connect(transfer._on_ended)
        self.transfers.append(transfer)
        self.transfer_added.emit(transfer)
        transfer.ticket = self._enqueue(job, transfer.priority, group)
        return transfer

    def remove_finished(self, transfers: list[Transfer] | None = None) -> list[Transfer]:
        """Forget finished transfers (done, failed, cancelled): all of them, or those of `transfers`.
        Running and waiting ones always stay; returns what was removed."""
        chosen = self.transfers if transfers is None else transfers
        removed = [t for t in chosen if t.finished and t in self.transfers]
        if removed:
            self.transfers = [t for t in self.transfers if t not in removed]
            self.transfers_removed.emit(removed)
        return removed

    def _retry(self, old: Transfer) -> Transfer:
        if old.kind == "print" and old.print_job is not None:
            printer, items, options = old.print_job
            if old.printed_films and old.state == FAILED:   # the films printed before the failure are not sent again
                per_film = box_count(planned_films(printer, items, options)[0].display_format)
                items = items[old.printed_films * per_film:]
            return self.print(printer, items, options, description=old.description, priority=old.priority)
        if old.kind == "retrieve":
            return self.retrieve(old.node, old.study_uid, old.series_uids, old.method, old.description,
                                 old.priority)
        failed = None
        if isinstance(old.report, SendReport) and old.report.failures and old.state != CANCELLED:
            failed = {f["SOPInstanceUID"] for f in old.report.failures}
        return self.send(old.node, old.study_uid, old.series_uids, old.description, only_sops=failed,
                         priority=old.priority)



def study_description(study: Study) -> str:
    """How a transfer names its study: patient, date and description."""
    name = study.PatientName.replace("^", " ").strip() or study.PatientID or "unknown patient"
    parts = [name, iso_date(study.StudyDate), study.StudyDescription]
    return ", ".join(p for p in parts if p)
