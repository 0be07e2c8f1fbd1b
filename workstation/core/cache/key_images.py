"""Key-image documents (Key Object Selection, KOS) in the cache: listing a study's, replacing ours.

A KOS is stored like any instance (a Modality KO series without pixels). It is never edited: a
changed selection is a new instance, and `replace_key_object` stores it and removes our previous
ones in the same unit, so no moment shows both or neither; documents from other systems are kept.
The caller names the document of ours it started from, so two writers (the window and the CLI)
cannot silently drop each other's change: the second is told to read the key images again.
"""

from __future__ import annotations

import contextlib
import io
import os

import pydicom

from workstation.core.cache import files, rows
from workstation.core.cache.ingest import Ingest
from workstation.core.cache.parse import parse_instance
from workstation.core.cache.reports import CacheError
from workstation.core.cache.schema import INSTANCE_FIELDS
from workstation.core.dicom.key_objects import (
    KEY_OBJECT_SELECTION,
    KeyObject,
    content_order,
    load_key_object,
    read_key_object,
)
from workstation.core.model.records import KeyObjectInstance


class KeyObjectsChanged(CacheError):
    """Our key images of the study changed since the caller read them; nothing was written."""


def _listed(path: str, sop: str, series: str, study: str, document: KeyObject | None, problem: str = "") -> KeyObjectInstance:
    if document is None:
        return KeyObjectInstance(path=path, SOPInstanceUID=sop, SeriesInstanceUID=series, StudyInstanceUID=study,
                                 problem=problem)
    return KeyObjectInstance(
        path=path, SOPInstanceUID=sop, SeriesInstanceUID=series, StudyInstanceUID=study,
        ContentDate=document.ContentDate, ContentTime=document.ContentTime, Manufacturer=document.Manufacturer,
        title=document.title, ours=document.ours, images=len(document.images),
        rejection_note=document.is_rejection_note,
    )


class KeyImages(Ingest):
    """The key-image documents of a study."""

    def key_objects(self, study_uid: str) -> list[KeyObjectInstance]:
        """The study's KOS instances in the cache, newest first (by Content Date and Time, then arrival).

        Each file is read (they are small); one that cannot be read is listed with its `problem`.
        """
        with self._lock:
            found = self._key_object_rows(study_uid)
        return self._read_listed(study_uid, found)

    def _key_object_rows(self, study_uid: str) -> list:
        return self._db().execute(
            "SELECT SOPInstanceUID, SeriesInstanceUID, path, added FROM instances "
            "WHERE StudyInstanceUID = ? AND SOPClassUID = ?",
            (study_uid, KEY_OBJECT_SELECTION),
        ).fetchall()

    def _read_listed(self, study_uid: str, found: list) -> list[KeyObjectInstance]:
        """The documents of these rows read from their files (outside the connection's lock when listing)."""
        listed = []
        for sop, series, relpath, added in found:
            path = str(self._abs(relpath))
            try:
                entry = _listed(path, sop, series, study_uid, load_key_object(path))
            except ValueError as exc:
                entry = _listed(path, sop, series, study_uid, None, str(exc))
            listed.append((content_order(entry.ContentDate, entry.ContentTime), added, entry))
        listed.sort(key=lambda item: (item[0], item[1]), reverse=True)
        return [entry for _, _, entry in listed]

    def replace_key_object(self, study_uid: str, data: bytes | None, replaces: str | None) -> KeyObjectInstance | None:
        """Store a new key-image document of ours and remove our previous ones from the study, in one unit.

        `data` is the new document's Part-10 bytes (see `key_objects.build_key_object`), or None to
        remove ours without a successor (no key images left). `replaces` is the SOP Instance UID of
        the newest document of ours the new one was made from, None if there was none; when another
        writer replaced it meanwhile, KeyObjectsChanged is raised and nothing is written. Documents
        of other systems stay. Returns the new document as `key_objects` lists it.
        """
        parsed = document = None
        if data is not None:
            parsed = parse_instance(bytes(data))
            if parsed.instance_attrs["SOPClassUID"] != KEY_OBJECT_SELECTION:
                raise CacheError(f"{parsed.sop} is not a Key Object Selection document")
            if parsed.study != study_uid:
                raise CacheError(f"the key-image document {parsed.sop} belongs to study {parsed.study}, not {study_uid}")
            try:
                document = read_key_object(pydicom.dcmread(io.BytesIO(parsed.data)))
            except ValueError as exc:
                raise CacheError(f"the key-image document {parsed.sop} cannot be read back: {exc}") from None
            if not document.ours:
                raise CacheError(f"the key-image document {parsed.sop} was not made by this workstation "
                                 f"(Manufacturer {document.Manufacturer!r}); store it with ingest_bytes")
        with self._stripe(study_uid), self._unit() as unit:
            listed = self._read_listed(study_uid, self._key_object_rows(study_uid))
            ours = [k for k in listed if k.ours and (parsed is None or k.SOPInstanceUID != parsed.sop)]
            newest = ours[0].SOPInstanceUID if ours else None
            if newest != replaces:
                now = f"document {newest}" if newest else "no document of ours"
                raise KeyObjectsChanged(f"the key images of study {study_uid} were changed meanwhile (by another "
                                        f"window or command; it now has {now}): read them again and redo the change")
            if parsed is not None:
                pending: list = []
                self._place(unit, parsed, self._old_rows([parsed.sop]).get(parsed.sop), pending, durable=True)
                self._flush(unit, pending)
            conn = self._db()
            for old in ours:
                row = conn.execute(f"SELECT {INSTANCE_FIELDS} FROM instances WHERE SOPInstanceUID = ?",
                                   (old.SOPInstanceUID,)).fetchone()
                rows.remove_row(conn, row)
                # Unlinked only once the removal commits: a crash before leaves the file, which verify
                # re-indexes (an older document of ours, superseded by the new one), never neither.
                unit.after_commit(lambda path=old.path: _unlink(path))
        if parsed is None:
            return None
        path = str(self._abs(files.relative_path(parsed.study, parsed.series, parsed.sop)))
        return _listed(path, parsed.sop, parsed.series, study_uid, document)


def _unlink(path: str) -> None:
    with contextlib.suppress(OSError):  # left behind, verify --repair indexes it again: superseded, not lost
        os.unlink(path)
