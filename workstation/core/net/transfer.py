"""C-GET and C-MOVE requests over an association: its contexts, each request's identifier, cancel and final status.

Both the threads of the main process and the retrieval worker processes run `Unit`s through a
`Session` (one association, reused unit after unit); only what happens to each received instance
differs (`on_store`). The final status comes back in words a user can act on, so a failure reads
the same wherever the unit ran.
"""

from __future__ import annotations

import contextlib
import sys
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
from workstation.core.net.association import associate, how_it_ended

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


class Session:
    """One association to a node over which C-GET or C-MOVE units run one after another.

    Reusing the association saves a connection and a negotiation per unit (two round trips and a
    presentation context list of up to 127 entries), so a plan can cut a series into many small
    pieces and keep every association busy to the end. A C-GET session reopens when a unit needs
    other SOP classes; `close` releases it.
    """

    def __init__(self, node: Node, own_aet: str, method: str, on_store: OnStore | None = None) -> None:
        self.node = node
        self.own_aet = own_aet
        self.method = method
        self.on_store = on_store
        """Called for each C-STORE of a C-GET; may be replaced between units."""
        self._stack: contextlib.ExitStack | None = None
        self._assoc = None
        self._classes: tuple[str, ...] = ()
        self._model = _model(node, method)
        self._msg_id = 0
        self._awaited = 0.0   # when the last response came (or the request went)

    def _open(self, classes: tuple[str, ...]) -> None:
        if self.method == "get":
            contexts = [(self._model, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])] + storage_contexts(classes)
            ext_neg = [build_role(cls, scp_role=True) for cls in classes]
            handlers = [(evt.EVT_C_STORE, lambda event: self.on_store(event, time.monotonic()))]
        else:
            contexts = [(self._model, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])]
            ext_neg, handlers = None, None
        stack = contextlib.ExitStack()
        self._assoc = stack.enter_context(associate(self.node, self.own_aet, contexts, ext_neg=ext_neg,
                                                    evt_handlers=handlers))
        self._stack = stack
        self._classes = classes

    def prepare(self, classes: tuple[str, ...]) -> None:
        """Open the association now for units of these SOP classes (raises NetworkError)."""
        if self._assoc is None:
            self._open(classes)

    def close(self, exc_info=(None, None, None)) -> None:
        """Release the association (abort it when `exc_info` holds the error that ends it)."""
        stack, self._stack, self._assoc = self._stack, None, None
        if stack is not None:
            stack.__exit__(*exc_info)

    def run(self, unit: Unit, cancel: CancelFlag) -> UnitOutcome:
        """Send one C-GET (instances answered by `on_store`) or C-MOVE (to `own_aet`) and read it to its end.

        Raises NetworkError when the association cannot be opened.
        """
        outcome = UnitOutcome()
        if cancel.cancelled:
            return outcome
        if self._assoc is not None and (not self._assoc.is_established
                                        or (self.method == "get" and unit.sop_classes != self._classes)):
            self.close()
        if self._assoc is None:
            self._open(unit.sop_classes)
        assoc, self._awaited = self._assoc, time.monotonic()
        try:
            final, cancel_sent = self._request(unit, cancel)
        except BaseException:
            self.close(sys.exc_info())
            raise
        if final is None and not cancel.cancelled:
            ended = how_it_ended(assoc)
            if ended == "ours" and time.monotonic() - self._awaited >= self.node.network_timeout * 0.9:
                outcome.errors.append(f"node {self.node.name} stopped answering the {self.method.upper()} for "
                                      f"{self.node.network_timeout:g} s (what arrived is kept; retrieve again to "
                                      "fetch the rest)")
            else:
                outcome.errors.append(f"node {self.node.name} ended the association in the middle of the transfer "
                                      "(what arrived is kept; retrieve again to fetch the rest)")
        if final is None or cancel_sent:
            self.close()   # the node ended it, or what is in flight after a cancel is not worth waiting for
        if final is None:
            return outcome
        outcome.failed = int(final.get("NumberOfFailedSuboperations", 0) or 0)
        outcome.warning = int(final.get("NumberOfWarningSuboperations", 0) or 0)
        text = final_status_text(self.node, self.own_aet, self.method, int(final.Status),
                                 str(final.get("ErrorComment", "") or ""))
        if text:
            outcome.errors.append(text)
        return outcome

    def _request(self, unit: Unit, cancel: CancelFlag):
        """(the final response or None when the association ended first, whether a C-CANCEL went out)."""
        assoc = self._assoc
        self._msg_id = self._msg_id % 65535 + 1
        msg_id = self._msg_id
        context_id = next(c.context_id for c in assoc.accepted_contexts if c.abstract_syntax == self._model)
        request = identifier(unit, self.node.model == "patient")
        if self.method == "get":
            responses = assoc.send_c_get(request, self._model, msg_id=msg_id)
        else:
            responses = assoc.send_c_move(request, self.own_aet, self._model, msg_id=msg_id)
        cancel_sent = False
        for status, _ in responses:
            if not status or "Status" not in status:
                return None, cancel_sent
            self._awaited = time.monotonic()
            if status.Status in PENDING:
                if cancel.cancelled and not cancel_sent:
                    assoc.send_c_cancel(msg_id, context_id)
                    cancel_sent = True
                continue
            return status, cancel_sent
        return None, cancel_sent


def _model(node: Node, method: str) -> str:
    patient_root = node.model == "patient"
    if method == "get":
        return PatientRootQueryRetrieveInformationModelGet if patient_root else StudyRootQueryRetrieveInformationModelGet
    return PatientRootQueryRetrieveInformationModelMove if patient_root else StudyRootQueryRetrieveInformationModelMove


def run_unit(node: Node, own_aet: str, unit: Unit, method: str, on_store: OnStore | None,
             cancel: CancelFlag) -> UnitOutcome:
    """One unit over an association of its own (a `Session` used once)."""
    session = Session(node, own_aet, method, on_store)
    try:
        return session.run(unit, cancel)
    finally:
        session.close()


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
