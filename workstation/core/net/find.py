"""C-FIND at study, series and image level, Study Root or Patient Root, results as they arrive.

`find` is a generator: the browser shows rows while the PACS is still sending. Cancelling the
token, or reaching the result cap, sends C-CANCEL so the PACS stops searching too.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass

from pydicom.dataset import Dataset
from pynetdicom.sop_class import (
    PatientRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelFind,
)

from workstation.core.cache.query import QueryFilter
from workstation.core.dicom.values import header_value, integer, text
from workstation.core.model import Instance, Series, Study
from workstation.core.model.node import Node
from workstation.core.net.association import NetworkError, associate, no_answer_text
from workstation.core.tasks import CancelToken

LEVELS = {"study": "STUDY", "series": "SERIES", "image": "IMAGE", "instance": "IMAGE"}

STUDY_KEYS = ["PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyInstanceUID", "StudyDate",
              "StudyTime", "StudyDescription", "AccessionNumber", "ReferringPhysicianName", "StudyID",
              "ModalitiesInStudy", "NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances"]
SERIES_KEYS = ["StudyInstanceUID", "SeriesInstanceUID", "Modality", "SeriesNumber", "SeriesDescription",
               "BodyPartExamined", "SeriesDate", "SeriesTime", "NumberOfSeriesRelatedInstances"]
IMAGE_KEYS = ["StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID", "InstanceNumber",
              "NumberOfFrames", "Rows", "Columns"]

PENDING = (0xFF00, 0xFF01)


@dataclass
class FindOutcome:
    """What the search ended with, beside the records: capped, cancelled, or a warning."""

    count: int = 0
    capped: bool = False
    cancelled: bool = False
    warning: str = ""


def identifier(level: str, query: QueryFilter) -> Dataset:
    """The C-FIND identifier: matching keys from the filter, empty return keys for the rest."""
    ds = Dataset()
    ds.QueryRetrieveLevel = LEVELS[level]
    keys = {"study": STUDY_KEYS, "series": STUDY_KEYS[:2] + SERIES_KEYS, "image": IMAGE_KEYS}
    for key in keys["image" if level == "instance" else level]:
        setattr(ds, key, None)
    matching = {
        "PatientName": query.PatientName,
        "PatientID": query.PatientID,
        "AccessionNumber": query.AccessionNumber,
        "StudyDate": query.StudyDate,
        "StudyDescription": query.StudyDescription,
        "StudyInstanceUID": query.StudyInstanceUID,
        "SeriesInstanceUID": query.SeriesInstanceUID,
        "ReferringPhysicianName": getattr(query, "ReferringPhysicianName", ""),
    }
    for key, value in matching.items():
        if value and (key in ds or level == "study" or key in ("StudyInstanceUID", "SeriesInstanceUID")):
            setattr(ds, key, value)
    if query.Modality:
        if level == "study":
            ds.ModalitiesInStudy = query.Modality
        elif level == "series":
            ds.Modality = query.Modality
    return ds


def record(level: str, ds: Dataset) -> Study | Series | Instance:
    if level == "study":
        modalities = header_value(ds, "ModalitiesInStudy") or ""
        if isinstance(modalities, str):
            modalities = [m for m in modalities.split("\\") if m]
        return Study(
            StudyInstanceUID=text(ds, "StudyInstanceUID"), PatientID=text(ds, "PatientID"),
            PatientName=text(ds, "PatientName"), PatientBirthDate=text(ds, "PatientBirthDate"),
            PatientSex=text(ds, "PatientSex"), StudyDate=text(ds, "StudyDate"), StudyTime=text(ds, "StudyTime"),
            StudyDescription=text(ds, "StudyDescription"), AccessionNumber=text(ds, "AccessionNumber"),
            ReferringPhysicianName=text(ds, "ReferringPhysicianName"), StudyID=text(ds, "StudyID"),
            ModalitiesInStudy=tuple(str(m) for m in modalities if str(m)),
            NumberOfStudyRelatedSeries=integer(ds, "NumberOfStudyRelatedSeries") or 0,
            NumberOfStudyRelatedInstances=integer(ds, "NumberOfStudyRelatedInstances") or 0,
        )
    if level == "series":
        return Series(
            SeriesInstanceUID=text(ds, "SeriesInstanceUID"), StudyInstanceUID=text(ds, "StudyInstanceUID"),
            Modality=text(ds, "Modality"), SeriesNumber=integer(ds, "SeriesNumber"),
            SeriesDescription=text(ds, "SeriesDescription"), BodyPartExamined=text(ds, "BodyPartExamined"),
            SeriesDate=text(ds, "SeriesDate"), SeriesTime=text(ds, "SeriesTime"),
            NumberOfSeriesRelatedInstances=integer(ds, "NumberOfSeriesRelatedInstances") or 0,
        )
    return Instance(
        SOPInstanceUID=text(ds, "SOPInstanceUID"), SeriesInstanceUID=text(ds, "SeriesInstanceUID"),
        StudyInstanceUID=text(ds, "StudyInstanceUID"), SOPClassUID=text(ds, "SOPClassUID"),
        InstanceNumber=integer(ds, "InstanceNumber"), NumberOfFrames=integer(ds, "NumberOfFrames") or 1,
        Rows=integer(ds, "Rows") or 0, Columns=integer(ds, "Columns") or 0,
    )


def find_model(node: Node) -> str:
    return (PatientRootQueryRetrieveInformationModelFind if node.model == "patient"
            else StudyRootQueryRetrieveInformationModelFind)


def searching(node: Node, own_aet: str):
    """An association for several searches in a row (pass it as `assoc`): each saves a connection,
    a negotiation and a release, three round trips on a WAN."""
    return associate(node, own_aet, [find_model(node)])


@contextlib.contextmanager
def _association(node: Node, own_aet: str, assoc) -> Iterator:
    if assoc is not None:
        yield assoc
    else:
        with searching(node, own_aet) as opened:
            yield opened


def find(
    node: Node, own_aet: str, level: str, query: QueryFilter, limit: int = 10000,
    cancel: CancelToken | None = None, outcome: FindOutcome | None = None, assoc=None,
) -> Iterator[Study | Series | Instance]:
    """Yield records as the node sends them; `outcome` (if given) says how the search ended.

    `assoc`: one from `searching` to search on, else the search has an association of its own.
    """
    level = "image" if level == "instance" else level
    if level not in LEVELS:
        raise NetworkError(f"unknown query level {level!r}: use study, series or image")
    if level in ("series", "image") and not query.StudyInstanceUID:
        raise NetworkError(f"a {level}-level search needs the study's UID (--study-uid)")
    if level == "image" and not query.SeriesInstanceUID:
        raise NetworkError("an image-level search needs the series' UID (--series-uid)")
    outcome = outcome if outcome is not None else FindOutcome()
    model = find_model(node)
    ds = identifier(level, query)
    with _association(node, own_aet, assoc) as assoc:
        context_id = next(c.context_id for c in assoc.accepted_contexts if c.abstract_syntax == model)
        responses = assoc.send_c_find(ds, model, msg_id=1)
        answered = False
        awaited = time.monotonic()
        for status, found in responses:
            if not status or "Status" not in status:
                break
            answered = True
            code = status.Status
            if code in PENDING:
                if found is None:
                    continue
                if (cancel is not None and cancel.cancelled) or outcome.count >= limit:
                    outcome.cancelled = cancel is not None and cancel.cancelled
                    outcome.capped = not outcome.cancelled
                    assoc.send_c_cancel(1, context_id)
                    _drain(responses)
                    return
                outcome.count += 1
                yield record(level, found)
                awaited = time.monotonic()   # the wait for the next response starts when we ask for it
            elif code == 0x0000:
                return
            elif code == 0xFE00:
                outcome.cancelled = True
                return
            else:
                comment = text(status, "ErrorComment")
                raise NetworkError(f"node {node.name} ended the search with status 0x{code:04X}"
                                   + (f": {comment}" if comment else ""))
        if not answered:
            raise NetworkError(no_answer_text(assoc, node, own_aet, "the search", awaited))
        raise NetworkError(no_answer_text(assoc, node, own_aet, "the rest of the search", awaited))


def study_sop_classes(node: Node, own_aet: str, study_uid: str, assoc=None) -> tuple[str, ...]:
    """SOP Classes in Study (0008,0062) as the node reports them; () when it does not.

    A retrieval needs the SOP classes for C-GET role selection; asking the study once is much
    cheaper than an image-level search (Orthanc answers that at about 1 ms per instance).
    """
    model = find_model(node)
    ds = Dataset()
    ds.QueryRetrieveLevel = "STUDY"
    ds.StudyInstanceUID = study_uid
    ds.SOPClassesInStudy = None
    if node.model == "patient":
        ds.PatientID = None
    classes: list[str] = []
    with _association(node, own_aet, assoc) as assoc:
        asked = time.monotonic()
        for status, found in assoc.send_c_find(ds, model, msg_id=1):
            if not status or "Status" not in status:
                raise NetworkError(no_answer_text(assoc, node, own_aet, "the search for the study's SOP classes", asked))
            if status.Status not in PENDING:
                break
            if found is not None:
                value = found.get("SOPClassesInStudy", None)
                values = value if isinstance(value, list) or type(value).__name__ == "MultiValue" else [value]
                classes.extend(str(v).strip() for v in values if v and str(v).strip())
    return tuple(dict.fromkeys(classes))


def instance_uids(node: Node, own_aet: str, study_uid: str, series_uid: str,
                  cancel: CancelToken | None = None, numbered: bool = False, assoc=None) -> list:
    """The SOP Instance UIDs of one series (with `numbered`, (UID, Instance Number or None) pairs).

    The cheapest listing a PACS can give: Orthanc answers it from its index (0.06 s for 140
    instances) but reads every file when asked for the SOP Class UID as well (0.17 s).
    """
    model = find_model(node)
    ds = Dataset()
    ds.QueryRetrieveLevel = "IMAGE"
    if node.model == "patient":
        ds.PatientID = None
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.SOPInstanceUID = None
    if numbered:
        ds.InstanceNumber = None
    listed: list = []
    with _association(node, own_aet, assoc) as assoc:
        context_id = next(c.context_id for c in assoc.accepted_contexts if c.abstract_syntax == model)
        responses = assoc.send_c_find(ds, model, msg_id=1)
        asked = time.monotonic()
        for status, found in responses:
            if not status or "Status" not in status:
                raise NetworkError(no_answer_text(assoc, node, own_aet, "the search for the series' images", asked))
            if status.Status not in PENDING:
                break
            if cancel is not None and cancel.cancelled:
                assoc.send_c_cancel(1, context_id)
                _drain(responses)
                break
            uid = text(found, "SOPInstanceUID") if found is not None else ""
            if uid:
                listed.append((uid, integer(found, "InstanceNumber")) if numbered else uid)
            asked = time.monotonic()
    return listed


def _drain(responses) -> None:
    """Read the responses still in flight after C-CANCEL, up to the final one."""
    for status, _found in responses:
        if not status or "Status" not in status or status.Status not in PENDING:
            return
