"""Keeping the cache in shape: access times and pins, deleting studies, LRU eviction, verify and repair."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import sqlite3
from pathlib import Path

from workstation.core.cache import files, rows
from workstation.core.cache.core import CacheCore
from workstation.core.cache.parse import parse_file
from workstation.core.cache.reports import CacheError, EvictReport, VerifyReport
from workstation.core.cache.schema import INSTANCE_FIELDS


class Maintenance(CacheCore):
    """Deletion, eviction and verification; each works a whole study (or the whole store) at a time."""

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
                folder = self._abs(files.study_dir(study_uid))
                parked = self.trash / secrets.token_hex(8)
                if folder.exists():
                    os.replace(folder, parked)
                with self._write() as c:
                    c.execute("DELETE FROM instances WHERE StudyInstanceUID = ?", (study_uid,))
                    c.execute("DELETE FROM series WHERE StudyInstanceUID = ?", (study_uid,))
                    c.execute("DELETE FROM studies WHERE StudyInstanceUID = ?", (study_uid,))
                    rows.drop_orphan_patients(c)
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
                indexed = {
                    r["path"]: r
                    for r in self._db().execute(f"SELECT {INSTANCE_FIELDS} FROM instances").fetchall()
                }
            strays: list[Path] = [self.trash / n for n in os.listdir(self.trash)]
            orphans: list[Path] = []
            wrong_size: list[sqlite3.Row] = []
            present: set[str] = set()
            for dirpath, _dirnames, filenames in os.walk(self.files):
                for name in filenames:
                    path = Path(dirpath) / name
                    rel = path.relative_to(self.files).as_posix()
                    if files.is_temp(name):
                        strays.append(path)
                    elif rel in indexed:
                        present.add(rel)
                        try:
                            if path.stat().st_size != indexed[rel]["size_bytes"]:
                                wrong_size.append(indexed[rel])
                        except OSError:
                            present.discard(rel)
                    else:
                        orphans.append(path)
            missing = [r for rel, r in indexed.items() if rel not in present]
            with self._lock:
                mismatched = rows.count_mismatches(self._db())
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
                    rows.remove_row(conn, row)
                    report.repaired += 1
            for row in wrong_size:
                path = self._abs(row["path"])
                with self._write() as conn:
                    rows.remove_row(conn, row)
                failures += not self._reindex(path)
                report.repaired += 1
            for path in orphans:
                failures += not self._reindex(path)
                report.repaired += 1
            with self._write() as conn:
                rows.recompute_all(conn)
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
        relpath = files.relative_path(p.study, p.series, p.sop)
        with self._lock:
            old = self._db().execute(
                f"SELECT {INSTANCE_FIELDS} FROM instances WHERE SOPInstanceUID = ?", (p.sop,)
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
                    rows.add_row(conn, p, relpath, self._now())
                else:
                    rows.replace_row(conn, old, p, relpath, self._now())
        except OSError:
            return False
        return True

    def _remove_empty_folders(self) -> None:
        for dirpath, _dirnames, _filenames in os.walk(self.files, topdown=False):
            if Path(dirpath) != self.files:
                with contextlib.suppress(OSError):
                    os.rmdir(dirpath)
