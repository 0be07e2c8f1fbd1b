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

Threads share one SQLite connection guarded by a lock. Writes to one study are serialised by a
striped lock keyed by the Study Instance UID, so duplicate checks, file writes and index rows of one
instance happen as one step, while parsing runs outside any lock.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import itertools
import json
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
from workstation.core.cache.parse import Parsed, parse_fd, parse_file, parse_instance
from workstation.core.cache.reports import (
    CacheError,
    EvictReport,
    ImportReport,
    Rejection,
    VerifyReport,
)
from workstation.core.cache.sources import Entry, collect
from workstation.core.model.records import Instance, Patient, Series, Study
from workstation.core.pixels.volume import SliceHeader, read_slice_record
from workstation.core.tasks import Cancelled, CancelToken, Progress, no_progress

SCHEMA_VERSION = 2
BATCH_FILES = 200
BATCH_SECONDS = 1.0
CHUNK_FILES = 64
"""Files whose duplicate check (one query) and index rows (a few statements) are handled together."""
_STRIPES = 64
_COMPARE_BLOCK = 1 << 20

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
"""
_INSTANCES_TABLE = """
CREATE TABLE IF NOT EXISTS {name}(
    SOPInstanceUID TEXT PRIMARY KEY, SeriesInstanceUID TEXT NOT NULL, StudyInstanceUID TEXT NOT NULL,
    SOPClassUID TEXT NOT NULL DEFAULT '', InstanceNumber INTEGER, NumberOfFrames INTEGER NOT NULL DEFAULT 1,
    Rows INTEGER NOT NULL DEFAULT 0, Columns INTEGER NOT NULL DEFAULT 0,
    TransferSyntaxUID TEXT NOT NULL DEFAULT '', path TEXT NOT NULL UNIQUE,
    size_bytes INTEGER NOT NULL, added REAL NOT NULL DEFAULT 0, geometry TEXT)
"""
_INSTANCE_INDEXES = (
    "CREATE INDEX IF NOT EXISTS instances_series ON instances(SeriesInstanceUID, InstanceNumber)",
    "CREATE INDEX IF NOT EXISTS instances_study ON instances(StudyInstanceUID)",
)
_V1_INSTANCE_COLUMNS = (
    "SOPInstanceUID, SeriesInstanceUID, StudyInstanceUID, SOPClassUID, InstanceNumber, NumberOfFrames, "
    "Rows, Columns, TransferSyntaxUID, path, size_bytes, added"
)

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
    "Rows, Columns, TransferSyntaxUID, path, size_bytes"
)
_ANY = q.QueryFilter()
_PATIENT_ATTRS = ("PatientID", "PatientName", "PatientBirthDate", "PatientSex")
_STUDY_ATTRS = ("StudyDate", "StudyTime", "StudyDescription", "AccessionNumber", "ReferringPhysicianName", "StudyID")
_SERIES_ATTRS = ("Modality", "SeriesNumber", "SeriesDescription", "BodyPartExamined", "SeriesDate", "SeriesTime")


def _h(uid: str) -> str:
    return hashlib.sha1(uid.encode("ascii")).hexdigest()


def _stripe_index(study: str) -> int:
    return int(_h(study)[:8], 16) % _STRIPES


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


_TEMP_PREFIX = secrets.token_hex(4)
_temp_counter = itertools.count()


def _temp_name(final: Path) -> Path:
    """A hidden name beside `final`: unique per process without a system call (O_EXCL catches the rest)."""
    return final.parent / f".{final.name}.{_TEMP_PREFIX}{os.getpid():x}.{next(_temp_counter)}.tmp"


def _write_temp(final: Path, data: bytes, durable: bool) -> Path:
    """Write `data` under a hidden temporary name beside `final` (same folder, so the rename is atomic)."""
    folder = final.parent
    folder.mkdir(parents=True, exist_ok=True)
    tmp = _temp_name(final)
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


def _kernel_copy(src: int, dst: int, size: int) -> int:
    """Copy `size` bytes between descriptors in the kernel (copy_file_range, else sendfile); returns bytes copied."""
    done = 0
    copy_range = getattr(os, "copy_file_range", None)
    while done < size and copy_range is not None:
        try:
            n = copy_range(src, dst, size - done)
        except OSError:
            if done:
                raise
            break
        if n == 0:
            return done
        done += n
    while done < size:
        try:
            n = os.sendfile(dst, src, done, size - done)
        except OSError:
            if done:
                raise
            os.lseek(src, 0, os.SEEK_SET)
            with open(src, "rb", closefd=False) as fin, open(dst, "wb", closefd=False) as fout:
                shutil.copyfileobj(fin, fout)
            return os.fstat(dst).st_size
        if n == 0:
            break
        done += n
    return done


def _stage_file(path: str, files_root: str, durable: bool = False, folders: set | None = None) -> Parsed | Rejection:
    """Bulk-import step for one file: check its header and stage a temporary copy in its final folder.

    The file is opened once: its header is read from the descriptor and the copy is made by the
    kernel from the same descriptor, never through Python memory. Its size and mtime are compared
    before and after, so the staged copy holds exactly the checked file. `folders` remembers the
    folders already made.
    """
    try:
        src = os.open(path, os.O_RDONLY)
    except OSError as exc:
        return Rejection(path, f"cannot be read: {exc.strerror or exc}")
    try:
        try:
            before = os.fstat(src)
            p = parse_fd(src, before.st_size, path)
        except CacheError as exc:
            return Rejection(path, str(exc))
        except OSError as exc:
            return Rejection(path, f"cannot be read: {exc.strerror or exc}")
        final = Path(files_root) / relative_path(p.study, p.series, p.sop)
        try:
            if folders is None or final.parent not in folders:
                final.parent.mkdir(parents=True, exist_ok=True)
                if folders is not None:
                    folders.add(final.parent)
            if p.data:
                tmp = _write_temp(final, p.data, durable=durable)
            else:
                tmp = _temp_name(final)
                try:
                    dst = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
                except FileNotFoundError:
                    final.parent.mkdir(parents=True, exist_ok=True)
                    dst = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
                try:
                    copied = _kernel_copy(src, dst, p.size)
                    if durable:
                        os.fsync(dst)
                finally:
                    os.close(dst)
                after = os.fstat(src)
                if (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns) or copied != p.size:
                    os.unlink(tmp)
                    return Rejection(path, "the file changed while it was being imported")
        except OSError as exc:
            return Rejection(path, f"cannot be stored: {exc.strerror or exc}")
    finally:
        os.close(src)
    p.staged = str(tmp)
    p.data = b""
    return p


def _fsync_dir(folder: Path) -> None:
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _same_bytes(data: bytes, stored: Path) -> bool:
    with open(stored, "rb") as f:
        view = memoryview(data)
        for start in range(0, len(view), _COMPARE_BLOCK):
            if f.read(_COMPARE_BLOCK) != view[start : start + _COMPARE_BLOCK]:
                return False
        return not f.read(1)


def _same_files(a: Path, b: Path) -> bool:
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            block = fa.read(_COMPARE_BLOCK)
            if block != fb.read(_COMPARE_BLOCK):
                return False
            if not block:
                return True


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
            self._conn.execute(_INSTANCES_TABLE.format(name="instances"))
            for sql in _INSTANCE_INDEXES:
                self._conn.execute(sql)
            self._conn.execute(
                "INSERT OR IGNORE INTO meta(key, value) VALUES('schema_version', ?)", (str(SCHEMA_VERSION),)
            )
            self._migrate()

    def _migrate(self) -> None:
        """Bring an index written by an older version up to SCHEMA_VERSION, in one transaction.

        1 -> 2: the sha1 column goes (contents are compared only on a UID clash) and a nullable
        slice-record column arrives. The table is rebuilt rather than altered so that this works on
        SQLite builds without DROP COLUMN; old rows get their slice record the first time
        `volume_slices` reads their series.
        """
        (version,) = self._conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        version = int(version)
        if version > SCHEMA_VERSION:
            raise CacheError(f"the cache index has schema {version}, newer than this version understands")
        if version == 1:
            with self._write() as conn:
                conn.execute(_INSTANCES_TABLE.format(name="instances_v2"))
                conn.execute(
                    f"INSERT INTO instances_v2({_V1_INSTANCE_COLUMNS}) SELECT {_V1_INSTANCE_COLUMNS} FROM instances"
                )
                conn.execute("DROP TABLE instances")
                conn.execute("ALTER TABLE instances_v2 RENAME TO instances")
                for sql in _INSTANCE_INDEXES:
                    conn.execute(sql)
                conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION),))

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
        return self._stripes[_stripe_index(study)]

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
            _fsync_dir(final.parent)

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
        self._add_rows(conn, [(p, relpath, now)])

    def _add_rows(self, conn: sqlite3.Connection, items: list[tuple[Parsed, str, float]]) -> None:
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
        refresh_modalities: set[str] = set()
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
                    refresh_modalities.add(p.study)
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
                refresh_modalities.add(p.study)
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
                refresh_modalities.add(p.study)
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
                self._refresh_folds(conn, uid)
        for uid in studies:
            if uid in refresh_modalities:
                self._refresh_modalities(conn, uid)
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
            f"INSERT INTO instances({_INSTANCE_FIELDS}, added, geometry) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    p.sop, p.series, p.study, p.instance_attrs["SOPClassUID"], p.instance_attrs["InstanceNumber"],
                    p.instance_attrs["NumberOfFrames"], p.instance_attrs["Rows"], p.instance_attrs["Columns"],
                    p.instance_attrs["TransferSyntaxUID"], relpath, p.size, now, p.geometry,
                )
                for p, relpath, now in items
            ],
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

    def _old_rows(self, sops: Iterable[str]) -> dict[str, sqlite3.Row]:
        wanted = list(dict.fromkeys(sops))
        if not wanted:
            return {}
        with self._lock:
            rows = self._db().execute(
                f"SELECT {_INSTANCE_FIELDS} FROM instances WHERE SOPInstanceUID IN ({','.join('?' * len(wanted))})",
                wanted,
            ).fetchall()
        return {r["SOPInstanceUID"]: r for r in rows}

    def _compare(self, p: Parsed, old: sqlite3.Row) -> str:
        """"same", "different", or "damaged" when the stored file is missing or not the size the index says."""
        stored = self._abs(old["path"])
        try:
            if stored.stat().st_size != old["size_bytes"]:
                return "damaged"
            if p.size != old["size_bytes"]:
                return "different"
            if p.data:
                return "same" if _same_bytes(p.data, stored) else "different"
            return "same" if _same_files(Path(p.staged or p.source), stored) else "different"
        except OSError:
            return "damaged"

    def _place(self, p: Parsed, old: sqlite3.Row | None, pending: list, batch: bool) -> str:
        """Duplicate check and file placement for one instance (its study's stripe is held).

        A new instance's row is appended to `pending` (written by `_flush`); a replacement flushes
        what is pending first and then swaps its row, so rows are always written in arrival order.
        The file is in place before its row is written.
        """
        relpath = relative_path(p.study, p.series, p.sop)
        outcome = "imported"
        if old is not None:
            verdict = self._compare(p, old)
            if verdict == "same":
                if p.staged:
                    with contextlib.suppress(OSError):
                        os.unlink(p.staged)
                return "duplicate"
            outcome = "replaced" if verdict == "different" else "imported"
        if p.staged:
            os.replace(p.staged, self._abs(relpath))
            p.staged = ""
            if not batch:
                _fsync_dir(self._abs(relpath).parent)
        else:
            self._write_file(relpath, p.data, durable=not batch)
        now = self._now()
        if old is None:
            pending.append((p, relpath, now))
            return outcome
        self._flush(pending, commit=False)
        with self._write(commit=not batch) as conn:
            self._replace_row(conn, old, p, relpath, now)
        if old["path"] != relpath:
            with contextlib.suppress(OSError):
                self._abs(old["path"]).unlink()
        self._notify([(p, relpath, now)])
        return outcome

    def _flush(self, pending: list, commit: bool) -> None:
        """Write the rows of instances already in place, then tell the listeners."""
        if not pending:
            return
        items = list(pending)
        pending.clear()
        with self._write(commit=commit) as conn:
            self._add_rows(conn, items)
        self._notify(items)

    def _notify(self, items: list) -> None:
        for p, _, _ in items:
            for listener in list(self._listeners):
                listener(p.study, p.series, p.sop)

    def _store(self, p: Parsed, batch: bool) -> str:
        """Index one checked instance: duplicate, replacement or new; the file lands before its row."""
        with self._stripe(p.study):
            pending: list = []
            try:
                outcome = self._place(p, self._old_rows([p.sop]).get(p.sop), pending, batch)
            finally:
                self._flush(pending, commit=not batch)
        return outcome

    def ingest_bytes(self, data: bytes, source: str = "") -> str:
        """Store a whole Part-10 file received in memory; returns "imported", "duplicate" or "replaced"."""
        return self._store(parse_instance(bytes(data)), batch=False)

    def ingest_file(self, path: str | os.PathLike[str]) -> str:
        """Store one file; raises CacheError(reason) when it is refused."""
        result = _stage_file(str(path), str(self.files), durable=True)
        if isinstance(result, Rejection):
            raise CacheError(result.reason)
        try:
            return self._store(result, batch=False)
        finally:
            if result.staged:
                with contextlib.suppress(OSError):
                    os.unlink(result.staged)

    def import_paths(
        self,
        paths: Iterable[str | os.PathLike[str]],
        progress: Progress = no_progress,
        cancel: CancelToken | None = None,
    ) -> ImportReport:
        """Import files, folders, .zip archives and DICOMDIR media; bad files are reported and skipped.

        Files are listed first so progress has a total; headers are parsed and files staged on
        worker threads while this thread, a chunk of files at a time, checks for duplicates with
        one query, renames the files into place and writes their rows. On cancel, what is imported
        stays and the `Cancelled` exception carries the partial report as `.report`.
        """
        entries, rejected = collect(paths)
        report = ImportReport(rejected=list(rejected))
        total = len(entries)
        progress(0, total, "")
        seen_studies: set[str] = set()
        seen_series: set[str] = set()
        chunk_size = max(1, min(CHUNK_FILES, BATCH_FILES))
        state = {"pending": 0, "last_commit": time.monotonic()}
        prepared = self._prepared(entries, window=chunk_size)
        chunk: list = []
        try:
            for done, (entry, result) in enumerate(prepared, start=1):
                chunk.append((done, entry, result))
                if len(chunk) >= chunk_size or done == total:
                    self._import_chunk(chunk, report, seen_studies, seen_series, progress, total, cancel, state)
                    chunk = []
        except Cancelled as exc:
            exc.report = report
            raise
        finally:
            for _, _, result in chunk:
                if isinstance(result, Parsed) and result.staged:
                    with contextlib.suppress(OSError):
                        os.unlink(result.staged)
            prepared.close()
            self._commit()
        if self.quota_bytes is not None:
            self.evict(self.quota_bytes, keep=set(report.study_uids))
        return report

    def _import_chunk(self, chunk, report, seen_studies, seen_series, progress, total, cancel, state) -> None:
        """Store consecutive prepared files: one duplicate query, renames in order, rows in a few statements.

        Rows are committed every BATCH_FILES stored files or BATCH_SECONDS, as each file is reached;
        files are always in place before their rows are written.
        """
        parsed = [r for _, _, r in chunk if isinstance(r, Parsed)]
        stripes = sorted({_stripe_index(p.study) for p in parsed})
        pending: list = []
        with contextlib.ExitStack() as stack:
            for i in stripes:
                stack.enter_context(self._stripes[i])
            old = self._old_rows(p.sop for p in parsed)
            placed: set[str] = set()
            try:
                for i, (done, entry, result) in enumerate(chunk):
                    if cancel is not None and cancel.cancelled:
                        cancel.raise_if_cancelled()
                    if isinstance(result, Rejection):
                        report.rejected.append(result)
                    else:
                        if result.sop in placed:
                            self._flush(pending, commit=False)
                            old.update(self._old_rows([result.sop]))
                        try:
                            outcome = self._place(result, old.get(result.sop), pending, batch=True)
                        except (CacheError, OSError) as exc:
                            report.rejected.append(Rejection(entry.label, f"cannot be stored: {exc}"))
                            outcome = None
                            if result.staged:
                                with contextlib.suppress(OSError):
                                    os.unlink(result.staged)
                        if outcome == "duplicate":
                            report.duplicates += 1
                        elif outcome == "replaced":
                            report.replaced += 1
                        elif outcome == "imported":
                            report.imported += 1
                        if outcome is not None:
                            placed.add(result.sop)
                            if result.study not in seen_studies:
                                seen_studies.add(result.study)
                                report.study_uids.append(result.study)
                            if result.series not in seen_series:
                                seen_series.add(result.series)
                                report.series_uids.append(result.series)
                            state["pending"] += 1
                    chunk[i] = (done, entry, None)
                    if state["pending"] >= BATCH_FILES or (
                        state["pending"] and time.monotonic() - state["last_commit"] > BATCH_SECONDS
                    ):
                        self._flush(pending, commit=False)
                        self._commit()
                        state["pending"] = 0
                        state["last_commit"] = time.monotonic()
                    progress(done, total, entry.label)
            finally:
                self._flush(pending, commit=False)

    def _prepared(self, entries: list[Entry], window: int = 0):
        """Yield (entry, Parsed | Rejection) in order, preparing up to `window` files ahead on threads.

        Plain files are staged (copied under a temporary name into their final folder) by the
        worker; archive members are parsed in memory and written by the importing thread.
        """

        def prepare(entry: Entry) -> Parsed | Rejection:
            if entry.path:
                return _stage_file(entry.path, files_root, folders=folders)
            try:
                return parse_instance(entry.read())
            except CacheError as exc:
                return Rejection(entry.label, str(exc))
            except OSError as exc:
                return Rejection(entry.label, f"cannot be read: {exc.strerror or exc}")

        files_root = str(self.files)
        folders: set[Path] = set()
        workers = max(1, min(4, os.cpu_count() or 1))
        window = max(window, workers * 4)
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="cache-import") as threads:
            futures: collections.deque = collections.deque()
            try:
                for i, entry in enumerate(entries):
                    futures.append((entry, threads.submit(prepare, entry)))
                    if i >= window:
                        e, f = futures.popleft()
                        yield e, f.result()
                while futures:
                    e, f = futures.popleft()
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
            path=str(self._abs(r["path"])), size_bytes=r["size_bytes"],
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

    def volume_slices(self, series_uid: str) -> list[SliceHeader]:
        """The slices of one series as `assemble_volume_from_headers` needs them, from the index alone.

        Rows indexed before the slice record existed (schema 1) are read from their files once
        and their record is stored, so the next open reads no header either.
        """
        with self._lock:
            rows = self._db().execute(
                "SELECT SOPInstanceUID, path, size_bytes, geometry FROM instances WHERE SeriesInstanceUID = ? "
                "ORDER BY InstanceNumber IS NULL, InstanceNumber, SOPInstanceUID",
                (series_uid,),
            ).fetchall()
        headers = []
        backfill = []
        for sop, relpath, size, geometry in rows:
            path = self._abs(relpath)
            if geometry is None:
                record, found = read_slice_record(path)
                if found == size:
                    backfill.append((json.dumps(record, separators=(",", ":")), sop))
                headers.append(SliceHeader.from_record(path, record, found))
            else:
                headers.append(SliceHeader.from_record(path, json.loads(geometry), size))
        if backfill:
            with self._write() as conn:
                conn.executemany("UPDATE instances SET geometry = ? WHERE SOPInstanceUID = ?", backfill)
        return headers

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
            p = parse_file(path)
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
