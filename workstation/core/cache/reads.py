"""Reading the index: C-FIND-style queries, a series' instances and slice records, sizes."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from pathlib import Path

from workstation.core.cache import query as q
from workstation.core.cache.core import CacheCore
from workstation.core.cache.reports import CacheError
from workstation.core.cache.schema import INSTANCE_FIELDS, SERIES_FIELDS, STUDY_FIELDS
from workstation.core.dicom.slices import SliceRecord
from workstation.core.model.records import Instance, Patient, Series, Study
from workstation.core.pixels.errors import VolumeError
from workstation.core.pixels.slice_reader import SliceHeader, read_slice_record

_ANY = q.QueryFilter()


class Reads(CacheCore):
    """Queries over the index; paths handed out are absolute."""

    def query(self, level: str, f: q.QueryFilter = _ANY, limit: int | None = None) -> list:
        """Search the index at patient, study, series or instance level (C-FIND matching semantics)."""
        if level not in q.LEVELS:
            raise CacheError(f"unknown level {level!r}: use one of {', '.join(q.LEVELS)}")
        clauses, params = q.study_clauses(f, level)
        where = " WHERE " + " AND ".join(clauses) if clauses else ""
        tail = ""
        if limit is not None:
            tail = " LIMIT ?"
            params.append(int(limit))
        if level == "patient":
            sql = (
                "SELECT p.PatientID, p.PatientName, p.PatientBirthDate, p.PatientSex, "
                "(SELECT count(*) FROM studies x WHERE x.PatientID = p.PatientID) AS n FROM patients p"
                + (f" WHERE p.PatientID IN (SELECT s.PatientID FROM studies s{where})" if clauses else "")
                + " ORDER BY p.PatientName COLLATE NOCASE, p.PatientID" + tail
            )
            with self._lock:
                rows = self._db().execute(sql, params).fetchall()
            return [Patient(r[0], r[1], r[2], r[3], r[4]) for r in rows]
        if level == "study":
            sql = (
                f"SELECT {STUDY_FIELDS} FROM studies s{where} "
                "ORDER BY s.StudyDate DESC, s.StudyTime DESC, s.StudyInstanceUID" + tail
            )
            with self._lock:
                rows = self._db().execute(sql, params).fetchall()
            return [self._study(r) for r in rows]
        join = " FROM series se JOIN studies s ON s.StudyInstanceUID = se.StudyInstanceUID"
        if level == "series":
            fields = ", ".join(f"se.{c.strip()}" for c in SERIES_FIELDS.split(","))
            sql = (
                f"SELECT {fields}{join}{where} ORDER BY s.StudyDate DESC, s.StudyInstanceUID, "
                "se.SeriesNumber IS NULL, se.SeriesNumber, se.SeriesDate, se.SeriesTime, se.SeriesInstanceUID" + tail
            )
            with self._lock:
                rows = self._db().execute(sql, params).fetchall()
            return [Series(*r) for r in rows]
        fields = ", ".join(f"i.{c.strip()}" for c in INSTANCE_FIELDS.split(","))
        sql = (
            f"SELECT {fields} FROM instances i JOIN series se ON se.SeriesInstanceUID = i.SeriesInstanceUID "
            f"JOIN studies s ON s.StudyInstanceUID = i.StudyInstanceUID{where} "
            "ORDER BY s.StudyDate DESC, s.StudyInstanceUID, se.SeriesNumber IS NULL, se.SeriesNumber, "
            "se.SeriesInstanceUID, i.InstanceNumber IS NULL, i.InstanceNumber, i.SOPInstanceUID" + tail
        )
        with self._lock:
            rows = self._db().execute(sql, params).fetchall()
        return [self._instance(r) for r in rows]

    def _study(self, r: sqlite3.Row) -> Study:
        return Study(
            StudyInstanceUID=r["StudyInstanceUID"], PatientID=r["PatientID"], PatientName=r["PatientName"],
            PatientBirthDate=r["PatientBirthDate"], PatientSex=r["PatientSex"], StudyDate=r["StudyDate"],
            StudyTime=r["StudyTime"], StudyDescription=r["StudyDescription"], AccessionNumber=r["AccessionNumber"],
            ReferringPhysicianName=r["ReferringPhysicianName"], StudyID=r["StudyID"],
            ModalitiesInStudy=tuple(m for m in r["ModalitiesInStudy"].split("\\") if m),
            NumberOfStudyRelatedSeries=r["NumberOfStudyRelatedSeries"],
            NumberOfStudyRelatedInstances=r["NumberOfStudyRelatedInstances"],
            pinned=bool(r["pinned"]), size_bytes=r["size_bytes"], last_access=r["last_access"],
        )

    def _instance(self, r: sqlite3.Row) -> Instance:
        return Instance(
            SOPInstanceUID=r["SOPInstanceUID"], SeriesInstanceUID=r["SeriesInstanceUID"],
            StudyInstanceUID=r["StudyInstanceUID"], SOPClassUID=r["SOPClassUID"],
            InstanceNumber=r["InstanceNumber"], NumberOfFrames=r["NumberOfFrames"] or 1,
            Rows=r["Rows"], Columns=r["Columns"], TransferSyntaxUID=r["TransferSyntaxUID"],
            path=str(self._abs(r["path"])), size_bytes=r["size_bytes"],
        )

    def studies(self, f: q.QueryFilter = _ANY, limit: int | None = None) -> list[Study]:
        return self.query("study", f, limit)

    def series(self, study_uid: str) -> list[Series]:
        """The series of one study, by SeriesNumber (unnumbered last), then date and time."""
        with self._lock:
            rows = self._db().execute(
                f"SELECT {SERIES_FIELDS} FROM series WHERE StudyInstanceUID = ? ORDER BY SeriesNumber IS NULL, "
                "SeriesNumber, SeriesDate, SeriesTime, SeriesInstanceUID",
                (study_uid,),
            ).fetchall()
        return [Series(*r) for r in rows]

    def instances(self, series_uid: str) -> list[Instance]:
        """The instances of one series, by InstanceNumber (unnumbered last); paths are absolute."""
        with self._lock:
            rows = self._db().execute(
                f"SELECT {INSTANCE_FIELDS} FROM instances WHERE SeriesInstanceUID = ? "
                "ORDER BY InstanceNumber IS NULL, InstanceNumber, SOPInstanceUID",
                (series_uid,),
            ).fetchall()
        return [self._instance(r) for r in rows]

    def volume_slices(self, series_uid: str) -> list[SliceHeader]:
        """The slices of one series as `assemble_volume_from_headers` needs them, from the index alone."""
        return [SliceHeader(path, record, size) for path, _, record, size in self._records(series_uid)]

    def instance_records(self, series_uid: str) -> list[tuple[Instance, SliceRecord]]:
        """The instances of one series with their slice records (what display sets are built from), by
        InstanceNumber; an instance whose file cannot be read is left out."""
        return [(instance, record) for _, instance, record, _ in self._records(series_uid, skip_unreadable=True)]

    def _records(self, series_uid: str, skip_unreadable: bool = False) -> list[tuple[Path, Instance, SliceRecord, int]]:
        """Each instance's file, row, slice record and the file size the record was made at.

        Rows without a record of the current version (indexed by an older version, or rewritten on
        import) are read from their files once and their record is stored, so the next open reads
        no header either.
        """
        with self._lock:
            rows = self._db().execute(
                f"SELECT {INSTANCE_FIELDS}, geometry FROM instances WHERE SeriesInstanceUID = ? "
                "ORDER BY InstanceNumber IS NULL, InstanceNumber, SOPInstanceUID",
                (series_uid,),
            ).fetchall()
        found = []
        backfill = []
        for row in rows:
            instance = self._instance(row)
            path = Path(instance.path)
            record = SliceRecord.from_json(row["geometry"])
            size = row["size_bytes"]
            if record is None:
                try:
                    record, size = read_slice_record(path)
                except VolumeError:
                    if skip_unreadable:
                        continue
                    raise
                if size == row["size_bytes"]:
                    backfill.append((record.to_json(), instance.SOPInstanceUID))
            found.append((path, instance, record, size))
        if backfill:
            with self._write() as conn:
                conn.executemany("UPDATE instances SET geometry = ? WHERE SOPInstanceUID = ?", backfill)
        return found

    def instance_path(self, sop_uid: str) -> Path | None:
        with self._lock:
            row = self._db().execute("SELECT path FROM instances WHERE SOPInstanceUID = ?", (sop_uid,)).fetchone()
        return self._abs(row[0]) if row else None

    def has_instances(self, sop_uids: Iterable[str]) -> set[str]:
        """Which of these SOP Instance UIDs are already local (so a retrieve can skip them)."""
        wanted = list(dict.fromkeys(sop_uids))
        found: set[str] = set()
        with self._lock:
            conn = self._db()
            for i in range(0, len(wanted), 500):
                chunk = wanted[i : i + 500]
                rows = conn.execute(
                    f"SELECT SOPInstanceUID FROM instances WHERE SOPInstanceUID IN ({','.join('?' * len(chunk))})",
                    chunk,
                ).fetchall()
                found.update(r[0] for r in rows)
        return found

    def size_bytes(self) -> int:
        with self._lock:
            return self._db().execute("SELECT coalesce(sum(size_bytes), 0) FROM studies").fetchone()[0]
