"""Keeping the cache in shape: access times and pins, deleting studies, LRU eviction, verify and repair."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import sqlite3
from pathlib import Path

from workstation.core.cache import files, rows, schema
from workstation.core.cache.annotations import forget as forget_annotations
from workstation.core.cache.core import CacheCore
from workstation.core.cache.parse import parse_file
from workstation.core.cache.reports import CacheError, EvictReport, IndexDamaged, Rejection, VerifyReport
from workstation.core.cache.schema import DAMAGED_INDEX, INDEX, INSTANCE_FIELDS
from workstation.core.children import as_child, fork_is_safe
from workstation.core.tasks import CancelToken, Progress, no_progress

PARSE_BATCH = 64
"""Files whose headers one worker process reads at a time while the index is rebuilt."""


class Maintenance(CacheCore):
    """Deletion, eviction and verification; each works a whole study (or the whole store) at a time."""

    def touch(self, study_uid: str) -> None:
        """Mark a study as used now, so LRU eviction keeps it longest."""
        now = self._now()
        with self._write() as conn:
            if conn.execute("UPDATE studies SET last_access = ? WHERE StudyInstanceUID = ?", (now, study_uid)).rowcount:
                _keep_state(conn, study_uid)

    def pin(self, study_uid: str, pinned: bool = True) -> None:
        with self._write() as conn:
            n = conn.execute(
                "UPDATE studies SET pinned = ? WHERE StudyInstanceUID = ?", (1 if pinned else 0, study_uid)
            ).rowcount
            if not n:
                raise CacheError(f"no study {study_uid} in the cache")
            _keep_state(conn, study_uid)

    def delete(self, study_uid: str) -> None:
        """Remove a whole study: its folder goes to trash and its rows go in one unit, then the trash is emptied.

        Its annotations go too (eviction keeps them); a study evicted earlier that still has some
        can be deleted for them alone. If the rows cannot be deleted (the index cannot grow on a
        full disk), the folder comes back.
        """
        self._delete(study_uid, forget=True)

    def _delete(self, study_uid: str, unless_pinned: bool = False, forget: bool = False) -> int:
        with self._stripe(study_uid):
            with self._unit() as unit:
                c = self._db()
                row = c.execute(
                    "SELECT size_bytes, pinned FROM studies WHERE StudyInstanceUID = ?", (study_uid,)
                ).fetchone()
                if row is None:
                    if forget and forget_annotations(c, study_uid):
                        return 0
                    raise CacheError(f"no study {study_uid} in the cache")
                if unless_pinned and row["pinned"]:
                    return -1
                folder = self._abs(files.study_dir(study_uid))
                parked = self.trash / secrets.token_hex(8)
                if folder.exists():
                    os.replace(folder, parked)
                    unit.on_undo(lambda: os.replace(parked, folder))
                    unit.after_commit(lambda: shutil.rmtree(parked, ignore_errors=True))
                c.execute("DELETE FROM instances WHERE StudyInstanceUID = ?", (study_uid,))
                c.execute("DELETE FROM series WHERE StudyInstanceUID = ?", (study_uid,))
                c.execute("DELETE FROM studies WHERE StudyInstanceUID = ?", (study_uid,))
                c.execute("DELETE FROM state.studies WHERE StudyInstanceUID = ?", (study_uid,))
                if forget:
                    forget_annotations(c, study_uid)
                rows.drop_orphan_patients(c)
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
        with self._all_stripes(), self._unit():
            return self._verify(repair)

    def _verify(self, repair: bool) -> VerifyReport:
        """`verify` under the index's write lock: no other process is between placing a file and
        committing its row meanwhile, and temporary files of processes still running are theirs."""
        indexed = {
            r["path"]: r for r in self._db().execute(f"SELECT {INSTANCE_FIELDS} FROM instances").fetchall()
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
                    if not files.temp_in_flight(name):
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
        mismatched = rows.count_mismatches(self._db())
        report = VerifyReport(
            ok=not (strays or orphans or missing or wrong_size or mismatched),
            orphan_files=len(strays) + len(orphans),
            missing_files=len(missing) + len(wrong_size),
        )
        if not repair or report.ok:
            return report
        failures = 0
        emptied: set[Path] = set()
        for path in strays:
            try:
                if path.is_dir():
                    shutil.rmtree(path, ignore_errors=True)  # another process may be emptying it too
                else:
                    path.unlink(missing_ok=True)
                    emptied.add(path.parent)
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
            emptied.add(path.parent)
            report.repaired += 1
        with self._write() as conn:
            rows.recompute_all(conn)
            report.repaired += mismatched
        self._remove_empty_folders(emptied)
        report.ok = failures == 0
        return report

    def _reindex_all(self, salvaged: dict[str, tuple[int, float]], progress: Progress,
                     cancel: CancelToken | None) -> int:
        """Index every file of the store into this (new, empty) index; returns how many instances.

        Files that are not valid instances are deleted, as verify does; a file that cannot be read is
        left for the next verify. Pins and access times come back from the state file (and what could
        be read of the damaged index); a study's other times from its files' modification times.
        """
        paths = sorted(
            str(Path(dirpath) / name)
            for dirpath, _dirs, names in os.walk(self.files)
            for name in names
            if not files.is_temp(name)
        )
        total = len(paths)
        progress(0, total, "rebuilding the cache index from its files")
        seen: set[str] = set()
        done = 0
        for batch in _parsed_in_order(paths):
            if cancel is not None:
                cancel.raise_if_cancelled()
            with self._unit():
                pending = []
                for path, result in batch:
                    done += 1
                    if isinstance(result, Rejection):
                        if not result.reason.startswith("cannot be read"):
                            Path(path).unlink(missing_ok=True)
                        continue
                    relpath = files.relative_path(result.study, result.series, result.sop)
                    final = self._abs(relpath)
                    if result.sop in seen or (Path(path) != final and final.exists()):
                        Path(path).unlink(missing_ok=True)  # a second copy of an instance already indexed
                        continue
                    if Path(path) != final:
                        final.parent.mkdir(parents=True, exist_ok=True)
                        os.replace(path, final)
                    seen.add(result.sop)
                    pending.append((result, relpath, os.stat(final).st_mtime))
                rows.add_rows(self._db(), pending)
            progress(done, total, "rebuilding the cache index from its files")
        with self._write() as conn:
            conn.executemany(
                "INSERT OR IGNORE INTO state.studies(StudyInstanceUID, pinned, last_access) VALUES (?, ?, ?)",
                [(uid, pinned, last) for uid, (pinned, last) in salvaged.items() if pinned or last],
            )
            conn.execute(
                "UPDATE studies SET "
                "pinned = coalesce((SELECT s.pinned FROM state.studies s WHERE s.StudyInstanceUID = studies.StudyInstanceUID), 0), "
                "last_access = max(last_access, coalesce((SELECT s.last_access FROM state.studies s "
                "WHERE s.StudyInstanceUID = studies.StudyInstanceUID), 0))"
            )
        return len(seen)

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

    def _remove_empty_folders(self, folders: set[Path]) -> None:
        """Remove the folders repair emptied, and their parents when that empties them (never others:
        another process may have just made one to stage a file in)."""
        for folder in sorted(folders, key=lambda f: len(f.parts), reverse=True):
            while folder != self.files and self.files in folder.parents:
                try:
                    os.rmdir(folder)
                except OSError:
                    break
                folder = folder.parent

def rebuild_index(home: Path, quota_bytes: int | None = None, progress: Progress = no_progress,
                  cancel: CancelToken | None = None) -> VerifyReport:
    """Make a new index from the files when the old one cannot be read; a no-op report when it can.

    The damaged index is kept beside it as index.damaged.sqlite (replacing an older one); the new
    one gets every valid instance back, with its study's pin and access time from the state file.
    Then a repairing verify removes leftovers and checks the result.
    """
    from workstation.core.cache.store import Cache

    root = Path(home) / "cache"
    try:
        with Cache(home, quota_bytes) as cache:
            return cache.verify(repair=True)
    except IndexDamaged as exc:
        reason = exc.reason or str(exc)
    salvaged = schema.salvage_state(root / INDEX)
    schema.set_aside(root / INDEX, root / DAMAGED_INDEX)
    with Cache(home, quota_bytes, new_index=True) as cache:
        indexed = cache._reindex_all(salvaged, progress, cancel)
        report = cache.verify(repair=True)
    report.index_damaged = reason
    report.rebuilt = True
    report.repaired += indexed
    return report


def _parsed_in_order(paths: list[str]):
    """Batches of (path, Parsed | Rejection) in order; headers are read in forked processes when that is safe."""
    batches = [paths[i:i + PARSE_BATCH] for i in range(0, len(paths), PARSE_BATCH)]
    if len(batches) < 2 or not fork_is_safe():
        for batch in batches:
            yield list(zip(batch, files.parse_files(batch), strict=True))
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(max_workers=max(2, os.cpu_count() or 2), mp_context=context, initializer=as_child,
                             initargs=(os.getpid(),)) as pool:
        for batch, found in zip(batches, pool.map(files.parse_files, batches), strict=True):
            yield list(zip(batch, found, strict=True))


def _keep_state(conn: sqlite3.Connection, study_uid: str) -> None:
    """Copy a study's pin and access time into the state file, which survives a rebuild of the index."""
    conn.execute(
        "INSERT OR REPLACE INTO state.studies(StudyInstanceUID, pinned, last_access) "
        "SELECT StudyInstanceUID, pinned, last_access FROM main.studies WHERE StudyInstanceUID = ?",
        (study_uid,),
    )
