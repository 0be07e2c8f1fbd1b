"""The local cache: a crash-safe file store of DICOM instances with an SQLite index for the browser.

Qt-free; the CLI, the GUI services and the network receivers all go through `Cache`.
"""

from workstation.core.cache.annotations import AnnotationRefused
from workstation.core.cache.key_images import KeyObjectsChanged
from workstation.core.cache.maintenance import rebuild_index
from workstation.core.cache.query import QueryFilter
from workstation.core.cache.reports import (
    CacheBusy,
    CacheError,
    CacheFull,
    EvictReport,
    ImportReport,
    IndexDamaged,
    Rejection,
    VerifyReport,
)
from workstation.core.cache.store import Cache

__all__ = [
    "AnnotationRefused",
    "Cache",
    "CacheBusy",
    "CacheError",
    "CacheFull",
    "EvictReport",
    "ImportReport",
    "IndexDamaged",
    "KeyObjectsChanged",
    "QueryFilter",
    "Rejection",
    "VerifyReport",
    "rebuild_index",
]
