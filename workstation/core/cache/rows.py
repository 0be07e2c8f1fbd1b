"""Index rows: instances added, replaced and removed, with the denormalised counts of their parents kept right.

Every function works inside the caller's transaction on the connection it is given.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable

from workstation.core.cache.parse import Parsed
from workstation.core.cache.query import fold, search_text
from workstation.core.cache.schema import INSTANCE_FIELDS

_MODALITIES_SQL = (
    "SELECT coalesce(group_concat(m, '\\'), '') FROM "
    "(SELECT DISTINCT Modality AS m FROM series WHERE StudyInstanceUID = ? AND Modality != '' ORDER BY m)"
)
_PATIENT_ATTRS = ("PatientID", "PatientName", "PatientBirthDate", "PatientSex")
_STUDY_ATTRS = ("StudyDate", "StudyTime", "StudyDescription", "AccessionNumber", "ReferringPhysicianName", "StudyID")
_SERIES_ATTRS = ("Modality", "SeriesNumber", "SeriesDescription", "BodyPartExamined", "SeriesDate", "SeriesTime")


def _merge(existing: dict, new: dict, keys: Iterable[str]) -> dict:
    """Fill attributes the index does not know yet; never overwrite a known value with a blank."""
    return {k: new[k] for k in keys if new.get(k) not in (None, "") and existing.get(k) in (None, "")}



def refresh_modalities(conn: sqlite3.Connection, study: str) -> None:
    mods = conn.execute(_MODALITIES_SQL, (study,)).fetchone()[0]
    conn.execute("UPDATE studies SET ModalitiesInStudy = ? WHERE StudyInstanceUID = ?", (mods, study))


def refresh_folds(conn: sqlite3.Connection, study: str) -> None:
    r = conn.execute(
        "SELECT PatientName, PatientID, AccessionNumber, StudyDescription FROM studies WHERE StudyInstanceUID = ?",
        (study,),
    ).fetchone()
    conn.execute(
        "UPDATE studies SET name_fold = ?, desc_fold = ?, text_fold = ? WHERE StudyInstanceUID = ?",
        (fold(r[0]), fold(r[3]), search_text(r[0], r[1], r[2], r[3]), study),
    )


def add_row(conn: sqlite3.Connection, p: Parsed, relpath: str, now: float) -> None:
    add_rows(conn, [(p, relpath, now)])


def add_rows(conn: sqlite3.Connection, items: list[tuple[Parsed, str, float]]) -> None:
    """Index new instances (none already in the index, no SOP twice) with a few statements per batch.

    The series, study and patient rows end up exactly as if the instances had been added one by
    one in order: counts add up, and attributes the index does not know yet are filled from the
    first instance that has them.
    """
    if not items:
        return

    def fetch(table: str, key: str, values: Iterable[str]) -> dict[str, dict]:
        values = list(dict.fromkeys(values))
        rows = conn.execute(
            f"SELECT * FROM {table} WHERE {key} IN ({','.join('?' * len(values))})", values
        ).fetchall()
        return {r[key]: dict(r) for r in rows}

    known_series = fetch("series", "SeriesInstanceUID", (p.series for p, _, _ in items))
    known_studies = fetch("studies", "StudyInstanceUID", (p.study for p, _, _ in items))
    known_patients = fetch("patients", "PatientID", (p.patient["PatientID"] for p, _, _ in items))
    series: dict[str, dict] = {}
    studies: dict[str, dict] = {}
    patients: dict[str, dict] = {}
    modalities_changed: set[str] = set()
    study_keys = _PATIENT_ATTRS + _STUDY_ATTRS
    for p, _, now in items:
        s_attrs = dict(p.series_attrs)
        s_attrs["Modality"] = (s_attrs.get("Modality") or "").upper()
        se = series.get(p.series)
        if se is None and p.series not in known_series:
            se = series[p.series] = {"new": True, "study": p.study, "n": 1, "fill": {}, "row": dict(s_attrs)}
            new_series = True
        else:
            if se is None:
                se = series[p.series] = {"new": False, "n": 0, "fill": {}, "row": known_series[p.series]}
            fill = _merge(se["row"], s_attrs, _SERIES_ATTRS)
            if "Modality" in fill:
                modalities_changed.add(p.study)
            se["row"].update(fill)
            se["fill"].update(fill)
            se["n"] += 1
            new_series = False
        attrs = {**p.patient, **p.study_attrs}
        st = studies.get(p.study)
        if st is None and p.study not in known_studies:
            studies[p.study] = {
                "new": True, "series": 1, "n": 1, "size": p.size, "now": now, "fill": {},
                "row": {k: attrs[k] for k in study_keys},
            }
            modalities_changed.add(p.study)
        else:
            if st is None:
                st = studies[p.study] = {"new": False, "series": 0, "n": 0, "size": 0, "fill": {},
                                         "row": known_studies[p.study]}
            fill = _merge(st["row"], attrs, study_keys)
            st["row"].update(fill)
            st["fill"].update(fill)
            st["n"] += 1
            st["series"] += 1 if new_series else 0
            st["size"] += p.size
        if new_series:
            modalities_changed.add(p.study)
        pid = p.patient["PatientID"]
        pa = patients.get(pid)
        if pa is None and pid not in known_patients:
            patients[pid] = {"new": True, "fill": {}, "row": {k: p.patient[k] for k in _PATIENT_ATTRS}}
        else:
            if pa is None:
                pa = patients[pid] = {"new": False, "fill": {}, "row": known_patients[pid]}
            fill = _merge(pa["row"], p.patient, _PATIENT_ATTRS[1:])
            pa["row"].update(fill)
            pa["fill"].update(fill)

    new_rows = [(uid, se) for uid, se in series.items() if se["new"]]
    if new_rows:
        conn.executemany(
            "INSERT INTO series(SeriesInstanceUID, StudyInstanceUID, NumberOfSeriesRelatedInstances, "
            + ", ".join(_SERIES_ATTRS) + ") VALUES (?, ?, ?" + ", ?" * len(_SERIES_ATTRS) + ")",
            [(uid, se["study"], se["n"], *(se["row"][k] for k in _SERIES_ATTRS)) for uid, se in new_rows],
        )
    for uid, se in series.items():
        if not se["new"]:
            sets = "".join(f", {k} = ?" for k in se["fill"])
            conn.execute(
                f"UPDATE series SET NumberOfSeriesRelatedInstances = NumberOfSeriesRelatedInstances + ?{sets} "
                "WHERE SeriesInstanceUID = ?",
                (se["n"], *se["fill"].values(), uid),
            )
    new_rows = [(uid, st) for uid, st in studies.items() if st["new"]]
    if new_rows:
        conn.executemany(
            "INSERT INTO studies(StudyInstanceUID, NumberOfStudyRelatedSeries, NumberOfStudyRelatedInstances, "
            "size_bytes, last_access, added, " + ", ".join(study_keys) + ") VALUES (?, ?, ?, ?, ?, ?"
            + ", ?" * len(study_keys) + ")",
            [
                (uid, st["series"], st["n"], st["size"], st["now"], st["now"], *(st["row"][k] for k in study_keys))
                for uid, st in new_rows
            ],
        )
    for uid, st in studies.items():
        if not st["new"]:
            sets = "".join(f", {k} = ?" for k in st["fill"])
            conn.execute(
                "UPDATE studies SET NumberOfStudyRelatedInstances = NumberOfStudyRelatedInstances + ?, "
                f"NumberOfStudyRelatedSeries = NumberOfStudyRelatedSeries + ?, size_bytes = size_bytes + ?{sets} "
                "WHERE StudyInstanceUID = ?",
                (st["n"], st["series"], st["size"], *st["fill"].values(), uid),
            )
        if st["new"] or st["fill"]:
            refresh_folds(conn, uid)
    for uid in studies:
        if uid in modalities_changed:
            refresh_modalities(conn, uid)
    new_rows = [pa["row"] for pa in patients.values() if pa["new"]]
    if new_rows:
        conn.executemany(
            "INSERT INTO patients(PatientID, PatientName, PatientBirthDate, PatientSex) VALUES (?, ?, ?, ?)",
            [tuple(row[k] for k in _PATIENT_ATTRS) for row in new_rows],
        )
    for pid, pa in patients.items():
        if not pa["new"] and pa["fill"]:
            sets = ", ".join(f"{k} = ?" for k in pa["fill"])
            conn.execute(f"UPDATE patients SET {sets} WHERE PatientID = ?", (*pa["fill"].values(), pid))
    conn.executemany(
        f"INSERT INTO instances({INSTANCE_FIELDS}, added, geometry) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (
                p.sop, p.series, p.study, p.instance_attrs["SOPClassUID"], p.instance_attrs["InstanceNumber"],
                p.instance_attrs["NumberOfFrames"], p.instance_attrs["Rows"], p.instance_attrs["Columns"],
                p.instance_attrs["TransferSyntaxUID"], relpath, p.size, now, p.geometry,
            )
            for p, relpath, now in items
        ],
    )


def remove_row(conn: sqlite3.Connection, row: sqlite3.Row) -> None:
    """Drop one instance row and keep the denormalised counts right, removing emptied parents."""
    sop, series, study, size = row["SOPInstanceUID"], row["SeriesInstanceUID"], row["StudyInstanceUID"], row["size_bytes"]
    conn.execute("DELETE FROM instances WHERE SOPInstanceUID = ?", (sop,))
    conn.execute(
        "UPDATE series SET NumberOfSeriesRelatedInstances = NumberOfSeriesRelatedInstances - 1 "
        "WHERE SeriesInstanceUID = ?",
        (series,),
    )
    gone = conn.execute(
        "DELETE FROM series WHERE SeriesInstanceUID = ? AND NumberOfSeriesRelatedInstances <= 0", (series,)
    ).rowcount
    conn.execute(
        "UPDATE studies SET NumberOfStudyRelatedInstances = NumberOfStudyRelatedInstances - 1, "
        "size_bytes = size_bytes - ?, NumberOfStudyRelatedSeries = NumberOfStudyRelatedSeries - ? "
        "WHERE StudyInstanceUID = ?",
        (size, gone, study),
    )
    if gone:
        refresh_modalities(conn, study)
    conn.execute(
        "DELETE FROM studies WHERE StudyInstanceUID = ? AND NumberOfStudyRelatedInstances <= 0", (study,)
    )
    drop_orphan_patients(conn)


def drop_orphan_patients(conn: sqlite3.Connection) -> None:
    conn.execute("DELETE FROM patients WHERE PatientID NOT IN (SELECT PatientID FROM studies)")


def replace_row(conn: sqlite3.Connection, old: sqlite3.Row, p: Parsed, relpath: str, now: float) -> None:
    """Swap an instance for a newer version; in the same series this keeps the study's pin and access time."""
    if old["StudyInstanceUID"] == p.study and old["SeriesInstanceUID"] == p.series:
        ia = p.instance_attrs
        conn.execute(
            "UPDATE instances SET SOPClassUID = ?, InstanceNumber = ?, NumberOfFrames = ?, Rows = ?, Columns = ?, "
            "TransferSyntaxUID = ?, path = ?, size_bytes = ?, added = ?, geometry = ? WHERE SOPInstanceUID = ?",
            (
                ia["SOPClassUID"], ia["InstanceNumber"], ia["NumberOfFrames"], ia["Rows"], ia["Columns"],
                ia["TransferSyntaxUID"], relpath, p.size, now, p.geometry, p.sop,
            ),
        )
        conn.execute(
            "UPDATE studies SET size_bytes = size_bytes + ? WHERE StudyInstanceUID = ?",
            (p.size - old["size_bytes"], p.study),
        )
    else:
        remove_row(conn, old)
        add_row(conn, p, relpath, now)


def recompute_all(conn: sqlite3.Connection) -> None:
    """Rebuild every denormalised count from the instance rows (verify's last step)."""
    conn.execute(
        "UPDATE series SET NumberOfSeriesRelatedInstances = "
        "(SELECT count(*) FROM instances i WHERE i.SeriesInstanceUID = series.SeriesInstanceUID)"
    )
    conn.execute("DELETE FROM series WHERE NumberOfSeriesRelatedInstances = 0")
    conn.execute(
        "UPDATE studies SET "
        "NumberOfStudyRelatedInstances = (SELECT count(*) FROM instances i WHERE i.StudyInstanceUID = studies.StudyInstanceUID), "
        "NumberOfStudyRelatedSeries = (SELECT count(DISTINCT SeriesInstanceUID) FROM instances i WHERE i.StudyInstanceUID = studies.StudyInstanceUID), "
        "size_bytes = (SELECT coalesce(sum(size_bytes), 0) FROM instances i WHERE i.StudyInstanceUID = studies.StudyInstanceUID)"
    )
    conn.execute("DELETE FROM studies WHERE NumberOfStudyRelatedInstances = 0")
    for (study,) in conn.execute("SELECT StudyInstanceUID FROM studies").fetchall():
        refresh_modalities(conn, study)
    drop_orphan_patients(conn)


def count_mismatches(conn: sqlite3.Connection) -> int:
    return conn.execute(
        "SELECT count(*) FROM studies s WHERE NumberOfStudyRelatedInstances != "
        "(SELECT count(*) FROM instances i WHERE i.StudyInstanceUID = s.StudyInstanceUID) OR size_bytes != "
        "(SELECT coalesce(sum(size_bytes), 0) FROM instances i WHERE i.StudyInstanceUID = s.StudyInstanceUID)"
    ).fetchone()[0] + conn.execute(
        "SELECT count(*) FROM series se WHERE NumberOfSeriesRelatedInstances != "
        "(SELECT count(*) FROM instances i WHERE i.SeriesInstanceUID = se.SeriesInstanceUID)"
    ).fetchone()[0]
