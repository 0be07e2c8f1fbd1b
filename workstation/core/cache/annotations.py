"""The viewer's annotations (measurements drawn on images), kept as JSON documents in the state file.

They are the user's work and nothing in the DICOM files can give them back, so they live in
`state.sqlite` beside pins and access times: a rebuild of the index keeps them, eviction keeps them
(the study may come back from the PACS), an explicit delete of the study removes them. A study's
set is replaced whole, in one transaction; a set that cannot be stored exactly is refused before
anything is written.
"""

from __future__ import annotations

import json
import logging
import math
import sqlite3

from workstation.core.cache.core import CacheCore
from workstation.core.cache.reports import CacheError

log = logging.getLogger(__name__)

REQUIRED = ("uid", "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "frame", "kind")
"""Keys every annotation document has."""


class AnnotationRefused(CacheError):
    """A set of annotations that cannot be stored as given; nothing was written."""


def _problem(value, where: str) -> str:
    """Why `value` would not come back from JSON as it is ('' when it would)."""
    if value is None or isinstance(value, bool | str):
        return ""
    if isinstance(value, int):
        return ""
    if isinstance(value, float):
        return "" if math.isfinite(value) else f"{where} is {value!r}, which JSON has no number for"
    if isinstance(value, list | tuple):
        for i, item in enumerate(value):
            found = _problem(item, f"{where}[{i}]")
            if found:
                return found
        return ""
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                return f"{where} has the key {key!r}, but JSON keys are text"
            found = _problem(item, f"{where}[{key!r}]")
            if found:
                return found
        return ""
    return f"{where} is a {type(value).__name__}, which JSON cannot hold"


def encode(study_uid: str, documents: list[dict]) -> list[tuple[str, str]]:
    """Each document's (uid, JSON text); AnnotationRefused says which one cannot be stored, and why."""
    if not isinstance(documents, list | tuple):
        raise AnnotationRefused(f"the annotations of study {study_uid} must be a list of documents, "
                                f"not a {type(documents).__name__}")
    out: list[tuple[str, str]] = []
    seen: set[str] = set()
    for n, doc in enumerate(documents, 1):
        label = f"annotation {n}"
        if not isinstance(doc, dict):
            raise AnnotationRefused(f"{label} of study {study_uid} is a {type(doc).__name__}, not a document (dict)")
        uid = doc.get("uid")
        if isinstance(uid, str) and uid:
            label = f"annotation {n} (uid {uid!r})"
        missing = [k for k in REQUIRED if k not in doc]
        if missing:
            raise AnnotationRefused(f"{label} of study {study_uid} has no {', '.join(missing)}")
        if not isinstance(uid, str) or not uid:
            raise AnnotationRefused(f"{label} of study {study_uid}: its uid must be non-empty text")
        if not isinstance(doc["kind"], str) or not doc["kind"]:
            raise AnnotationRefused(f"{label} of study {study_uid}: its kind must be non-empty text")
        if doc["StudyInstanceUID"] != study_uid:
            raise AnnotationRefused(f"{label} belongs to study {doc['StudyInstanceUID']!r}, not to {study_uid}")
        frame = doc["frame"]
        if frame is not None and (isinstance(frame, bool) or not isinstance(frame, int)):
            raise AnnotationRefused(f"{label} of study {study_uid}: its frame must be a whole number or null")
        if uid in seen:
            raise AnnotationRefused(f"{label} of study {study_uid}: two annotations have this uid")
        seen.add(uid)
        problem = _problem(doc, "it")
        if problem:
            raise AnnotationRefused(f"{label} of study {study_uid} cannot be stored: {problem}")
        out.append((uid, json.dumps(doc, ensure_ascii=False, allow_nan=False, separators=(",", ":"))))
    return out


def forget(conn: sqlite3.Connection, study_uid: str) -> int:
    """Inside a unit: remove a study's annotations (an explicit delete); returns how many."""
    return conn.execute("DELETE FROM state.annotations WHERE StudyInstanceUID = ?", (study_uid,)).rowcount


class Annotations(CacheCore):
    """Annotations per study, in the state file."""

    def annotations(self, study_uid: str) -> list[dict]:
        """The study's annotation documents in the order they were saved ([] when it has none)."""
        with self._lock:
            found = self._db().execute(
                "SELECT uid, document FROM state.annotations WHERE StudyInstanceUID = ? ORDER BY position",
                (study_uid,),
            ).fetchall()
        documents = []
        for uid, text in found:
            try:
                documents.append(json.loads(text))
            except ValueError:  # only a damaged state file salvaged in part could hold one
                log.warning("annotation %s of study %s could not be read back and is left out", uid, study_uid)
        return documents

    def save_annotations(self, study_uid: str, documents: list[dict]) -> None:
        """Replace the study's annotations with `documents`, in one transaction.

        Each is a dict with at least REQUIRED keys, belonging to this study, its uid unique; a set that
        would not come back from JSON as given (a set, NaN, a non-text key, ...) raises AnnotationRefused
        naming the document and the value, and nothing is written.
        """
        encoded = encode(study_uid, documents)
        with self._write() as conn:
            conn.execute("DELETE FROM state.annotations WHERE StudyInstanceUID = ?", (study_uid,))
            taken = conn.execute(
                f"SELECT uid, StudyInstanceUID FROM state.annotations WHERE uid IN ({','.join('?' * len(encoded))})",
                [uid for uid, _ in encoded],
            ).fetchone() if encoded else None
            if taken is not None:
                raise AnnotationRefused(f"annotation uid {taken[0]!r} is already used by study {taken[1]}")
            conn.executemany(
                "INSERT INTO state.annotations(uid, StudyInstanceUID, position, document) VALUES (?, ?, ?, ?)",
                [(uid, study_uid, i, text) for i, (uid, text) in enumerate(encoded)],
            )

    def annotated_studies(self) -> dict[str, int]:
        """Every study with annotations, and how many it has (also studies no longer in the cache)."""
        with self._lock:
            found = self._db().execute(
                "SELECT StudyInstanceUID, count(*) FROM state.annotations GROUP BY StudyInstanceUID"
            ).fetchall()
        return {study: n for study, n in found}
