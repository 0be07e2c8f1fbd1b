"""A look at a remote series before retrieving it: its middle image, fetched into memory only.

The browser shows a thumbnail for every series of a study on a node. For a series the cache
lacks, one instance is fetched by an image-level C-GET and kept in memory: the cache (and the
"where is it" count) is not touched, so a preview never turns a remote series into a partial one.
"""

from __future__ import annotations

from pydicom.dataset import Dataset
from pynetdicom.sop_class import CTImageStorage, MRImageStorage

from workstation.core.model.node import Node
from workstation.core.net.association import NetworkError
from workstation.core.net.find import instance_uids, study_sop_classes
from workstation.core.net.transfer import Unit, run_unit
from workstation.core.tasks import CancelToken


def middle_instance(node: Node, own_aet: str, study_uid: str, series_uid: str,
                    cancel: CancelToken | None = None) -> str:
    """The SOP Instance UID in the middle of the series, by Instance Number when the node gives it."""
    listed = instance_uids(node, own_aet, study_uid, series_uid, cancel, numbered=True)
    if not listed:
        raise NetworkError(f"node {node.name} has no images in series {series_uid}")
    listed.sort(key=lambda entry: (entry[1] is None, entry[1] or 0))
    return listed[len(listed) // 2][0]


def fetch_preview(node: Node, own_aet: str, study_uid: str, series_uid: str,
                  cancel: CancelToken | None = None) -> Dataset:
    """The middle instance of a remote series as a decoded data set (with its File Meta)."""
    cancel = cancel or CancelToken()
    sop = middle_instance(node, own_aet, study_uid, series_uid, cancel)
    classes = study_sop_classes(node, own_aet, study_uid) or (CTImageStorage, MRImageStorage)
    received: list[Dataset] = []

    def on_store(event, arrived: float) -> int:
        ds = event.dataset
        ds.file_meta = event.file_meta
        received.append(ds)
        return 0x0000

    outcome = run_unit(node, own_aet, Unit(study_uid, series_uid, (sop,), False, tuple(classes)), "get",
                       on_store, cancel)
    if not received:
        reason = outcome.errors[0] if outcome.errors else f"node {node.name} sent no image for the preview"
        raise NetworkError(reason)
    return received[0]
