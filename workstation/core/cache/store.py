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

Threads share one SQLite connection guarded by a lock. Writes to one study are serialised by a
striped lock keyed by the Study Instance UID, so duplicate checks, file writes and index rows of one
instance happen as one step, while parsing runs outside any lock.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import shutil
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from workstation.core.cache import query as q
from workstation.core.cache.parse import Parsed, parse_instance
from workstation.core.cache.reports import (
    CacheError,
    EvictReport,
    ImportReport,
    Rejection,
    VerifyReport,
)
from workstation.core.cache.sources import Entry, collect
from workstation.core.model.records import Instance, Patient, Series, Study
from workstation.core.tasks import Cancelled, CancelToken, Progress, no_progress

SCHEMA_VERSION = 1
BATCH_FILES = 200
BATCH_SECONDS = 1.0
_STRIPES = 64

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS patients(
    PatientID TEXT PRIMARY KEY, PatientName TEXT NOT NULL DEFAULT '',
    PatientBirthDate TEXT NOT NULL DEFAULT '', PatientSex TEXT NOT NULL DEFAULT '');
CREATE TABLE IF NOT EXISTS studies(
    StudyInstanceUID TEXT PRIMARY KEY,
    PatientID TEXT NOT NULL DEFAULT '', PatientName TEXT NOT NULL DEFAULT '',
    PatientBirthDate TEXT NOT NULL DEFAULT '', PatientSex TEXT NOT NULL DEFAULT '',
    StudyDate TEXT NOT NULL DEFAULT '', StudyTime TEXT NOT NULL DEFAULT '',
    StudyDescription TEXT NOT NULL DEFAULT '', AccessionNumber TEXT NOT NULL DEFAULT '',
    ReferringPhysicianName TEXT NOT NULL DEFAULT '', StudyID TEXT NOT NULL DEFAULT '',
    ModalitiesInStudy TEXT NOT NULL DEFAULT '',
    NumberOfStudyRelatedSeries INTEGER NOT NULL DEFAULT 0,
    NumberOfStudyRelatedInstances INTEGER NOT NULL DEFAULT 0,
    size_bytes INTEGER NOT NULL DEFAULT 0, pinned INTEGER NOT NULL DEFAULT 0,
    last_access REAL NOT NULL DEFAULT 0, added REAL NOT NULL DEFAULT 0,
    name_fold TEXT NOT NULL DEFAULT '', desc_fold TEXT NOT NULL DEFAULT '', text_fold TEXT NOT NULL DEFAULT '');
CREATE INDEX IF NOT EXISTS studies_patient ON studies(PatientID);
CREATE INDEX IF NOT EXISTS studies_name ON studies(name_fold);
CREATE INDEX IF NOT EXISTS studies_date ON studies(StudyDate);
CREATE INDEX IF NOT EXISTS studies_accession ON studies(AccessionNumber);
CREATE INDEX IF NOT EXISTS studies_desc ON studies(desc_fold);
CREATE INDEX IF NOT EXISTS studies_lru ON studies(pinned, last_access);
CREATE TABLE IF NOT EXISTS series(
    SeriesInstanceUID TEXT PRIMARY KEY, StudyInstanceUID TEXT NOT NULL,
    Modality TEXT NOT NULL DEFAULT '', SeriesNumber INTEGER, SeriesDescription TEXT NOT NULL DEFAULT '',
    BodyPartExamined TEXT NOT NULL DEFAULT '', SeriesDate TEXT NOT NULL DEFAULT '',
    SeriesTime TEXT NOT NULL DEFAULT '', NumberOfSeriesRelatedInstances INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS series_study ON series(StudyInstanceUID);
CREATE INDEX IF NOT EXISTS series_modality ON series(Modality, StudyInstanceUID);
CREATE TABLE IF NOT EXISTS instances(
    SOPInstanceUID TEXT PRIMARY KEY, SeriesInstanceUID TEXT NOT NULL, StudyInstanceUID TEXT NOT NULL,
    SOPClassUID TEXT NOT NULL DEFAULT '', InstanceNumber INTEGER, NumberOfFrames INTEGER NOT NULL DEFAULT 1,
    Rows INTEGER NOT NULL DEFAULT 0, Columns INTEGER NOT NULL DEFAULT 0,
    TransferSyntaxUID TEXT NOT NULL DEFAULT '', path TEXT NOT NULL UNIQUE,
    size_bytes INTEGER NOT NULL, sha1 TEXT NOT NULL, added REAL NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS instances_series ON instances(SeriesInstanceUID, InstanceNumber);
CREATE INDEX IF NOT EXISTS instances_study ON instances(StudyInstanceUID);
"""

_MODALITIES_SQL = (
    "SELECT coalesce(group_concat(m, '\\'), '') FROM "
    "(SELECT DISTINCT Modality AS m FROM series WHERE StudyInstanceUID = ? AND Modality != '' ORDER BY m)"
)
_STUDY_FIELDS = (
    "StudyInstanceUID, PatientID, PatientName, PatientBirthDate, PatientSex, StudyDate, StudyTime, "
    "StudyDescription, AccessionNumber, ReferringPhysicianName, StudyID, ModalitiesInStudy, "
    "NumberOfStudyRelatedSeries, NumberOfStudyRelatedInstances, pinned, size_bytes, last_access"
)
_SERIES_FIELDS = (
    "SeriesInstanceUID, StudyInstanceUID, Modality, SeriesNumber, SeriesDescription, BodyPartExamined, "
    "SeriesDate, SeriesTime, NumberOfSeriesRelatedInstances"
)
_INSTANCE_FIELDS = (
    "SOPInstanceUID, SeriesInstanceUID, StudyInstanceUID, SOPClassUID, InstanceNumber, NumberOfFrames, "
    "Rows, Columns, TransferSyntaxUID, path, size_bytes, sha1"
)
_ANY = q.QueryFilter()
_PATIENT_ATTRS = ("PatientID", "PatientName", "PatientBirthDate", "PatientSex")
_STUDY_ATTRS = ("StudyDate", "StudyTime", "StudyDescription", "AccessionNumber", "ReferringPhysicianName", "StudyID")
_SERIES_ATTRS = ("Modality", "SeriesNumber", "SeriesDescription", "BodyPartExamined", "SeriesDate", "SeriesTime")


def _h(uid: str) -> str:
    return hashlib.sha1(uid.encode("ascii")).hexdigest()


def relative_path(study: str, series: str, sop: str) -> str:
    """Where an instance lives under files/: only hashes of UIDs, never header text."""
    st = _h(study)
    return f"{st[:2]}/{st}/{_h(series)}/{_h(sop)}.dcm"


def _study_dir(study: str) -> str:
    st = _h(study)
    return f"{st[:2]}/{st}"


def _is_temp(name: str) -> bool:
    return name.startswith(".") or name.endswith(".tmp")


def _merge(existing: dict, new: dict, keys: Iterable[str]) -> dict:
    """Fill attributes the index does not know yet; never overwrite a known value with a blank."""
    return {k: new[k] for k in keys if new.get(k) not in (None, "") and existing.get(k) in (None, "")}


def _write_temp(final: Path, data: bytes, durable: bool) -> Path:
    """Write `data` under a hidden temporary name beside `final` (same folder, so the rename is atomic)."""
    folder = final.parent
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{final.name}.{secrets.token_hex(4)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        if durable:
            os.fsync(fd)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    os.close(fd)
    return tmp


def _stage_file(path: str, files_root: str) -> Parsed | Rejection:
    """Bulk-import step for one file: read, check, hash, and stage a temporary copy in its final folder.

    The copy is made by the kernel (copy_file_range/sendfile via shutil.copyfile), which on this
    kind of system is several times faster than writing the bytes back from Python; the source's
    size and mtime are compared before and after so that the copy holds exactly the hashed bytes.
    """
    src = Path(path)
    try:
        before = src.stat()
        data = src.read_bytes()
        p = parse_instance(data)
    except CacheError as exc:
        return Rejection(path, str(exc))
    except OSError as exc:
        return Rejection(path, f"cannot be read: {exc.strerror or exc}")
    final = Path(files_root) / relative_path(p.study, p.series, p.sop)
    try:
        if p.data is data:
            tmp = final.parent / f".{final.name}.{secrets.token_hex(4)}.tmp"
            final.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, tmp)
            after = src.stat()
            if (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns) or tmp.stat().st_size != p.size:
                tmp.unlink()
                return Rejection(path, "the file changed while it was being imported")
        else:
            tmp = _write_temp(final, p.data, durable=False)
    except OSError as exc:
        return Rejection(path, f"cannot be stored: {exc.strerror or exc}")
    p.staged = str(tmp)
    p.data = b""
    return p


class Cache:
    """The workstation's local store of DICOM instances (see the module docstring for the design)."""

    def __init__(self, home: Path, quota_bytes: int | None = None) -> None:
        self.root = Path(home) / "cache"
        self.files = self.root / "files"
        self.trash = self.root / "trash"
        self.quota_bytes = quota_bytes
        self.files.mkdir(parents=True, exist_ok=True)
        self.trash.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._stripes = [threading.Lock() for _ in range(_STRIPES)]
        self._last_now = 0.0
        self._listeners: list[Callable[[str, str, str], None]] = []
        self._conn = sqlite3.connect(
            self.root / "index.sqlite", check_same_thread=False, isolation_level=None, timeout=30.0
        )
        self._conn.row_factory = sqlite3.Row
        self._conn.execute("PRAGMA busy_timeout = 30000")
        self._conn.execute("PRAGMA journal_mode = WAL")
        self._conn.execute("PRAGMA synchronous = NORMAL")
        with self._lock:
            self._conn.executescript(_SCHEMA)
            self._conn.execute(
                "INSERT OR IGNORE INTO meta(key, value) VALUES('schema_version', ?)", (str(SCHEMA_VERSION),)
            )

    # ----------------------------------------------------------------- lifecycle

    def close(self) -> None:
        with self._lock:
            if self._conn is None:
                return
            if self._conn.in_transaction:
                self._conn.execute("COMMIT")
            self._conn.close()
            self._conn = None

    def __enter__(self) -> Cache:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def subscribe(self, callback: Callable[[str, str, str], None]) -> None:
        """Call `callback(study_uid, series_uid, sop_uid)` after each instance is stored (any thread)."""
        self._listeners.append(callback)

    # ----------------------------------------------------------------- helpers

    def _now(self) -> float:
        with self._lock:
            self._last_now = max(time.time(), self._last_now + 1e-6)
            return self._last_now

    def _stripe(self, study: str) -> threading.Lock:
        return self._stripes[int(_h(study)[:8], 16) % _STRIPES]

    @contextlib.contextmanager
    def _all_stripes(self):
        """Exclude every writer of this process (verify rewrites the store under them)."""
        with contextlib.ExitStack() as stack:
            for lock in self._stripes:
                stack.enter_context(lock)
            yield

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise CacheError("the cache is closed")
        return self._conn

    @contextlib.contextmanager
    def _write(self, commit: bool = True):
        """One atomic unit of index changes; committed now unless a bulk import batches it."""
        with self._lock:
            conn = self._db()
            if not conn.in_transaction:
                conn.execute("BEGIN IMMEDIATE")
            conn.execute("SAVEPOINT unit")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK TO unit")
                conn.execute("RELEASE unit")
                raise
            conn.execute("RELEASE unit")
            if commit:
                conn.execute("COMMIT")

    def _commit(self) -> None:
        with self._lock:
            if self._conn is not None and self._conn.in_transaction:
                self._conn.execute("COMMIT")

    def _abs(self, relpath: str) -> Path:
        return self.files / relpath

    def _write_file(self, relpath: str, data: bytes, durable: bool) -> None:
        """Temporary file in the final folder, optional fsync, then an atomic rename."""
        final = self._abs(relpath)
        tmp = _write_temp(final, data, durable)
        os.replace(tmp, final)
        if durable:
            dir_fd = os.open(final.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)

    # ----------------------------------------------------------------- index rows

    def _refresh_modalities(self, conn: sqlite3.Connection, study: str) -> None:
        mods = conn.execute(_MODALITIES_SQL, (study,)).fetchone()[0]
        conn.execute("UPDATE studies SET ModalitiesInStudy = ? WHERE StudyInstanceUID = ?", (mods, study))

    def _refresh_folds(self, conn: sqlite3.Connection, study: str) -> None:
        r = conn.execute(
            "SELECT PatientName, PatientID, AccessionNumber, StudyDescription FROM studies WHERE StudyInstanceUID = ?",
            (study,),
        ).fetchone()
        conn.execute(
            "UPDATE studies SET name_fold = ?, desc_fold = ?, text_fold = ? WHERE StudyInstanceUID = ?",
            (q.fold(r[0]), q.fold(r[3]), q.search_text(r[0], r[1], r[2], r[3]), study),
        )

    def _add_row(self, conn: sqlite3.Connection, p: Parsed, relpath: str, now: float) -> None:
        size = p.size
        s_attrs = dict(p.series_attrs)
        s_attrs["Modality"] = (s_attrs.get("Modality") or "").upper()
        series = conn.execute("SELECT * FROM series WHERE SeriesInstanceUID = ?", (p.series,)).fetchone()
        new_series = series is None
        if new_series:
            conn.execute(
                "INSERT INTO series(SeriesInstanceUID, StudyInstanceUID, NumberOfSeriesRelatedInstances, "
                + ", ".join(_SERIES_ATTRS)
                + ") VALUES (?, ?, 1"
                + ", ?" * len(_SERIES_ATTRS)
                + ")",
                (p.series, p.study, *(s_attrs[k] if s_attrs[k] is not None else None for k in _SERIES_ATTRS)),
            )
        else:
            fill = _merge(dict(series), s_attrs, _SERIES_ATTRS)
            sets = "".join(f", {k} = ?" for k in fill)
            conn.execute(
                f"UPDATE series SET NumberOfSeriesRelatedInstances = NumberOfSeriesRelatedInstances + 1{sets} "
                "WHERE SeriesInstanceUID = ?",
                (*fill.values(), p.series),
            )
        attrs = {**p.patient, **p.study_attrs}
        study = conn.execute("SELECT * FROM studies WHERE StudyInstanceUID = ?", (p.study,)).fetchone()
        keys = _PATIENT_ATTRS + _STUDY_ATTRS
        if study is None:
            conn.execute(
                "INSERT INTO studies(StudyInstanceUID, NumberOfStudyRelatedSeries, NumberOfStudyRelatedInstances, "
                "size_bytes, last_access, added, " + ", ".join(keys) + ") VALUES (?, 1, 1, ?, ?, ?" + ", ?" * len(keys) + ")",
                (p.study, size, now, now, *(attrs[k] for k in keys)),
            )
            self._refresh_folds(conn, p.study)
        else:
            fill = _merge(dict(study), attrs, keys)
            sets = "".join(f", {k} = ?" for k in fill)
            conn.execute(
                "UPDATE studies SET NumberOfStudyRelatedInstances = NumberOfStudyRelatedInstances + 1, "
                f"NumberOfStudyRelatedSeries = NumberOfStudyRelatedSeries + ?, size_bytes = size_bytes + ?{sets} "
                "WHERE StudyInstanceUID = ?",
                (1 if new_series else 0, size, *fill.values(), p.study),
            )
            if fill:
                self._refresh_folds(conn, p.study)
        if new_series or study is None or (series is not None and not series["Modality"] and s_attrs["Modality"]):
            self._refresh_modalities(conn, p.study)
        patient = conn.execute("SELECT * FROM patients WHERE PatientID = ?", (p.patient["PatientID"],)).fetchone()
        if patient is None:
            conn.execute(
                "INSERT INTO patients(PatientID, PatientName, PatientBirthDate, PatientSex) VALUES (?, ?, ?, ?)",
                tuple(p.patient[k] for k in _PATIENT_ATTRS),
            )
        else:
            fill = _merge(dict(patient), p.patient, _PATIENT_ATTRS[1:])
            if fill:
                sets = ", ".join(f"{k} = ?" for k in fill)
                conn.execute(f"UPDATE patients SET {sets} WHERE PatientID = ?", (*fill.values(), p.patient["PatientID"]))
        ia = p.instance_attrs
        conn.execute(
            f"INSERT INTO instances({_INSTANCE_FIELDS}, added) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                p.sop, p.series, p.study, ia["SOPClassUID"], ia["InstanceNumber"], ia["NumberOfFrames"],
                ia["Rows"], ia["Columns"], ia["TransferSyntaxUID"], relpath, size, p.sha1, now,
            ),
        )

    def _remove_row(self, conn: sqlite3.Connection, row: sqlite3.Row) -> None:
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
            self._refresh_modalities(conn, study)
        conn.execute(
            "DELETE FROM studies WHERE StudyInstanceUID = ? AND NumberOfStudyRelatedInstances <= 0", (study,)
        )
        self._drop_orphan_patients(conn)

    def _drop_orphan_patients(self, conn: sqlite3.Connection) -> None:
        conn.execute("DELETE FROM patients WHERE PatientID NOT IN (SELECT PatientID FROM studies)")

    def _replace_row(self, conn: sqlite3.Connection, old: sqlite3.Row, p: Parsed, relpath: str, now: float) -> None:
        """Swap an instance for a newer version; in the same series this keeps the study's pin and access time."""
        if old["StudyInstanceUID"] == p.study and old["SeriesInstanceUID"] == p.series:
            ia = p.instance_attrs
            conn.execute(
                "UPDATE instances SET SOPClassUID = ?, InstanceNumber = ?, NumberOfFrames = ?, Rows = ?, Columns = ?, "
                "TransferSyntaxUID = ?, path = ?, size_bytes = ?, sha1 = ?, added = ? WHERE SOPInstanceUID = ?",
                (
                    ia["SOPClassUID"], ia["InstanceNumber"], ia["NumberOfFrames"], ia["Rows"], ia["Columns"],
                    ia["TransferSyntaxUID"], relpath, p.size, p.sha1, now, p.sop,
                ),
            )
            conn.execute(
                "UPDATE studies SET size_bytes = size_bytes + ? WHERE StudyInstanceUID = ?",
                (p.size - old["size_bytes"], p.study),
            )
        else:
            self._remove_row(conn, old)
            self._add_row(conn, p, relpath, now)

    def _recompute_all(self, conn: sqlite3.Connection) -> None:
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
            self._refresh_modalities(conn, study)
        self._drop_orphan_patients(conn)

    def _count_mismatches(self, conn: sqlite3.Connection) -> int:
        return conn.execute(
            "SELECT count(*) FROM studies s WHERE NumberOfStudyRelatedInstances != "
            "(SELECT count(*) FROM instances i WHERE i.StudyInstanceUID = s.StudyInstanceUID) OR size_bytes != "
            "(SELECT coalesce(sum(size_bytes), 0) FROM instances i WHERE i.StudyInstanceUID = s.StudyInstanceUID)"
        ).fetchone()[0] + conn.execute(
            "SELECT count(*) FROM series se WHERE NumberOfSeriesRelatedInstances != "
            "(SELECT count(*) FROM instances i WHERE i.SeriesInstanceUID = se.SeriesInstanceUID)"
        ).fetchone()[0]

    # ----------------------------------------------------------------- ingest

    def _store(self, p: Parsed, batch: bool) -> str:
        """Index one checked instance: duplicate, replacement or new; the file lands before its row."""
        relpath = relative_path(p.study, p.series, p.sop)
        with self._stripe(p.study):
            with self._lock:
                old = self._db().execute(
                    f"SELECT {_INSTANCE_FIELDS} FROM instances WHERE SOPInstanceUID = ?", (p.sop,)
                ).fetchone()
            outcome = "imported"
            if old is not None:
                if old["sha1"] == p.sha1:
                    try:
                        if self._abs(old["path"]).stat().st_size == old["size_bytes"]:
                            if p.staged:
                                with contextlib.suppress(OSError):
                                    os.unlink(p.staged)
                            return "duplicate"
                    except OSError:
                        pass
                else:
                    outcome = "replaced"
            if p.staged:
                os.replace(p.staged, self._abs(relpath))
            else:
                self._write_file(relpath, p.data, durable=not batch)
            now = self._now()
            with self._write(commit=not batch) as conn:
                if old is None:
                    self._add_row(conn, p, relpath, now)
                else:
                    self._replace_row(conn, old, p, relpath, now)
            if old is not None and old["path"] != relpath:
                with contextlib.suppress(OSError):
                    self._abs(old["path"]).unlink()
        for listener in list(self._listeners):
            listener(p.study, p.series, p.sop)
        return outcome

    def ingest_bytes(self, data: bytes, source: str = "") -> str:
        """Store a whole Part-10 file received in memory; returns "imported", "duplicate" or "replaced"."""
        return self._store(parse_instance(bytes(data)), batch=False)

    def ingest_file(self, path: str | os.PathLike[str]) -> str:
        """Store one file; raises CacheError(reason) when it is refused."""
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise CacheError(f"cannot be read: {exc.strerror or exc}") from None
        return self._store(parse_instance(data), batch=False)

    def import_paths(
        self,
        paths: Iterable[str | os.PathLike[str]],
        progress: Progress = no_progress,
        cancel: CancelToken | None = None,
    ) -> ImportReport:
        """Import files, folders, .zip archives and DICOMDIR media; bad files are reported and skipped.

        Files are listed first so progress has a total; headers are parsed on worker threads while
        this thread writes files and batches index rows. On cancel, what is imported stays and the
        `Cancelled` exception carries the partial report as `.report`.
        """
        entries, rejected = collect(paths)
        report = ImportReport(rejected=list(rejected))
        total = len(entries)
        progress(0, total, "")
        seen_studies: set[str] = set()
        seen_series: set[str] = set()
        last_commit = time.monotonic()
        pending = 0
        prepared = self._prepared(entries)
        try:
            for done, (entry, result) in enumerate(prepared, start=1):
                if cancel is not None and cancel.cancelled:
                    if isinstance(result, Parsed) and result.staged:
                        with contextlib.suppress(OSError):
                            os.unlink(result.staged)
                    cancel.raise_if_cancelled()
                if isinstance(result, Rejection):
                    report.rejected.append(result)
                else:
                    try:
                        outcome = self._store(result, batch=True)
                    except (CacheError, OSError) as exc:
                        report.rejected.append(Rejection(entry.label, f"cannot be stored: {exc}"))
                        outcome = None
                    if outcome == "duplicate":
                        report.duplicates += 1
                    elif outcome == "replaced":
                        report.replaced += 1
                    elif outcome == "imported":
                        report.imported += 1
                    if outcome is not None:
                        if result.study not in seen_studies:
                            seen_studies.add(result.study)
                            report.study_uids.append(result.study)
                        if result.series not in seen_series:
                            seen_series.add(result.series)
                            report.series_uids.append(result.series)
                        pending += 1
                if pending >= BATCH_FILES or (pending and time.monotonic() - last_commit > BATCH_SECONDS):
                    self._commit()
                    pending = 0
                    last_commit = time.monotonic()
                progress(done, total, entry.label)
        except Cancelled as exc:
            exc.report = report
            raise
        finally:
            prepared.close()
            self._commit()
        if self.quota_bytes is not None:
            self.evict(self.quota_bytes, keep=set(report.study_uids))
        return report

    def _prepared(self, entries: list[Entry]):
        """Yield (entry, Parsed | Rejection) in order, preparing a few files ahead on threads.

        Plain files are staged (copied under a temporary name into their final folder) by the
        worker; archive members are parsed in memory and written by the importing thread.
        """

        def prepare(entry: Entry) -> Parsed | Rejection:
            if entry.path:
                return _stage_file(entry.path, str(self.files))
            try:
                return parse_instance(entry.read())
            except CacheError as exc:
                return Rejection(entry.label, str(exc))
            except OSError as exc:
                return Rejection(entry.label, f"cannot be read: {exc.strerror or exc}")

        workers = max(1, min(4, os.cpu_count() or 1))
        window = workers * 4
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="cache-import") as threads:
            futures: list = []
            try:
                for i, entry in enumerate(entries):
                    futures.append((entry, threads.submit(prepare, entry)))
                    if i >= window:
                        e, f = futures.pop(0)
                        yield e, f.result()
                while futures:
                    e, f = futures.pop(0)
                    yield e, f.result()
            finally:
                for _, f in futures:
                    f.cancel()
                for _, f in futures:
                    if not f.cancelled():
                        with contextlib.suppress(Exception):
                            result = f.result()
                            if isinstance(result, Parsed) and result.staged:
                                os.unlink(result.staged)

    # ----------------------------------------------------------------- queries

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
                f"SELECT {_STUDY_FIELDS} FROM studies s{where} "
                "ORDER BY s.StudyDate DESC, s.StudyTime DESC, s.StudyInstanceUID" + tail
            )
            with self._lock:
                rows = self._db().execute(sql, params).fetchall()
            return [self._study(r) for r in rows]
        join = " FROM series se JOIN studies s ON s.StudyInstanceUID = se.StudyInstanceUID"
        if level == "series":
            fields = ", ".join(f"se.{c.strip()}" for c in _SERIES_FIELDS.split(","))
            sql = (
                f"SELECT {fields}{join}{where} ORDER BY s.StudyDate DESC, s.StudyInstanceUID, "
                "se.SeriesNumber IS NULL, se.SeriesNumber, se.SeriesDate, se.SeriesTime, se.SeriesInstanceUID" + tail
            )
            with self._lock:
                rows = self._db().execute(sql, params).fetchall()
            return [Series(*r) for r in rows]
        fields = ", ".join(f"i.{c.strip()}" for c in _INSTANCE_FIELDS.split(","))
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
            path=str(self._abs(r["path"])), size_bytes=r["size_bytes"], extra={"sha1": r["sha1"]},
        )

    def studies(self, f: q.QueryFilter = _ANY, limit: int | None = None) -> list[Study]:
        return self.query("study", f, limit)

    def series(self, study_uid: str) -> list[Series]:
        """The series of one study, by SeriesNumber (unnumbered last), then date and time."""
        with self._lock:
            rows = self._db().execute(
                f"SELECT {_SERIES_FIELDS} FROM series WHERE StudyInstanceUID = ? ORDER BY SeriesNumber IS NULL, "
                "SeriesNumber, SeriesDate, SeriesTime, SeriesInstanceUID",
                (study_uid,),
            ).fetchall()
        return [Series(*r) for r in rows]

    def instances(self, series_uid: str) -> list[Instance]:
        """The instances of one series, by InstanceNumber (unnumbered last); paths are absolute."""
        with self._lock:
            rows = self._db().execute(
                f"SELECT {_INSTANCE_FIELDS} FROM instances WHERE SeriesInstanceUID = ? "
                "ORDER BY InstanceNumber IS NULL, InstanceNumber, SOPInstanceUID",
                (series_uid,),
            ).fetchall()
        return [self._instance(r) for r in rows]

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

    # ----------------------------------------------------------------- housekeeping

    def touch(self, study_uid: str) -> None:
        """Mark a study as used now, so LRU eviction keeps it longest."""
        now = self._now()
        with self._write() as conn:
            conn.execute("UPDATE studies SET last_access = ? WHERE StudyInstanceUID = ?", (now, study_uid))

    def pin(self, study_uid: str, pinned: bool = True) -> None:
        with self._write() as conn:
            n = conn.execute(
                "UPDATE studies SET pinned = ? WHERE StudyInstanceUID = ?", (1 if pinned else 0, study_uid)
            ).rowcount
            if not n:
                raise CacheError(f"no study {study_uid} in the cache")

    def delete(self, study_uid: str) -> None:
        """Remove a whole study: its folder goes to trash in one rename, then its rows, then the trash."""
        self._delete(study_uid)

    def _delete(self, study_uid: str, unless_pinned: bool = False) -> int:
        with self._stripe(study_uid):
            with self._lock:
                conn = self._db()
                row = conn.execute(
                    "SELECT size_bytes, pinned FROM studies WHERE StudyInstanceUID = ?", (study_uid,)
                ).fetchone()
                if row is None:
                    raise CacheError(f"no study {study_uid} in the cache")
                if unless_pinned and row["pinned"]:
                    return -1
                folder = self._abs(_study_dir(study_uid))
                parked = self.trash / secrets.token_hex(8)
                if folder.exists():
                    os.replace(folder, parked)
                with self._write() as c:
                    c.execute("DELETE FROM instances WHERE StudyInstanceUID = ?", (study_uid,))
                    c.execute("DELETE FROM series WHERE StudyInstanceUID = ?", (study_uid,))
                    c.execute("DELETE FROM studies WHERE StudyInstanceUID = ?", (study_uid,))
                    self._drop_orphan_patients(c)
            shutil.rmtree(parked, ignore_errors=True)
            return row["size_bytes"]

    def evict(self, to_size: int | None = None, keep: set[str] | None = None) -> EvictReport:
        """Delete whole studies, least recently accessed first, until the cache fits `to_size` (default: the quota).

        Pinned studies are never evicted; `keep` protects more (an import protects what it just brought in).
        """
        target = self.quota_bytes if to_size is None else to_size
        report = EvictReport()
        if target is None:
            report.size_bytes = self.size_bytes()
            return report
        keep = keep or set()
        with self._lock:
            candidates = self._db().execute(
                "SELECT StudyInstanceUID FROM studies WHERE pinned = 0 ORDER BY last_access, added, StudyInstanceUID"
            ).fetchall()
        size = self.size_bytes()
        for (study,) in candidates:
            if size <= target:
                break
            if study in keep:
                continue
            try:
                freed = self._delete(study, unless_pinned=True)
            except CacheError:
                continue
            if freed < 0:
                continue
            report.evicted_studies.append(study)
            report.freed_bytes += freed
            size = self.size_bytes()
        report.size_bytes = self.size_bytes()
        return report

    def verify(self, repair: bool = False) -> VerifyReport:
        """Compare the index with the files: orphan files, rows without files, leftovers and counts.

        With `repair`: leftovers (temporary files, trash) are deleted, orphan files are re-indexed when
        they are valid DICOM and deleted otherwise, rows without a (whole) file are dropped, and every
        denormalised count is rebuilt. `ok` tells whether the cache is consistent when verify returns.
        """
        with self._all_stripes():
            with self._lock:
                self._commit()
                rows = {
                    r["path"]: r
                    for r in self._db().execute(f"SELECT {_INSTANCE_FIELDS} FROM instances").fetchall()
                }
            strays: list[Path] = [self.trash / n for n in os.listdir(self.trash)]
            orphans: list[Path] = []
            wrong_size: list[sqlite3.Row] = []
            present: set[str] = set()
            for dirpath, _dirnames, filenames in os.walk(self.files):
                for name in filenames:
                    path = Path(dirpath) / name
                    rel = path.relative_to(self.files).as_posix()
                    if _is_temp(name):
                        strays.append(path)
                    elif rel in rows:
                        present.add(rel)
                        try:
                            if path.stat().st_size != rows[rel]["size_bytes"]:
                                wrong_size.append(rows[rel])
                        except OSError:
                            present.discard(rel)
                    else:
                        orphans.append(path)
            missing = [r for rel, r in rows.items() if rel not in present]
            with self._lock:
                mismatched = self._count_mismatches(self._db())
            report = VerifyReport(
                ok=not (strays or orphans or missing or wrong_size or mismatched),
                orphan_files=len(strays) + len(orphans),
                missing_files=len(missing) + len(wrong_size),
            )
            if not repair or report.ok:
                return report
            failures = 0
            for path in strays:
                try:
                    if path.is_dir():
                        shutil.rmtree(path)
                    else:
                        path.unlink()
                    report.repaired += 1
                except OSError:
                    failures += 1
            with self._write() as conn:
                for row in missing:
                    self._remove_row(conn, row)
                    report.repaired += 1
            for row in wrong_size:
                path = self._abs(row["path"])
                with self._write() as conn:
                    self._remove_row(conn, row)
                failures += not self._reindex(path)
                report.repaired += 1
            for path in orphans:
                failures += not self._reindex(path)
                report.repaired += 1
            with self._write() as conn:
                self._recompute_all(conn)
                report.repaired += mismatched
            self._remove_empty_folders()
            report.ok = failures == 0
            return report

    def _reindex(self, path: Path) -> bool:
        """Give a file found without a row its row back, or delete it when it is not a valid instance."""
        try:
            p = parse_instance(path.read_bytes())
        except (CacheError, OSError):
            with contextlib.suppress(OSError):
                path.unlink()
            return True
        relpath = relative_path(p.study, p.series, p.sop)
        with self._lock:
            old = self._db().execute(
                f"SELECT {_INSTANCE_FIELDS} FROM instances WHERE SOPInstanceUID = ?", (p.sop,)
            ).fetchone()
        if old is not None and old["path"] != path.relative_to(self.files).as_posix():
            with contextlib.suppress(OSError):
                path.unlink()
            return True
        try:
            if path != self._abs(relpath):
                self._abs(relpath).parent.mkdir(parents=True, exist_ok=True)
                os.replace(path, self._abs(relpath))
            with self._write() as conn:
                if old is None:
                    self._add_row(conn, p, relpath, self._now())
                else:
                    self._replace_row(conn, old, p, relpath, self._now())
        except OSError:
            return False
        return True

    def _remove_empty_folders(self) -> None:
        for dirpath, _dirnames, _filenames in os.walk(self.files, topdown=False):
            if Path(dirpath) != self.files:
                with contextlib.suppress(OSError):
                    os.rmdir(dirpath)
