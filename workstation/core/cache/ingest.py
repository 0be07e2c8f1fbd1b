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
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from workstation.core.cache import files, rows
from workstation.core.cache.core import CacheCore, stripe_index
from workstation.core.cache.parse import Parsed, parse_instance
from workstation.core.cache.reports import CacheError, ImportReport, Rejection
from workstation.core.cache.schema import INSTANCE_FIELDS
from workstation.core.cache.sources import Entry, collect
from workstation.core.children import as_child, fork_is_safe
from workstation.core.tasks import Cancelled, CancelToken, Progress, no_progress

BATCH_FILES = 200
BATCH_SECONDS = 1.0
CHUNK_FILES = 64
"""Files whose duplicate check (one query) and index rows (a few statements) are handled together."""


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

    def _place(self, p: Parsed, old: sqlite3.Row | None, pending: list, batch: bool) -> str:
        """Duplicate check and file placement for one instance (its study's stripe is held).

        A new instance's row is appended to `pending` (written by `_flush`); a replacement flushes
        what is pending first and then swaps its row, so rows are always written in arrival order.
        The file is in place before its row is written.
        """
        relpath = files.relative_path(p.study, p.series, p.sop)
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
                files.fsync_dir(self._abs(relpath).parent)
        else:
            files.place_bytes(self._abs(relpath), p.data, durable=not batch)
        now = self._now()
        if old is None:
            pending.append((p, relpath, now))
            return outcome
        self._flush(pending, commit=False)
        with self._write(commit=not batch) as conn:
            rows.replace_row(conn, old, p, relpath, now)
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
            rows.add_rows(conn, items)
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
        """Duplicate checks in one query, files placed in order, rows in one transaction."""
        pending: list = []
        with contextlib.ExitStack() as stack:
            for stripe in sorted({stripe_index(p.study) for _, p in parsed}):
                stack.enter_context(self._stripes[stripe])
            old = self._old_rows(p.sop for _, p in parsed)
            placed: set[str] = set()
            try:
                for i, p in parsed:
                    if p.sop in placed:  # the same instance twice in one batch: compare with the first
                        self._flush(pending, commit=False)
                        old.update(self._old_rows([p.sop]))
                    try:
                        outcomes[i] = self._place(p, old.get(p.sop), pending, batch=not durable)
                        placed.add(p.sop)
                    except (CacheError, OSError) as exc:
                        outcomes[i] = exc
                        if p.staged:
                            with contextlib.suppress(OSError):
                                os.unlink(p.staged)
            finally:
                self._flush(pending, commit=False)
                self._commit()

    def ingest_file(self, path: str | os.PathLike[str]) -> str:
        """Store one file; raises CacheError(reason) when it is refused."""
        result = files.stage_file(str(path), str(self.files), durable=True)
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
        stripes = sorted({stripe_index(p.study) for p in parsed})
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
