"""Search filters and their translation into SQL over the denormalised study table.

Matching follows C-FIND semantics so that a local search and a PACS search of the same filter agree:
a value without wildcards matches exactly, `*` and `?` are DICOM wildcards, a backslash separates
alternatives for UIDs and modalities, and dates take the range forms. Names and descriptions are
compared case-insensitively on casefolded copies (so Cyrillic and accented names fold too);
PatientID and AccessionNumber are case-sensitive as DICOM defines them. `text` is the loose search
of the GUI's search bar: a case-insensitive substring of name, ID, accession or description.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from workstation.core.cache.reports import CacheError

LEVELS = ("patient", "study", "series", "instance")
_DATE_RE = re.compile(r"(\d{8})?(-)?(\d{8})?")


@dataclass(frozen=True)
class QueryFilter:
    PatientName: str = ""
    PatientID: str = ""
    AccessionNumber: str = ""
    StudyDate: str = ""
    Modality: str = ""
    StudyDescription: str = ""
    StudyInstanceUID: str = ""
    SeriesInstanceUID: str = ""
    text: str = ""


def fold(value: str) -> str:
    return value.casefold()


def search_text(name: str, patient_id: str, accession: str, description: str) -> str:
    """The haystack the `text` filter searches: one casefolded line per field."""
    return fold("\n".join((name, patient_id, accession, description)))


def _glob_escape(value: str) -> str:
    return value.replace("[", "[[]")


def match(column: str, value: str, clauses: list[str], params: list) -> None:
    """Single-value or wildcard matching of `value` against `column`; a lone `*` matches everything."""
    if not value or value.strip("*") == "" and "*" in value:
        return
    if "*" in value or "?" in value:
        clauses.append(f"{column} GLOB ?")
        params.append(_glob_escape(value))
    else:
        clauses.append(f"{column} = ?")
        params.append(value)


def date_range(column: str, value: str, clauses: list[str], params: list) -> None:
    value = value.strip()
    if not value:
        return
    m = _DATE_RE.fullmatch(value)
    if not m or not (m.group(1) or m.group(3)) or (m.group(1) and m.group(3) and not m.group(2)):
        raise CacheError(f"invalid date {value!r}: use YYYYMMDD, YYYYMMDD-YYYYMMDD, YYYYMMDD- or -YYYYMMDD")
    start, dash, end = m.groups()
    if not dash:
        clauses.append(f"{column} = ?")
        params.append(start)
        return
    if start:
        clauses.append(f"{column} >= ?")
        params.append(start)
    if end:
        clauses.append(f"{column} <= ? AND {column} != ''")
        params.append(end)


def uid_list(column: str, value: str, clauses: list[str], params: list) -> None:
    uids = [u.strip() for u in value.split("\\") if u.strip()]
    if uids:
        clauses.append(f"{column} IN ({','.join('?' * len(uids))})")
        params.extend(uids)


def modalities(value: str) -> list[str]:
    return [m.strip().upper() for m in value.split("\\") if m.strip()]


def study_clauses(f: QueryFilter, level: str) -> tuple[list[str], list]:
    """WHERE clauses over `studies s` (and `series se` at series level and below)."""
    clauses: list[str] = []
    params: list = []
    match("s.name_fold", fold(f.PatientName), clauses, params)
    match("s.PatientID", f.PatientID, clauses, params)
    match("s.AccessionNumber", f.AccessionNumber, clauses, params)
    match("s.desc_fold", fold(f.StudyDescription), clauses, params)
    date_range("s.StudyDate", f.StudyDate, clauses, params)
    uid_list("s.StudyInstanceUID", f.StudyInstanceUID, clauses, params)
    mods = modalities(f.Modality)
    series_level = level in ("series", "instance")
    if mods:
        marks = ",".join("?" * len(mods))
        if series_level:
            clauses.append(f"se.Modality IN ({marks})")
        else:
            clauses.append(f"s.StudyInstanceUID IN (SELECT StudyInstanceUID FROM series WHERE Modality IN ({marks}))")
        params.extend(mods)
    if f.SeriesInstanceUID:
        if series_level:
            uid_list("se.SeriesInstanceUID", f.SeriesInstanceUID, clauses, params)
        else:
            sub: list[str] = []
            uid_list("SeriesInstanceUID", f.SeriesInstanceUID, sub, params)
            clauses.append(f"s.StudyInstanceUID IN (SELECT StudyInstanceUID FROM series WHERE {sub[0]})")
    if f.text.strip():
        clauses.append("instr(s.text_fold, ?) > 0")
        params.append(fold(f.text.strip()))
    return clauses, params
