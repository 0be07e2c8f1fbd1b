"""The local cache: a file store with atomic writes and an SQLite index of what it holds.

Layout under `home/cache/`:
    index.sqlite                              the index (WAL mode)
    files/<st[:2]>/<st>/<se>/<sop>.dcm        st, se, sop = sha1 hex of the Study, Series, SOP Instance UID
    trash/                                    study folders being deleted (emptied by delete and verify)
File names come from hashes of validated UIDs, never from header text, so no header can steer a write.

Crash safety: a file is written to a hidden temporary name in its final folder and renamed into
place before its index row commits. Whatever a kill -9 leaves is therefore a stray temporary file,
or a whole file without a row; `verify(repair=True)` deletes the first and re-indexes the second.
Single ingests (network receivers) fsync the file and its folder before the row commits; bulk
imports do not fsync per file (it would make them several times slower than a copy) and commit
rows in batches: after a power failure the last seconds of a bulk import may be lost or
truncated, which verify detects by comparing file sizes with the index.

Duplicates: a file is compared with what is stored only when its SOP Instance UID is already in
the index (sizes first, then bytes), so no content is hashed on the way in. Same bytes: skipped;
different bytes: replaced and reported; stored file missing or damaged: stored again.

Each instance row also keeps a compact JSON slice record (geometry, pixel format, where the native
pixel bytes start), so `volume_slices` can open a series as a volume without reading any header.

The parts live in their own modules: `files` (file store), `schema` and `rows` (the index),
`ingest` (import pipeline), `reads` (queries), `maintenance` (delete, evict, verify), `key_images`
(key-image documents, stored as instances), `annotations` (the viewer's, in the state file), all on
the folders, connection and locks of `core`; `Cache` puts them together.
"""

from __future__ import annotations

from workstation.core.cache.annotations import Annotations
from workstation.core.cache.key_images import KeyImages
from workstation.core.cache.maintenance import Maintenance
from workstation.core.cache.reads import Reads


class Cache(KeyImages, Annotations, Reads, Maintenance):
    """The workstation's local store of DICOM instances (see the module docstring for the design)."""
