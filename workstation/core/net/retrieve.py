"""Retrieval of a study or chosen series by C-GET or C-MOVE, straight into the cache.

The plan comes first: an image-level C-FIND says which instances the node has and which SOP
classes they are, and the cache says which are already local, so retrieving again fetches only
what is missing. The missing instances are split into units (a series each, or image-level
chunks when there are fewer series than associations) that run over parallel associations.
Every received instance is written as received through the cache's one ingest; what arrived
stays when a transfer fails or is cancelled, and the report names what is still missing.
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
from workstation.core.net.find import find
from workstation.core.net.node import Node
from workstation.core.net.storage_scp import StorageServer, store_event
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
    missing: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"completed": self.completed, "failed": self.failed, "warning": self.warning,
                "already_local": self.already_local, "bytes": self.bytes, "seconds": round(self.seconds, 4),
                "missing": len(self.missing), "errors": list(self.errors)}


@dataclass(frozen=True)
class Unit:
    """One C-GET/C-MOVE request: a whole series, or a list of its instances."""

    study_uid: str
    series_uid: str
    sop_uids: tuple[str, ...]
    whole_series: bool
    sop_classes: tuple[str, ...]


@dataclass
class Plan:
    units: list[Unit]
    expected: set[str]
    already_local: int


def plan(node: Node, own_aet: str, cache: Cache, study_uid: str, series_uids: list[str] | None,
         associations: int, cancel: CancelToken | None = None) -> Plan:
    """What to fetch: the node's instances of the study (or series) minus what the cache holds."""
    if series_uids:
        wanted = list(dict.fromkeys(series_uids))
    else:
        wanted = [s.SeriesInstanceUID for s in find(node, own_aet, "series", QueryFilter(StudyInstanceUID=study_uid),
                                                     cancel=cancel)]
        if not wanted:
            raise NetworkError(f"node {node.name} has no study {study_uid} (or it has no series)")
    listed: list[tuple[str, list[str], set[str], int]] = []
    already = 0
    for series_uid in wanted:
        instances = list(find(node, own_aet, "image",
                              QueryFilter(StudyInstanceUID=study_uid, SeriesInstanceUID=series_uid), cancel=cancel))
        if not instances:
            raise NetworkError(f"node {node.name} has no instances in series {series_uid}")
        uids = [i.SOPInstanceUID for i in instances]
        local = cache.has_instances(uids)
        already += len(local)
        missing = [u for u in uids if u not in local]
        if missing:
            classes = {i.SOPClassUID for i in instances if i.SOPClassUID} or {CTImageStorage, MRImageStorage}
            listed.append((series_uid, missing, classes, len(uids)))
    units: list[Unit] = []
    chunks_per_series = max(1, associations // max(1, len(listed)))
    for series_uid, missing, classes, total in listed:
        pieces = min(chunks_per_series, len(missing))
        if pieces <= 1:
            units.append(Unit(study_uid, series_uid, tuple(missing), len(missing) == total, tuple(sorted(classes))))
            continue
        size = -(-len(missing) // pieces)
        for start in range(0, len(missing), size):
            units.append(Unit(study_uid, series_uid, tuple(missing[start:start + size]), False,
                              tuple(sorted(classes))))
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

    def __init__(self, expected: set[str], progress: Progress) -> None:
        self.lock = threading.Lock()
        self.expected = expected
        self.received: set[str] = set()
        self.bytes = 0
        self.failed = 0
        self.warning = 0
        self.errors: list[str] = []
        self.last_commit = 0.0
        self.progress = progress

    def stored(self, sop: str, size: int) -> None:
        with self.lock:
            if sop not in self.expected or sop in self.received:
                return
            self.received.add(sop)
            self.bytes += size
            self.last_commit = time.monotonic()
            done = len(self.received)
        self.progress(done, len(self.expected), "")

    def error(self, text: str) -> None:
        with self.lock:
            if text not in self.errors:
                self.errors.append(text)


def _run_unit(node: Node, own_aet: str, cache: Cache, unit: Unit, method: str, tally: _Tally,
              cancel: CancelToken) -> None:
    if cancel.cancelled:
        return
    patient_root = node.model == "patient"
    if method == "get":
        model = PatientRootQueryRetrieveInformationModelGet if patient_root else StudyRootQueryRetrieveInformationModelGet
        contexts = [(model, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])] + storage_contexts(unit.sop_classes)
        ext_neg = [build_role(cls, scp_role=True) for cls in unit.sop_classes]

        def on_store(event) -> int:
            status, sop, size = store_event(cache, event)
            if status == 0x0000:
                tally.stored(sop, size)
            return status

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
    tally = _Tally(the_plan.expected, progress)
    progress(0, len(the_plan.expected), "")
    own_server = None

    def arrived(calling: str, sop: str, size: int) -> None:
        tally.stored(sop, size)

    if method == "move":
        if server is None:
            own_server = server = StorageServer(cache, own_aet, own_port)
            own_server.start()
        server.subscribe(arrived)
    try:
        with ThreadPoolExecutor(max_workers=max(1, associations), thread_name_prefix="retrieve") as pool:
            futures = [pool.submit(_run_unit, node, own_aet, cache, unit, method, tally, cancel)
                       for unit in the_plan.units]
            for future in futures:
                try:
                    future.result()
                except NetworkError as exc:
                    tally.error(str(exc))
    finally:
        if method == "move":
            server.unsubscribe(arrived)
        if own_server is not None:
            own_server.stop()
    report.completed = len(tally.received)
    report.bytes = tally.bytes
    report.failed = tally.failed
    report.warning = tally.warning
    report.errors = tally.errors
    report.seconds = (tally.last_commit or time.monotonic()) - started
    report.missing = sorted(the_plan.expected - cache.has_instances(the_plan.expected))
    if cancel.cancelled:
        exc = Cancelled()
        exc.report = report
        raise exc
    return report
