"""The SQLite index: tables, the columns read back, opening a connection and migrating old schemas.

What the files cannot tell (pins, access times) is also kept in a small second database, `state.sqlite`,
attached as `state` and written in the same transactions, so that an index rebuilt from the files
gets it back; the viewer's annotations live only there. When the state file alone is damaged it is
started again from the index and from what can still be read of its annotations.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
from pathlib import Path

from workstation.core.cache.reports import CacheError, IndexDamaged

log = logging.getLogger(__name__)

INDEX = "index.sqlite"
STATE = "state.sqlite"
DAMAGED_INDEX = "index.damaged.sqlite"
_STATE_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS state.studies("
    "StudyInstanceUID TEXT PRIMARY KEY, pinned INTEGER NOT NULL DEFAULT 0, last_access REAL NOT NULL DEFAULT 0)",
    # The viewer's annotations: JSON documents, kept when a study is evicted, gone when it is deleted.
    "CREATE TABLE IF NOT EXISTS state.annotations("
    "uid TEXT PRIMARY KEY, StudyInstanceUID TEXT NOT NULL, position INTEGER NOT NULL, document TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS state.annotations_study ON annotations(StudyInstanceUID, position)",
)

SCHEMA_VERSION = 2

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
STUDY_FIELDS = (
    "StudyInstanceUID, PatientID, PatientName, PatientBirthDate, PatientSex, StudyDate, StudyTime, "
    "StudyDescription, AccessionNumber, ReferringPhysicianName, StudyID, ModalitiesInStudy, "
    "NumberOfStudyRelatedSeries, NumberOfStudyRelatedInstances, pinned, size_bytes, last_access"
)
SERIES_FIELDS = (
    "SeriesInstanceUID, StudyInstanceUID, Modality, SeriesNumber, SeriesDescription, BodyPartExamined, "
    "SeriesDate, SeriesTime, NumberOfSeriesRelatedInstances"
)
INSTANCE_FIELDS = (
    "SOPInstanceUID, SeriesInstanceUID, StudyInstanceUID, SOPClassUID, InstanceNumber, NumberOfFrames, "
    "Rows, Columns, TransferSyntaxUID, path, size_bytes"
)


def is_damage(exc: BaseException) -> bool:
    """True for SQLite's "malformed" and "not a database" errors (not for locks, I/O or constraints)."""
    name = getattr(exc, "sqlite_errorname", "")
    if name:
        return name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB"))
    return type(exc) is sqlite3.DatabaseError


def damaged(reason: str) -> IndexDamaged:
    exc = IndexDamaged(f"the cache index is damaged ({reason}); 'workstation verify --repair' rebuilds it "
                       "from the files, keeping pins and access times")
    exc.reason = reason
    return exc


def _problem(conn: sqlite3.Connection, schema: str = "main") -> str:
    """What PRAGMA quick_check finds wrong (reads every page: about 0.1 s for 200,000 instances), or ''."""
    found = [r[0] for r in conn.execute(f"PRAGMA {schema}.quick_check(3)").fetchall()]
    if found == ["ok"]:
        return ""
    lines = [line.strip() for text in found for line in str(text).splitlines()]
    return "; ".join(line for line in lines if line and not line.startswith("***"))[:200]


def open_index(root: Path, new_index: bool = False) -> sqlite3.Connection:
    """Open the index under `root` with the state attached; IndexDamaged when it cannot be read."""
    index = root / INDEX
    if not new_index and (not index.exists() or index.stat().st_size == 0) and _holds_files(root / "files"):
        raise damaged("the index is missing or empty but the cache holds files")
    try:
        conn = sqlite3.connect(root / INDEX, check_same_thread=False, isolation_level=None, timeout=30.0)
    except sqlite3.DatabaseError as exc:
        raise damaged(str(exc)) from None
    try:
        try:
            problem = _problem(conn)
        except sqlite3.DatabaseError as exc:
            if not is_damage(exc):
                raise
            problem = str(exc)
        if problem:
            raise damaged(problem)
        connect(root / INDEX, conn)
        _attach_state(conn, root / STATE)
    except BaseException:
        conn.close()
        raise
    return conn


def _holds_files(folder: Path) -> bool:
    try:
        with os.scandir(folder) as entries:
            return any(True for _ in entries)
    except OSError:
        return False


def _attach_state(conn: sqlite3.Connection, path: Path) -> None:
    fresh = not path.exists()
    damaged_state: Path | None = None
    try:
        conn.execute("ATTACH DATABASE ? AS state", (str(path),))
        conn.execute("PRAGMA state.journal_mode = WAL")
        problem = _problem(conn, "state")
    except sqlite3.DatabaseError as exc:
        if not is_damage(exc):
            raise
        problem = str(exc)
    if problem:
        damaged_state = path.with_name("state.damaged.sqlite")
        log.warning("the cache's state file %s is damaged (%s); it is started again from the index and what "
                    "can be read of its annotations (the damaged file is kept as %s)", path, problem, damaged_state.name)
        with contextlib.suppress(sqlite3.Error):
            conn.execute("DETACH DATABASE state")
        set_aside(path, damaged_state)
        conn.execute("ATTACH DATABASE ? AS state", (str(path),))
        conn.execute("PRAGMA state.journal_mode = WAL")
        fresh = True
    for sql in _STATE_SCHEMA:
        conn.execute(sql)
    if damaged_state is not None:
        salvage_annotations(conn, damaged_state)
    if fresh:  # a cache older than the state file, or a damaged one: the index knows the pins
        conn.execute(
            "INSERT OR REPLACE INTO state.studies(StudyInstanceUID, pinned, last_access) "
            "SELECT StudyInstanceUID, pinned, last_access FROM main.studies WHERE pinned != 0 OR last_access != added"
        )


def set_aside(path: Path, to: Path) -> None:
    """Move a database and its WAL out of the way (a WAL must never meet another database file)."""
    wal, kept_wal = Path(f"{path}-wal"), Path(f"{to}-wal")
    if path.exists():
        os.replace(path, to)
        if wal.exists():
            os.replace(wal, kept_wal)
        else:
            kept_wal.unlink(missing_ok=True)
    else:
        wal.unlink(missing_ok=True)
    Path(f"{path}-shm").unlink(missing_ok=True)


def salvage_state(path: Path) -> dict[str, tuple[int, float]]:
    """Best effort: the pins and access times a damaged index still lets us read, study by study."""
    found: dict[str, tuple[int, float]] = {}
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error:
        return found
    try:
        for uid, pinned, last_access in conn.execute("SELECT StudyInstanceUID, pinned, last_access FROM studies"):
            found[str(uid)] = (int(pinned or 0), float(last_access or 0))
    except (sqlite3.Error, TypeError, ValueError):
        pass
    finally:
        conn.close()
    return found


def salvage_annotations(conn: sqlite3.Connection, damaged: Path) -> int:
    """Best effort: copy the annotations a damaged state file still lets us read into the new one."""
    try:
        old = sqlite3.connect(f"file:{damaged}?mode=ro", uri=True)
    except sqlite3.Error:
        return 0
    found = []
    try:
        for row in old.execute("SELECT uid, StudyInstanceUID, position, document FROM annotations"):
            found.append(tuple(row))
    except sqlite3.Error:
        pass
    finally:
        old.close()
    conn.executemany("INSERT OR IGNORE INTO state.annotations(uid, StudyInstanceUID, position, document) "
                     "VALUES (?, ?, ?, ?)", found)
    return len(found)


def connect(path: Path, conn: sqlite3.Connection | None = None) -> sqlite3.Connection:
    """Open (creating or migrating) the index; autocommit mode, so transactions are explicit."""
    if conn is None:
        conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30.0)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA busy_timeout = 30000")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.executescript(_SCHEMA)
    conn.execute(_INSTANCES_TABLE.format(name="instances"))
    for sql in _INSTANCE_INDEXES:
        conn.execute(sql)
    conn.execute("INSERT OR IGNORE INTO meta(key, value) VALUES('schema_version', ?)", (str(SCHEMA_VERSION),))
    try:
        _migrate(conn)
    except BaseException:
        conn.close()
        raise
    return conn


def _migrate(conn: sqlite3.Connection) -> None:
    """Bring an index written by an older version up to SCHEMA_VERSION, in one transaction.

    1 -> 2: the sha1 column goes (contents are compared only on a UID clash) and a nullable
    slice-record column arrives. The table is rebuilt rather than altered so that this works on
    SQLite builds without DROP COLUMN; old rows get their slice record the first time
    `volume_slices` reads their series.
    """
    (version,) = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    version = int(version)
    if version > SCHEMA_VERSION:
        raise CacheError(f"the cache index has schema {version}, newer than this version understands")
    if version == 1:
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(_INSTANCES_TABLE.format(name="instances_v2"))
            conn.execute(
                f"INSERT INTO instances_v2({_V1_INSTANCE_COLUMNS}) SELECT {_V1_INSTANCE_COLUMNS} FROM instances"
            )
            conn.execute("DROP TABLE instances")
            conn.execute("ALTER TABLE instances_v2 RENAME TO instances")
            for sql in _INSTANCE_INDEXES:
                conn.execute(sql)
            conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION),))
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
