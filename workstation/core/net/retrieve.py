"""Retrieval of a study or chosen series by C-GET or C-MOVE, straight into the cache.

The plan comes first: an image-level C-FIND says which instances the node has and which SOP
classes they are, and the cache says which are already local, so retrieving again fetches only
what is missing. The missing instances are split into units (a series each, or image-level
chunks when there are fewer series than associations) that run over parallel associations.
Every received instance is written as received through the cache's one ingest; what arrived
stays when a transfer fails or is cancelled, and the report names what is still missing.

The node sends the next instance only after our C-STORE answer, so the answer goes out as soon as
the bytes are in memory and an `IngestQueue` thread commits them meanwhile; the node keeps its
copy, and an instance counts as retrieved only once committed. `seconds` runs from the plan's
first association to the last commit.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from pydicom.dataset import Dataset
from pydicom.uid import (
    JPEG2000,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)
from pynetdicom import build_role, evt
from pynetdicom.sop_class import (
    CTImageStorage,
    MRImageStorage,
    PatientRootQueryRetrieveInformationModelGet,
    PatientRootQueryRetrieveInformationModelMove,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
)

from workstation.core.cache import Cache, QueryFilter
from workstation.core.net.association import NetworkError, associate
from workstation.core.net.find import find, study_sop_classes
from workstation.core.net.node import Node
from workstation.core.net.storage_scp import STATUS_OUT_OF_RESOURCES, IngestQueue, StorageServer, encoded
from workstation.core.tasks import Cancelled, CancelToken, Progress, no_progress

TRANSFER_SYNTAXES = [
    ExplicitVRLittleEndian, ImplicitVRLittleEndian, JPEGLosslessSV1, JPEG2000Lossless, JPEGLSLossless,
    RLELossless, JPEGBaseline8Bit, JPEGExtended12Bit, JPEGLossless, JPEG2000, JPEGLSNearLossless,
    DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian,
]
"""One presentation context per transfer syntax, so the node can send what it stores as it is."""

MAX_CONTEXTS = 127
PENDING = (0xFF00, 0xFF01)


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


@dataclass(frozen=True)
class Unit:
    """One C-GET/C-MOVE request: a whole series (`count` instances), or a list of its instances."""

    study_uid: str
    series_uid: str
    sop_uids: tuple[str, ...]
    whole_series: bool
    sop_classes: tuple[str, ...]
    count: int = 0


@dataclass
class Plan:
    units: list[Unit]
    expected: set[str]
    already_local: int

    @property
    def total(self) -> int:
        """Instances to fetch: listed ones plus the counts of series fetched whole without a listing."""
        return len(self.expected) + sum(u.count for u in self.units if not u.sop_uids)


def _listed_units(node: Node, own_aet: str, cache: Cache, study_uid: str, series_uid: str, pieces: int,
                  cancel: CancelToken | None) -> tuple[list[Unit], int]:
    """Units for the instances of one series the cache lacks, from an image-level search; (units, already local)."""
    instances = list(find(node, own_aet, "image",
                          QueryFilter(StudyInstanceUID=study_uid, SeriesInstanceUID=series_uid), cancel=cancel))
    if not instances:
        raise NetworkError(f"node {node.name} has no instances in series {series_uid}")
    uids = [i.SOPInstanceUID for i in instances]
    local = cache.has_instances(uids)
    missing = [u for u in uids if u not in local]
    if not missing:
        return [], len(local)
    classes = tuple(sorted({i.SOPClassUID for i in instances if i.SOPClassUID} or {CTImageStorage, MRImageStorage}))
    pieces = min(max(1, pieces), len(missing))
    if pieces <= 1:
        return [Unit(study_uid, series_uid, tuple(missing), len(missing) == len(uids), classes)], len(local)
    size = -(-len(missing) // pieces)
    return [Unit(study_uid, series_uid, tuple(missing[start:start + size]), False, classes)
            for start in range(0, len(missing), size)], len(local)


def plan(node: Node, own_aet: str, cache: Cache, study_uid: str, series_uids: list[str] | None,
         associations: int, cancel: CancelToken | None = None, split: bool = False) -> Plan:
    """What to fetch: the node's instances of the study (or series) minus what the cache holds.

    A series the cache holds nothing of is fetched whole, planned from the series-level search
    and the study's SOP classes alone: Orthanc answers image-level searches at about 1 ms per
    instance, which made planning a 141-image study cost as much as DCMTK's whole retrieval.
    Series the cache holds part of are listed image by image so that only what is missing
    comes. `split` also cuts series into image-level chunks to fill `associations` (measured no
    faster within one process, where the associations share the GIL).
    """
    found = list(find(node, own_aet, "series", QueryFilter(StudyInstanceUID=study_uid), cancel=cancel))
    counts = {s.SeriesInstanceUID: s.NumberOfSeriesRelatedInstances for s in found}
    if series_uids:
        wanted = list(dict.fromkeys(series_uids))
    else:
        wanted = list(counts)
        if not wanted:
            raise NetworkError(f"node {node.name} has no study {study_uid} (or it has no series)")
    classes = () if split else study_sop_classes(node, own_aet, study_uid)
    units: list[Unit] = []
    already = 0
    pieces = max(1, associations // len(wanted)) if split else 1
    for series_uid in wanted:
        if classes and counts.get(series_uid) and not cache.instances(series_uid):
            units.append(Unit(study_uid, series_uid, (), True, classes, counts[series_uid]))
            continue
        listed, local = _listed_units(node, own_aet, cache, study_uid, series_uid, pieces, cancel)
        units.extend(listed)
        already += local
    expected = {u for unit in units for u in unit.sop_uids}
    return Plan(units, expected, already)


def _identifier(unit: Unit) -> Dataset:
    ds = Dataset()
    ds.StudyInstanceUID = unit.study_uid
    ds.SeriesInstanceUID = unit.series_uid
    if unit.whole_series:
        ds.QueryRetrieveLevel = "SERIES"
    else:
        ds.QueryRetrieveLevel = "IMAGE"
        ds.SOPInstanceUID = list(unit.sop_uids) if len(unit.sop_uids) > 1 else unit.sop_uids[0]
    return ds


def storage_contexts(sop_classes: tuple[str, ...]) -> list[tuple[str, list[str]]]:
    """(SOP class, [one transfer syntax]) pairs, as many syntaxes per class as the 127-context limit allows."""
    per_class = max(2, min(len(TRANSFER_SYNTAXES), (MAX_CONTEXTS - 1) // max(1, len(sop_classes))))
    return [(cls, [ts]) for cls in sop_classes for ts in TRANSFER_SYNTAXES[:per_class]][: MAX_CONTEXTS - 1]


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
        elif status == STATUS_OUT_OF_RESOURCES:
            self.error("the cache could not write a received instance (disk full or not writable?); "
                       "what was written is kept")
        else:
            self.error(f"the cache refused an instance {source} (see the log); the rest is kept")

    def error(self, text: str) -> None:
        with self.lock:
            if text not in self.errors:
                self.errors.append(text)


def _run_unit(node: Node, own_aet: str, unit: Unit, method: str, writer: IngestQueue | None,
              tally: _Tally, cancel: CancelToken) -> None:
    if cancel.cancelled:
        return
    patient_root = node.model == "patient"
    if method == "get":
        model = PatientRootQueryRetrieveInformationModelGet if patient_root else StudyRootQueryRetrieveInformationModelGet
        contexts = [(model, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])] + storage_contexts(unit.sop_classes)
        ext_neg = [build_role(cls, scp_role=True) for cls in unit.sop_classes]

        def on_store(event) -> int:
            arrived = time.monotonic()
            if writer.failing:
                return STATUS_OUT_OF_RESOURCES
            writer.put(encoded(event), str(event.request.AffectedSOPInstanceUID),
                       f"C-STORE from {node.name}", arrived)
            return 0x0000

        handlers = [(evt.EVT_C_STORE, on_store)]
    else:
        model = (PatientRootQueryRetrieveInformationModelMove if patient_root
                 else StudyRootQueryRetrieveInformationModelMove)
        contexts = [(model, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])]
        ext_neg, handlers = None, None
    identifier = _identifier(unit)
    if patient_root:
        identifier.PatientID = ""
    with associate(node, own_aet, contexts, ext_neg=ext_neg, evt_handlers=handlers) as assoc:
        context_id = next(c.context_id for c in assoc.accepted_contexts if c.abstract_syntax == model)
        if method == "get":
            responses = assoc.send_c_get(identifier, model, msg_id=1)
        else:
            responses = assoc.send_c_move(identifier, own_aet, model, msg_id=1)
        final = None
        cancel_sent = False
        for status, _ in responses:
            if not status or "Status" not in status:
                break
            if status.Status in PENDING:
                if cancel.cancelled and not cancel_sent:
                    assoc.send_c_cancel(1, context_id)
                    cancel_sent = True
                continue
            final = status
            break
        if final is None:
            if not cancel.cancelled:
                tally.error(f"node {node.name} ended the association in the middle of the transfer "
                            "(what arrived is kept; retrieve again to fetch the rest)")
            return
        code = int(final.Status)
        failed = int(final.get("NumberOfFailedSuboperations", 0) or 0)
        warned = int(final.get("NumberOfWarningSuboperations", 0) or 0)
        with tally.lock:
            tally.failed += failed
            tally.warning += warned
        if code == 0xFE00:
            return
        if code == 0xA801:
            tally.error(f"node {node.name} does not know the move destination {own_aet!r}: add our AE title, "
                        "host and port to its list of DICOM modalities")
        elif code == 0xA702:
            tally.error(f"node {node.name} could not send the images back on this association (0xA702): the "
                        "storage contexts were refused; try --method move")
        elif code == 0xC000 and method == "move":
            tally.error(f"node {node.name} could not send to our Storage SCP (0xC000): check that it knows our "
                        f"AE title {own_aet!r} with this host and port, and that the port is reachable")
        elif code not in (0x0000, 0xB000):
            comment = str(final.get("ErrorComment", "") or "")
            tally.error(f"node {node.name} ended the retrieval with status 0x{code:04X}"
                        + (f": {comment}" if comment else ""))


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


def retrieve(
    node: Node, own_aet: str, cache: Cache, study_uid: str, series_uids: list[str] | None = None,
    method: str | None = None, associations: int = 4, server: StorageServer | None = None,
    own_port: int = 11112, progress: Progress = no_progress, cancel: CancelToken | None = None,
) -> RetrieveReport:
    """Fetch what the cache lacks of a study (or of the given series) from `node`.

    For C-MOVE, `server` is the running Storage SCP; without one, one is started on `own_port`
    for the duration. Raises Cancelled after a cancel (the report so far is on the exception).
    """
    cancel = cancel or CancelToken()
    method = method or node.method
    started = time.monotonic()
    the_plan = plan(node, own_aet, cache, study_uid, series_uids, associations, cancel)
    report = RetrieveReport(already_local=the_plan.already_local)
    if not the_plan.units:
        report.seconds = time.monotonic() - started
        return report
    whole = [u for u in the_plan.units if not u.sop_uids]
    tally = _Tally(the_plan.expected, progress, the_plan.total, any_instance=bool(whole))
    progress(0, the_plan.total, "")
    own_server = None
    writer = None

    def arrived(calling: str, sop: str, size: int, when: float) -> None:
        if calling == node.aet or not whole:
            tally.stored(sop, size, when)

    if method == "move":
        if server is None:
            own_server = server = StorageServer(cache, own_aet, own_port)
            own_server.start()
        server.subscribe(arrived, arrival=True)
    else:
        writer = IngestQueue(cache, tally.committed)
    try:
        with ThreadPoolExecutor(max_workers=max(1, associations), thread_name_prefix="retrieve") as pool:
            futures = [pool.submit(_run_unit, node, own_aet, unit, method, writer, tally, cancel)
                       for unit in the_plan.units]
            for future in futures:
                try:
                    future.result()
                except NetworkError as exc:
                    tally.error(str(exc))
    finally:
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
