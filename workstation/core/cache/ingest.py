"""Bringing instances in: single ingests (network receivers) and bulk imports of files, folders and media.

A bulk import lists its files first (so progress has a total), parses and stages them on worker
threads, and on the calling thread checks duplicates a chunk at a time with one query, renames the
staged files into place and writes their rows in a few statements. Rows are committed in batches;
single ingests fsync and commit each file.
"""

from __future__ import annotations

import collections
import contextlib
import os
import sqlite3
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from workstation.core.cache import files, rows
from workstation.core.cache.core import CacheCore, Unit, storage_failure, stripe_index
from workstation.core.cache.parse import Parsed, parse_instance
from workstation.core.cache.reports import CacheBusy, CacheError, CacheFull, ImportReport, Rejection
from workstation.core.cache.schema import INSTANCE_FIELDS
from workstation.core.cache.sources import Entry, collect
from workstation.core.children import as_child, fork_is_safe
from workstation.core.tasks import Cancelled, CancelToken, Progress, no_progress

BATCH_FILES = 200
"""Most files written in one transaction (tests lower it)."""
CHUNK_FILES = 64
"""Files whose duplicate check (one query), placement and index rows are one unit, committed together."""
_COUNTERS = {"imported": "imported", "duplicate": "duplicates", "replaced": "replaced"}


class Ingest(CacheCore):
    """Import and ingest; `evict` (after an import over quota) comes from the maintenance part."""

    def _old_rows(self, sops: Iterable[str]) -> dict[str, sqlite3.Row]:
        wanted = list(dict.fromkeys(sops))
        if not wanted:
            return {}
        with self._lock:
            found = self._db().execute(
                f"SELECT {INSTANCE_FIELDS} FROM instances WHERE SOPInstanceUID IN ({','.join('?' * len(wanted))})",
                wanted,
            ).fetchall()
        return {r["SOPInstanceUID"]: r for r in found}

    def _compare(self, p: Parsed, old: sqlite3.Row) -> str:
        """"same", "different", or "damaged" when the stored file is missing or not the size the index says."""
        stored = self._abs(old["path"])
        try:
            if stored.stat().st_size != old["size_bytes"]:
                return "damaged"
            if p.size != old["size_bytes"]:
                return "different"
            if p.data:
                return "same" if files.same_bytes(p.data, stored) else "different"
            return "same" if files.same_files(Path(p.staged or p.source), stored) else "different"
        except OSError:
            return "damaged"

    def _place(self, unit: Unit, p: Parsed, old: sqlite3.Row | None, pending: list, durable: bool) -> str:
        """Duplicate check and file placement for one instance, inside `unit` (its study's stripe is held).

        A new instance's row is appended to `pending` (written by `_flush`); a replacement flushes
        what is pending first and then swaps its row, so rows are always written in arrival order.
        The file is in place before its row is written, and every file change is registered on the
        unit, so a rollback leaves the store as it was.
        """
        relpath = files.relative_path(p.study, p.series, p.sop)
        final = self._abs(relpath)
        outcome = "imported"
        if old is not None:
            verdict = self._compare(p, old)
            if verdict == "same":
                if p.staged:
                    with contextlib.suppress(OSError):
                        os.unlink(p.staged)
                return "duplicate"
            outcome = "replaced" if verdict == "different" else "imported"
        if os.path.lexists(final):
            unit.keep_backup(final)
        else:
            unit.placed(final)
        if p.staged:
            os.replace(p.staged, final)
            p.staged = ""
            if durable:
                files.fsync_dir(final.parent)
        else:
            files.place_bytes(final, p.data, durable=durable)
        now = self._now()
        if old is None:
            pending.append((p, relpath, now))
            return outcome
        self._flush(unit, pending)
        rows.replace_row(self._db(), old, p, relpath, now)
        if old["path"] != relpath:
            stale = self._abs(old["path"])
            unit.after_commit(lambda: stale.unlink(missing_ok=True))
        unit.after_commit(lambda: self._notify([(p, relpath, now)]))
        return outcome

    def _flush(self, unit: Unit, pending: list) -> None:
        """Write the rows of instances already in place; the listeners hear of them once they commit."""
        if not pending:
            return
        items = list(pending)
        pending.clear()
        rows.add_rows(self._db(), items)
        unit.after_commit(lambda: self._notify(items))

    def _notify(self, items: list) -> None:
        for p, _, _ in items:
            for listener in list(self._listeners):
                listener(p.study, p.series, p.sop)

    def _store(self, p: Parsed, durable: bool) -> str:
        """Index one checked instance: duplicate, replacement or new; the file lands before its row."""
        with self._stripe(p.study), self._unit() as unit:
            pending: list = []
            outcome = self._place(unit, p, self._old_rows([p.sop]).get(p.sop), pending, durable)
            self._flush(unit, pending)
        return outcome

    def ingest_bytes(self, data: bytes, source: str = "") -> str:
        """Store a whole Part-10 file received in memory; returns "imported", "duplicate" or "replaced"."""
        return self._store(parse_instance(bytes(data)), durable=True)

    def ingest_many(self, items: list[bytes]) -> list[str | CacheError | OSError]:
        """Store several received files at once; for each, its outcome or the error that refused it.

        A retrieval answers the node before it commits, so what it received is written the way
        a bulk import writes: files renamed into place without an fsync each, rows in one
        transaction. A crash loses at most this batch's rows, and `verify` re-indexes its files.
        """
        outcomes: list[str | CacheError | OSError] = []
        parsed: list[tuple[int, Parsed]] = []
        for i, data in enumerate(items):
            try:
                parsed.append((i, parse_instance(bytes(data))))
                outcomes.append("")
            except CacheError as exc:
                outcomes.append(exc)
        self._store_batch(parsed, outcomes)
        return outcomes

    def ingest_staged(self, items: list[Parsed], durable: bool = False) -> list[str | CacheError | OSError]:
        """Store instances a receiving process already checked and wrote under temporary names in their
        final folders (`files.stage_bytes`), as `ingest_many` does; a refused one's file is removed.
        `durable` (pushes, whose senders may delete their copies) fsyncs each folder after its rename."""
        outcomes: list[str | CacheError | OSError] = [""] * len(items)
        self._store_batch(list(enumerate(items)), outcomes, durable)
        return outcomes

    def _store_batch(self, parsed: list[tuple[int, Parsed]], outcomes: list, durable: bool = False) -> None:
        """Duplicate checks in one query, files placed in order, rows in one transaction.

        A storage failure (disk full) fails the whole batch: its files are taken back and it raises.
        """
        pending: list = []
        with contextlib.ExitStack() as stack:
            for stripe in sorted({stripe_index(p.study) for _, p in parsed}):
                stack.enter_context(self._stripes[stripe])
            try:
                with self._unit() as unit:
                    old = self._old_rows(p.sop for _, p in parsed)
                    placed: set[str] = set()
                    for i, p in parsed:
                        if p.sop in placed:  # the same instance twice in one batch: compare with the first
                            self._flush(unit, pending)
                            old.update(self._old_rows([p.sop]))
                        try:
                            outcomes[i] = self._place(unit, p, old.get(p.sop), pending, durable)
                            placed.add(p.sop)
                        except (CacheError, OSError) as exc:
                            if storage_failure(exc) is not None:
                                raise
                            outcomes[i] = exc
                            if p.staged:
                                with contextlib.suppress(OSError):
                                    os.unlink(p.staged)
                    self._flush(unit, pending)
            except BaseException:
                for _, p in parsed:
                    if p.staged:
                        with contextlib.suppress(OSError):
                            os.unlink(p.staged)
                raise

    def ingest_file(self, path: str | os.PathLike[str]) -> str:
        """Store one file; raises CacheError(reason) when it is refused."""
        result = files.stage_file(str(path), str(self.files), durable=True)
        if isinstance(result, Rejection):
            raise CacheError(result.reason)
        try:
            return self._store(result, durable=True)
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
        one query, renames the files into place and writes their rows, as one unit. On cancel, what
        is imported stays and the `Cancelled` exception carries the partial report as `.report`.
        When the disk fills up (or the index cannot be written) the import stops: the unit under
        way is taken back, and the report says what was imported and, in `stopped`, why it stopped.
        """
        entries, rejected = collect(paths)
        report = ImportReport(rejected=list(rejected))
        total = len(entries)
        progress(0, total, "")
        seen: tuple[set[str], set[str]] = (set(), set())
        chunk_size = max(1, min(CHUNK_FILES, BATCH_FILES))
        prepared = self._prepared(entries, window=chunk_size)
        chunk: list = []
        reached = 0
        try:
            for done, (entry, result) in enumerate(prepared, start=1):
                chunk.append((done, entry, result))
                if isinstance(result, Rejection) and result.full:
                    self._import_chunk(chunk[:-1], report, seen, progress, total, cancel)
                    reached = done - 1
                    raise CacheFull(f"the disk holding the cache is full ({result.reason.removeprefix('cannot be stored: ')})")
                if len(chunk) >= chunk_size or done == total:
                    self._import_chunk(chunk, report, seen, progress, total, cancel)
                    reached = done
                    chunk = []
        except Cancelled as exc:
            exc.report = report
            raise
        except (CacheFull, CacheBusy) as exc:
            report.stopped = str(exc)
            report.not_attempted = total - reached
        finally:
            for _, _, result in chunk:
                if isinstance(result, Parsed) and result.staged:
                    with contextlib.suppress(OSError):
                        os.unlink(result.staged)
            prepared.close()
        if self.quota_bytes is not None and not report.stopped:
            self.evict(self.quota_bytes, keep=set(report.study_uids))
        return report

    def _import_chunk(self, chunk, report, seen, progress, total, cancel) -> None:
        """Store consecutive prepared files as one unit: one duplicate query, renames in order, rows in a
        few statements, one commit. The report learns of the chunk only once it has committed."""
        parsed = [r for _, _, r in chunk if isinstance(r, Parsed)]
        stripes = sorted({stripe_index(p.study) for p in parsed})
        part = ImportReport()
        cancelled = False
        with contextlib.ExitStack() as stack:
            for i in stripes:
                stack.enter_context(self._stripes[i])
            with self._unit() as unit:
                pending: list = []
                old = self._old_rows(p.sop for p in parsed)
                placed: set[str] = set()
                for i, (done, entry, result) in enumerate(chunk):
                    if cancel is not None and cancel.cancelled:
                        cancelled = True
                        break
                    if isinstance(result, Rejection):
                        part.rejected.append(result)
                    else:
                        if result.sop in placed:
                            self._flush(unit, pending)
                            old.update(self._old_rows([result.sop]))
                        try:
                            outcome = self._place(unit, result, old.get(result.sop), pending, durable=False)
                        except (CacheError, OSError) as exc:
                            if storage_failure(exc) is not None:
                                raise
                            part.rejected.append(Rejection(entry.label, f"cannot be stored: {exc}"))
                            outcome = None
                            if result.staged:
                                with contextlib.suppress(OSError):
                                    os.unlink(result.staged)
                        if outcome is not None:
                            setattr(part, _COUNTERS[outcome], getattr(part, _COUNTERS[outcome]) + 1)
                            placed.add(result.sop)
                            if result.study not in seen[0]:
                                seen[0].add(result.study)
                                part.study_uids.append(result.study)
                            if result.series not in seen[1]:
                                seen[1].add(result.series)
                                part.series_uids.append(result.series)
                    chunk[i] = (done, entry, None)
                    progress(done, total, entry.label)
                self._flush(unit, pending)
        report.imported += part.imported
        report.duplicates += part.duplicates
        report.replaced += part.replaced
        report.rejected.extend(part.rejected)
        report.study_uids.extend(part.study_uids)
        report.series_uids.extend(part.series_uids)
        if cancelled:
            cancel.raise_if_cancelled()

    def _prepared(self, entries: list[Entry], window: int = 0):
        """Yield (entry, Parsed | Rejection) in order, preparing up to `window` files ahead on threads.

        Plain files are staged (copied under a temporary name into their final folder) by the
        worker; archive members are parsed in memory and written by the importing thread.
        """

        def prepare(entry: Entry) -> Parsed | Rejection:
            if entry.path:
                return files.stage_file(entry.path, files_root, folders=folders)
            try:
                return parse_instance(entry.read())
            except CacheError as exc:
                return Rejection(entry.label, str(exc))
            except OSError as exc:
                return Rejection(entry.label, f"cannot be read: {exc.strerror or exc}")

        files_root = str(self.files)
        folders: set[Path] = set()
        if len(entries) >= PROCESS_MIN_FILES and all(e.path for e in entries) and fork_is_safe():
            yield from _prepared_in_processes(entries, files_root)
            return
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
                _discard_unused(f for _, f in futures)


def _discard_unused(futures) -> None:
    """After a cancel or an error: stop preparing, and remove what was staged but will not be stored."""
    futures = list(futures)
    for future in futures:
        future.cancel()
    for future in futures:
        if future.cancelled():
            continue
        with contextlib.suppress(Exception):
            result = future.result()
            for item in result if isinstance(result, list) else [result]:
                if isinstance(item, Parsed) and item.staged:
                    os.unlink(item.staged)


PROCESS_MIN_FILES = 64
"""From this many plain files on, headers are parsed in worker processes: pydicom's parse is pure
Python and holds the GIL, so threads give no speed-up (measured: 137 ms for 172 CT files with 1 or
4 threads); forked processes use every core."""
PROCESS_BATCH = 8


def _prepared_in_processes(entries: list[Entry], files_root: str):
    """Yield (entry, Parsed | Rejection) in order, staging batches of files in forked processes."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    workers = max(2, os.cpu_count() or 2)
    batches = [entries[i:i + PROCESS_BATCH] for i in range(0, len(entries), PROCESS_BATCH)]
    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=as_child,
                             initargs=(os.getpid(),)) as pool:
        futures = collections.deque(
            (batch, pool.submit(files.stage_files, [e.path for e in batch], files_root)) for batch in batches
        )
        try:
            while futures:
                batch, future = futures.popleft()
                yield from zip(batch, future.result(), strict=True)
        finally:
            _discard_unused(f for _, f in futures)
