"""C-STORE of cached studies or series to a node (send to PACS), with per-instance results.

Files go as they are stored (pynetdicom sends a file's encoded data set without decoding it)
when the node accepts their transfer syntax; otherwise they are decompressed to Explicit VR
Little Endian, which every Storage SCP must accept.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import pydicom
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from workstation.core.cache import Cache
from workstation.core.model import Instance
from workstation.core.model.node import Node
from workstation.core.net.association import NetworkError, associate, no_answer_text
from workstation.core.tasks import Cancelled, CancelToken, Progress, no_progress

MAX_CONTEXTS = 127
WARNING_STATUSES = (0x0001, 0xB000, 0xB006, 0xB007)


@dataclass
class SendReport:
    sent: int = 0
    warning: int = 0
    failed: int = 0
    bytes: int = 0
    seconds: float = 0.0
    failures: list[dict] = field(default_factory=list)   # {"SOPInstanceUID", "reason"}

    def to_json(self) -> dict:
        return {"sent": self.sent, "warning": self.warning, "failed": self.failed, "bytes": self.bytes,
                "seconds": round(self.seconds, 4), "failures": list(self.failures)}


def instances_to_send(cache: Cache, study_uid: str, series_uids: list[str] | None) -> list[Instance]:
    series = [s.SeriesInstanceUID for s in cache.series(study_uid)]
    if not series:
        raise NetworkError(f"no study {study_uid} in the local cache")
    if series_uids:
        unknown = [u for u in series_uids if u not in series]
        if unknown:
            raise NetworkError(f"series {unknown[0]} is not part of study {study_uid} in the cache")
        series = [u for u in series if u in series_uids]
    return [i for s in series for i in cache.instances(s)]


def contexts_for(instances: list[Instance]) -> list[tuple[str, list[str]]]:
    """Each (SOP class, stored syntax) alone, plus the uncompressed fallbacks per SOP class."""
    pairs: dict[tuple[str, str], None] = {}
    for inst in instances:
        pairs[(inst.SOPClassUID, inst.TransferSyntaxUID)] = None
    classes = list(dict.fromkeys(i.SOPClassUID for i in instances))
    contexts = [(cls, [ts]) for cls, ts in pairs if ts not in (ExplicitVRLittleEndian, ImplicitVRLittleEndian)]
    contexts += [(cls, [ExplicitVRLittleEndian, ImplicitVRLittleEndian]) for cls in classes]
    if len(contexts) > MAX_CONTEXTS:
        raise NetworkError(f"these instances need {len(contexts)} presentation contexts, more than one "
                           "association can carry (127): send fewer series at a time")
    return contexts


def _accepted(assoc, sop_class: str, syntax: str) -> bool:
    return any(c.abstract_syntax == sop_class and syntax in c.transfer_syntax for c in assoc.accepted_contexts)


def send(node: Node, own_aet: str, cache: Cache, study_uid: str, series_uids: list[str] | None = None,
         progress: Progress = no_progress, cancel: CancelToken | None = None) -> SendReport:
    instances = instances_to_send(cache, study_uid, series_uids)
    report = SendReport()
    started = time.monotonic()
    with associate(node, own_aet, contexts_for(instances)) as assoc:
        for done, inst in enumerate(instances, 1):
            if cancel is not None and cancel.cancelled:
                exc = Cancelled()
                exc.report = report
                raise exc
            reason = ""
            asked = time.monotonic()
            try:
                if _accepted(assoc, inst.SOPClassUID, inst.TransferSyntaxUID):
                    status = assoc.send_c_store(Path(inst.path))
                elif _accepted(assoc, inst.SOPClassUID, ExplicitVRLittleEndian):
                    ds = pydicom.dcmread(inst.path)
                    ds.decompress()
                    status = assoc.send_c_store(ds)
                else:
                    status, reason = None, f"node {node.name} accepts no transfer syntax for SOP class {inst.SOPClassUID}"
            except (OSError, ValueError, RuntimeError) as exc:
                status, reason = None, f"cannot send the file: {exc}"
            code = int(status.Status) if status and "Status" in status else None
            if code == 0x0000:
                report.sent += 1
                report.bytes += inst.size_bytes
            elif code in WARNING_STATUSES:
                report.sent += 1
                report.warning += 1
                report.bytes += inst.size_bytes
            else:
                report.failed += 1
                if not reason:
                    reason = (f"status 0x{code:04X}" if code is not None
                              else no_answer_text(assoc, node, own_aet, "the C-STORE", asked))
                report.failures.append({"SOPInstanceUID": inst.SOPInstanceUID, "reason": reason})
                if not assoc.is_established:
                    for rest in instances[done:]:
                        report.failed += 1
                        report.failures.append({"SOPInstanceUID": rest.SOPInstanceUID,
                                                "reason": "not sent: the node ended the association"})
                    break
            progress(done, len(instances), inst.SOPInstanceUID)
    report.seconds = time.monotonic() - started
    return report
