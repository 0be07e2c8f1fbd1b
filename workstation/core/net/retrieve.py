"""Retrieval of a study or chosen series by C-GET or C-MOVE, straight into the cache.

The plan comes first: the series-level search says what the node has, and the cache says what
is already local, so retrieving again fetches only what is missing (series the cache holds part
of are listed image by image). The missing instances are split into units, a series each or
image-level pieces of a series, taken one after another by parallel lanes, each one association
kept open (never more than the node's `max_associations`), in worker processes (`fetch_pool`)
that use every core: a C-GET unit receives its instances there, a C-MOVE unit's instances arrive
at our Storage SCP and its receiver processes. What arrived stays when a
transfer fails or is cancelled, and the report names what is still missing.

The node sends the next instance only after our C-STORE answer, so the answer goes out as soon as
the bytes are in memory and an `IngestQueue` thread commits them meanwhile; the node keeps its
copy, and an instance counts as retrieved only once committed. `seconds` runs from the plan's
first association to the last commit.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pynetdicom.sop_class import CTImageStorage, MRImageStorage

from workstation.core.cache import Cache, QueryFilter
from workstation.core.model.node import Node
from workstation.core.net.association import NetworkError
from workstation.core.net.fetch_pool import shared_pool
from workstation.core.net.find import find, instance_uids, searching, study_sop_classes
from workstation.core.net.ingest_queue import IngestQueue
from workstation.core.net.received import STATUS_CANNOT_STORE, STATUS_OUT_OF_RESOURCES, encoded, refusal
from workstation.core.net.transfer import Session, Unit, UnitOutcome
from workstation.core.tasks import Cancelled, CancelToken, Progress, no_progress

if TYPE_CHECKING:
    from workstation.core.net.storage_scp import StorageServer

log = logging.getLogger(__name__)

MIN_PIECE = 24
"""Fewest instances in a series worth cutting to fill the lanes: a cut costs an image-level search
first (Orthanc: about 0.6 ms per instance)."""
TAIL_PIECE = 2
"""Fewest instances in a piece: each piece costs its lane a request round trip (the association stays)."""


@dataclass
class RetrieveReport:
    completed: int = 0
    failed: int = 0
    warning: int = 0
    already_local: int = 0
    bytes: int = 0
    seconds: float = 0.0
    first_commit_latency: float | None = None
    """Seconds from the first instance's arrival (C-STORE handler entry) to its commit in the cache."""
    missing: list[str] = field(default_factory=list)
    unlisted_missing: int = 0
    """Instances known (from the node's counts) not to have arrived, which could not be listed by UID."""
    errors: list[str] = field(default_factory=list)

    @property
    def missing_count(self) -> int:
        return len(self.missing) + self.unlisted_missing

    def to_json(self) -> dict:
        return {"completed": self.completed, "failed": self.failed, "warning": self.warning,
                "already_local": self.already_local, "bytes": self.bytes, "seconds": round(self.seconds, 4),
                "missing": self.missing_count, "errors": list(self.errors)}


@dataclass
class Plan:
    units: list[Unit]
    expected: set[str]
    already_local: int

    @property
    def total(self) -> int:
        """Instances to fetch: listed ones plus the counts of series fetched whole without a listing."""
        return len(self.expected) + sum(u.count for u in self.units if not u.sop_uids)


def _listed_units(node: Node, own_aet: str, cache: Cache, study_uid: str, series_uid: str, lanes: int,
                  classes: tuple[str, ...], cancel: CancelToken | None, assoc) -> tuple[list[Unit], int]:
    """Units for the instances of one series the cache lacks, from an image-level search; (units, already local).

    With `lanes` > 1 the series is cut into pieces for that many parallel associations. With the
    study's SOP classes known, the search asks for the UIDs alone (much cheaper for the node).
    """
    if classes:
        uids = instance_uids(node, own_aet, study_uid, series_uid, cancel, assoc=assoc)
    else:
        instances = list(find(node, own_aet, "image", QueryFilter(StudyInstanceUID=study_uid,
                                                                  SeriesInstanceUID=series_uid), cancel=cancel,
                              assoc=assoc))
        uids = [i.SOPInstanceUID for i in instances]
        classes = tuple(sorted({i.SOPClassUID for i in instances if i.SOPClassUID} or {CTImageStorage, MRImageStorage}))
    if not uids:
        raise NetworkError(f"node {node.name} has no instances in series {series_uid}")
    local = cache.has_instances(uids)
    missing = [u for u in uids if u not in local]
    if not missing:
        return [], len(local)
    if lanes <= 1:
        return [Unit(study_uid, series_uid, tuple(missing), len(missing) == len(uids), classes)], len(local)
    return [Unit(study_uid, series_uid, piece, False, classes) for piece in cut(missing, lanes)], len(local)


def cut(uids: list[str], lanes: int) -> list[tuple[str, ...]]:
    """Pieces in decreasing sizes (guided self-scheduling): each takes a share of what is left, so that
    the lanes, taking the next piece whenever they finish one, all end within a small piece of each other."""
    pieces = []
    start = 0
    while start < len(uids):
        size = max(TAIL_PIECE, -(-(len(uids) - start) // (2 * lanes)))
        pieces.append(tuple(uids[start:start + size]))
        start += size
    return pieces


def _to_cut(counts: dict[str, int], wanted: list[str], lanes: int) -> set[str]:
    """The series worth listing and cutting into pieces: those more than a lane's fair share of the study.

    The rest go whole, biggest first, to whichever lane is free.
    """
    total = sum(counts.get(s, 0) for s in wanted)
    if lanes <= 1 or not total:
        return set()
    return {s for s in wanted if counts.get(s, 0) >= MIN_PIECE and counts.get(s, 0) * lanes > total}


def plan(node: Node, own_aet: str, cache: Cache, study_uid: str, series_uids: list[str] | None,
         lanes: int, cancel: CancelToken | None = None, split: bool = False,
         ready: Callable[[tuple[str, ...]], None] | None = None) -> Plan:
    """What to fetch: the node's instances of the study (or series) minus what the cache holds.

    A series the cache holds nothing of is fetched whole, planned from the series-level search
    and the study's SOP classes alone: Orthanc answers image-level searches at about 0.6 ms per
    instance, which made planning a 141-image study cost a third of DCMTK's whole retrieval.
    Series the cache holds part of are listed image by image so that only what is missing
    comes. With `split` (worker processes, each with its own core), series bigger than a fair
    share of `lanes` parallel associations are listed too and cut into pieces, served to the lanes
    biggest first. The searches share one association; `ready(SOP classes)` is called once they
    are known and the cache lacks something, so that the lanes can negotiate during the listing.
    """
    with searching(node, own_aet) as assoc:
        return _plan(node, own_aet, cache, study_uid, series_uids, lanes, cancel, split, ready, assoc)


def _plan(node, own_aet, cache, study_uid, series_uids, lanes, cancel, split, ready, assoc) -> Plan:
    found = list(find(node, own_aet, "series", QueryFilter(StudyInstanceUID=study_uid), cancel=cancel,
                      assoc=assoc))
    counts = {s.SeriesInstanceUID: s.NumberOfSeriesRelatedInstances for s in found}
    if series_uids:
        wanted = list(dict.fromkeys(series_uids))
    else:
        wanted = list(counts)
        if not wanted:
            raise NetworkError(f"node {node.name} has no study {study_uid} (or it has no series)")
    to_cut = _to_cut(counts, wanted, lanes) if split else set()
    classes = study_sop_classes(node, own_aet, study_uid, assoc=assoc)
    local_counts = {s: len(cache.instances(s)) for s in wanted}
    if ready is not None and classes and any(local_counts[s] < counts.get(s, 1) for s in wanted):
        ready(classes)
    units: list[Unit] = []
    already = 0
    for series_uid in wanted:
        if classes and counts.get(series_uid) and series_uid not in to_cut and not local_counts[series_uid]:
            units.append(Unit(study_uid, series_uid, (), True, classes, counts[series_uid]))
            continue
        listed, local = _listed_units(node, own_aet, cache, study_uid, series_uid,
                                      lanes if series_uid in to_cut else 1, classes, cancel, assoc)
        units.extend(listed)
        already += local
    units.sort(key=lambda u: -(len(u.sop_uids) or u.count))
    expected = {u for unit in units for u in unit.sop_uids}
    return Plan(units, expected, already)


class _Tally:
    """Counts shared by the parallel associations of one retrieval."""

    def __init__(self, expected: set[str], progress: Progress, total: int | None = None,
                 any_instance: bool = False) -> None:
        self.lock = threading.Lock()
        self.expected = expected
        self.total = len(expected) if total is None else total
        self.any_instance = any_instance
        self.received: set[str] = set()
        self.bytes = 0
        self.failed = 0
        self.warning = 0
        self.errors: list[str] = []
        self.last_commit = 0.0
        self.first_latency: float | None = None
        self.progress = progress

    def stored(self, sop: str, size: int, arrived: float | None = None) -> None:
        with self.lock:
            if sop in self.received or not (self.any_instance or sop in self.expected):
                return
            self.received.add(sop)
            self.bytes += size
            self.last_commit = time.monotonic()
            if self.first_latency is None and arrived is not None:
                self.first_latency = self.last_commit - arrived
            done = len(self.received)
        self.progress(done, max(done, self.total), "")

    def committed(self, source: str, sop: str, status: int, size: int, arrived: float) -> None:
        """IngestQueue callback for C-GET: count what committed, word what the cache refused."""
        if status == 0x0000:
            self.stored(sop, size, arrived)
        elif status in (STATUS_OUT_OF_RESOURCES, STATUS_CANNOT_STORE):
            self.error("the cache could not write a received instance (disk full or not writable?); "
                       "what was written is kept")
        else:
            self.error(f"the cache refused an instance {source} (see the log); the rest is kept")

    def error(self, text: str) -> None:
        with self.lock:
            if text not in self.errors:
                self.errors.append(text)

    def add(self, outcome: UnitOutcome) -> None:
        with self.lock:
            self.failed += outcome.failed
            self.warning += outcome.warning
        for text in outcome.errors:
            self.error(text)


def _still_missing(node: Node, own_aet: str, cache: Cache, unit: Unit) -> tuple[list[str], int]:
    """What of a series fetched whole did not arrive, listed only when some did not (the rare path).

    (UIDs, count not listed): when the node cannot be asked any more (it died mid-transfer), the
    series' count from the plan still says how many are missing.
    """
    short = unit.count - len(cache.instances(unit.series_uid))
    if short <= 0:
        return [], 0
    try:
        listed = [i.SOPInstanceUID for i in find(node, own_aet, "image", QueryFilter(
            StudyInstanceUID=unit.study_uid, SeriesInstanceUID=unit.series_uid))]
    except NetworkError:
        return [], short
    local = cache.has_instances(listed)
    return sorted(u for u in listed if u not in local), 0


def processes_by_default() -> bool:
    """Worker processes where workers die with the workstation (Linux); threads elsewhere."""
    return sys.platform == "linux"


def retrieve(
    node: Node, own_aet: str, cache: Cache, study_uid: str, series_uids: list[str] | None = None,
    method: str | None = None, associations: int = 4, server: StorageServer | None = None,
    own_port: int = 11112, progress: Progress = no_progress, cancel: CancelToken | None = None,
    processes: bool | None = None,
) -> RetrieveReport:
    """Fetch what the cache lacks of a study (or of the given series) from `node`.

    Units run in worker processes (`processes`, default on Linux) or on threads of this process;
    for C-MOVE the instances arrive at our Storage SCP: `server`, the running one, or one started
    on `own_port` for the duration. Raises Cancelled after a cancel (the report so far is on the
    exception).
    """
    cancel = cancel or CancelToken()
    method = method or node.method
    started = time.monotonic()
    lanes = max(1, min(associations, node.max_associations))
    pool = None
    if processes_by_default() if processes is None else processes:
        pool = shared_pool(lanes)
        pool.prestart(lanes)
    held = contextlib.ExitStack()
    early: list = []

    def ready(classes: tuple[str, ...]) -> None:
        """Lanes negotiate while the plan lists; one waits, as the plan's association counts against the limit."""
        for _ in range(lanes - 1):
            worker = held.enter_context(pool.lane())
            worker.open(node, own_aet, method, classes)
            early.append(worker)

    try:
        the_plan = plan(node, own_aet, cache, study_uid, series_uids, lanes, cancel, split=pool is not None,
                        ready=ready if pool is not None else None)
    except BaseException:
        held.close()
        raise
    report = RetrieveReport(already_local=the_plan.already_local)
    if not the_plan.units:
        held.close()
        report.seconds = time.monotonic() - started
        return report
    whole = [u for u in the_plan.units if not u.sop_uids]
    tally = _Tally(the_plan.expected, progress, the_plan.total, any_instance=bool(whole))
    progress(0, the_plan.total, "")
    own_server = None
    writer = None
    source = f"C-STORE from {node.name}"

    def arrived(calling: str, sop: str, size: int, when: float) -> None:
        if calling == node.aet or not whole:
            tally.stored(sop, size, when)

    def refused(sop: str, status: int, reason: str) -> None:
        log.warning("refused %s from %s (status 0x%04X): %s", sop, node.name, status, reason)
        tally.committed(source, sop, status, 0, 0.0)

    def on_store(event, when: float) -> int:
        if writer.failing:
            return STATUS_OUT_OF_RESOURCES
        data, sop = encoded(event), str(event.request.AffectedSOPInstanceUID)
        if (problem := refusal(data)) is not None:
            refused(sop, *problem)
            return problem[0]
        writer.put(data, sop, source, when)
        return 0x0000

    pending = collections.deque(the_plan.units)
    crashed: list[Exception] = []

    def next_unit() -> Unit | None:
        try:
            return pending.popleft()
        except IndexError:
            return None

    def lane(number: int) -> None:
        """One parallel association: the next unit whenever the last one ended, until none is left."""
        try:
            if pool is None:
                session = Session(node, own_aet, method, on_store if method == "get" else None)
                try:
                    while (unit := next_unit()) is not None and not cancel.cancelled:
                        tally.add(session.run(unit, cancel))
                finally:
                    session.close()
                return
            with contextlib.ExitStack() as own:
                worker = early[number] if number < len(early) else own.enter_context(pool.lane())
                while (unit := next_unit()) is not None and not cancel.cancelled:
                    tally.add(worker.run(
                        node, own_aet, unit, method, str(cache.files),
                        staged=lambda parsed, when: writer.put(parsed, parsed.sop, source, when),
                        refused=refused,
                        cancel=cancel))
        except NetworkError as exc:   # this lane is over; the others take what is left
            tally.error(str(exc))
        except Exception as exc:   # a bug: raised in the caller once the other lanes are done
            crashed.append(exc)

    if method == "move":
        if server is None:
            from workstation.core.net.storage_scp import StorageServer, default_receivers  # C-MOVE only

            own_server = server = StorageServer(cache, own_aet, own_port, receivers=default_receivers())
            own_server.start()
        server.subscribe(arrived, arrival=True)
    else:
        writer = IngestQueue(cache, tally.committed, staged=pool is not None)
    try:
        threads = [threading.Thread(target=lane, args=(n,), name=f"retrieve-{n}", daemon=True)
                   for n in range(min(lanes, len(the_plan.units)))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if crashed:
            raise crashed[0]
    finally:
        held.close()
        if writer is not None:
            writer.close()
        if method == "move":
            server.drain()
            server.unsubscribe(arrived)
        if own_server is not None:
            own_server.stop()
    report.completed = len(tally.received)
    report.bytes = tally.bytes
    report.failed = tally.failed
    report.warning = tally.warning
    report.errors = tally.errors
    report.seconds = (tally.last_commit or time.monotonic()) - started
    report.first_commit_latency = tally.first_latency
    report.missing = sorted(the_plan.expected - cache.has_instances(the_plan.expected))
    for unit in whole:
        listed, unlisted = _still_missing(node, own_aet, cache, unit)
        report.missing += listed
        report.unlisted_missing += unlisted
    if cancel.cancelled:
        exc = Cancelled()
        exc.report = report
        raise exc
    return report
