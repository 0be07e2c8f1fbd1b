"""One C-GET or C-MOVE request over one association: its contexts, identifier, cancel and final status.

Both the threads of the main process and the retrieval worker processes run a `Unit` through
`run_unit`; only what happens to each received instance differs (`on_store`). The final status
comes back in words a user can act on, so a failure reads the same wherever the unit ran.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

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
    PatientRootQueryRetrieveInformationModelGet,
    PatientRootQueryRetrieveInformationModelMove,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
)

from workstation.core.model.node import Node
from workstation.core.net.association import associate

TRANSFER_SYNTAXES = [
    ExplicitVRLittleEndian, ImplicitVRLittleEndian, JPEGLosslessSV1, JPEG2000Lossless, JPEGLSLossless,
    RLELossless, JPEGBaseline8Bit, JPEGExtended12Bit, JPEGLossless, JPEG2000, JPEGLSNearLossless,
    DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian,
]
"""One presentation context per transfer syntax, so the node can send what it stores as it is."""

MAX_CONTEXTS = 127
PENDING = (0xFF00, 0xFF01)

OnStore = Callable[[object, float], int]
"""on_store(pynetdicom C-STORE event, arrival time) -> the status to answer (C-GET only)."""


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
class UnitOutcome:
    """What the node's final response said: sub-operation counts and, when it went wrong, why."""

    failed: int = 0
    warning: int = 0
    errors: list[str] = field(default_factory=list)


class CancelFlag(Protocol):
    """A CancelToken, or a worker process's flag that its pipe reader sets."""

    @property
    def cancelled(self) -> bool: ...


def identifier(unit: Unit, patient_root: bool) -> Dataset:
    ds = Dataset()
    if patient_root:
        ds.PatientID = ""
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


def run_unit(node: Node, own_aet: str, unit: Unit, method: str, on_store: OnStore | None,
             cancel: CancelFlag) -> UnitOutcome:
    """Send one C-GET (instances answered by `on_store`) or C-MOVE (to `own_aet`) and read it to its end.

    Raises NetworkError when the association cannot be opened.
    """
    outcome = UnitOutcome()
    if cancel.cancelled:
        return outcome
    patient_root = node.model == "patient"
    if method == "get":
        model = PatientRootQueryRetrieveInformationModelGet if patient_root else StudyRootQueryRetrieveInformationModelGet
        contexts = [(model, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])] + storage_contexts(unit.sop_classes)
        ext_neg = [build_role(cls, scp_role=True) for cls in unit.sop_classes]
        handlers = [(evt.EVT_C_STORE, lambda event: on_store(event, time.monotonic()))]
    else:
        model = (PatientRootQueryRetrieveInformationModelMove if patient_root
                 else StudyRootQueryRetrieveInformationModelMove)
        contexts = [(model, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])]
        ext_neg, handlers = None, None
    request = identifier(unit, patient_root)
    with associate(node, own_aet, contexts, ext_neg=ext_neg, evt_handlers=handlers) as assoc:
        context_id = next(c.context_id for c in assoc.accepted_contexts if c.abstract_syntax == model)
        if method == "get":
            responses = assoc.send_c_get(request, model, msg_id=1)
        else:
            responses = assoc.send_c_move(request, own_aet, model, msg_id=1)
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
            outcome.errors.append(f"node {node.name} ended the association in the middle of the transfer "
                                  "(what arrived is kept; retrieve again to fetch the rest)")
        return outcome
    outcome.failed = int(final.get("NumberOfFailedSuboperations", 0) or 0)
    outcome.warning = int(final.get("NumberOfWarningSuboperations", 0) or 0)
    text = final_status_text(node, own_aet, method, int(final.Status), str(final.get("ErrorComment", "") or ""))
    if text:
        outcome.errors.append(text)
    return outcome


def final_status_text(node: Node, own_aet: str, method: str, code: int, comment: str) -> str:
    """What a final C-GET/C-MOVE status means for the user; empty for success, warning and cancel."""
    if code in (0x0000, 0xB000, 0xFE00):
        return ""
    if code == 0xA801:
        return (f"node {node.name} does not know the move destination {own_aet!r}: add our AE title, "
                "host and port to its list of DICOM modalities")
    if code == 0xA702:
        return (f"node {node.name} could not send the images back on this association (0xA702): the "
                "storage contexts were refused; try --method move")
    if code == 0xC000 and method == "move":
        return (f"node {node.name} could not send to our Storage SCP (0xC000): check that it knows our "
                f"AE title {own_aet!r} with this host and port, and that the port is reachable")
    return f"node {node.name} ended the retrieval with status 0x{code:04X}" + (f": {comment}" if comment else "")
