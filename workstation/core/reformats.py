"""Storing reformatted planes (an MPR plane, or a stack of parallel planes) as a derived series in the
cache, beside their source series, so they can be shown, sent to the PACS or printed like any other.
Qt-free; the window and the command line both call `store_derived_series`.

Every instance is made first (cancellable, with progress) and then stored in one transaction, so a
cancelled export, or one the disk cannot hold, leaves nothing half-stored in the cache.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pydicom
from pydicom.uid import generate_uid

from workstation.core.cache import Cache
from workstation.core.dicom.derived import SourceImage, derived_series
from workstation.core.dicom.geometry import ImagePlane
from workstation.core.dicom.key_objects import to_part10
from workstation.core.tasks import CancelToken, Progress, no_progress


def _source_header(cache: Cache, series_uid: str) -> pydicom.Dataset:
    """One image header of the source series (patient, study, frame of reference, equipment)."""
    instances = cache.instances(series_uid)
    if not instances:
        raise ValueError(f"no series {series_uid} in the local cache")
    problem = ""
    for instance in instances:
        if not instance.Rows:
            continue   # a document in the series (a KOS, a presentation state): no image header
        try:
            return pydicom.dcmread(instance.path, stop_before_pixels=True)
        except Exception as exc:   # any unreadable file: try the next, and say why when none can be read
            problem = f"{type(exc).__name__}: {exc}"
    raise ValueError(f"no image of series {series_uid} can be read" + (f" ({problem})" if problem else ""))


def _next_series_number(cache: Cache, study_uid: str) -> int:
    numbers = [s.SeriesNumber for s in cache.series(study_uid) if s.SeriesNumber is not None]
    return max(numbers, default=0) + 1


def store_derived_series(
    cache: Cache,
    source_series_uid: str,
    planes: Iterable[tuple[np.ndarray, ImagePlane]],
    description: str,
    *,
    slab: tuple[str, float] | None = None,
    window=None,
    series_number: int | None = None,
    progress: Progress = no_progress,
    cancel: CancelToken | None = None,
) -> str:
    """Store planes of modality values resliced from a cached series as one new series of its study;
    returns its Series Instance UID.

    `planes` are (values, ImagePlane) pairs, one or a stack of parallel ones (numbered along their
    normal); `slab` None or (mip|minip|avg, thickness mm); `window` (center, width) as the viewer shows
    it; `series_number` defaults to the next after the study's highest. ValueError says in words what
    cannot be made, CacheError what cannot be stored; Cancelled leaves nothing stored.
    """
    source = _source_header(cache, source_series_uid)
    sources = [SourceImage(instance.SOPClassUID, instance.SOPInstanceUID, record.plane())
               for instance, record in cache.instance_records(source_series_uid) if record.is_image]
    planes = list(planes)
    if series_number is None:
        series_number = _next_series_number(cache, str(source.get("StudyInstanceUID", "")))
    series_uid = generate_uid()
    made = derived_series(planes, source, description=description, series_uid=series_uid,
                          series_number=series_number, slab=slab, window=window, sources=sources or None)
    total = len(planes)
    blobs = []
    for done, ds in enumerate(made, 1):
        if cancel is not None:
            cancel.raise_if_cancelled()
        blobs.append(to_part10(ds))
        progress(done, total, f"making image {done} of {total}")
    if cancel is not None:
        cancel.raise_if_cancelled()
    outcomes = cache.ingest_many(blobs)
    refused = [o for o in outcomes if not isinstance(o, str)]
    if refused:
        raise ValueError(f"the cache refused {len(refused)} of the {total} derived images: {refused[0]}")
    progress(total, total, f"stored {total} image{'s' if total != 1 else ''} as series {series_number}")
    return series_uid
