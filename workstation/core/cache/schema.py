"""The SQLite index: tables, the columns read back, opening a connection and migrating old schemas."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from workstation.core.cache.reports import CacheError

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


def connect(path: Path) -> sqlite3.Connection:
    """Open (creating or migrating) the index; autocommit mode, so transactions are explicit."""
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
