"""What every part of the cache shares: its folders, the index connection and the locks around them.

Threads share one SQLite connection guarded by a lock. Writes to one study are serialised by a
striped lock keyed by the Study Instance UID, so parsing runs outside any lock. Every change to
the store is a `unit`: the index's write transaction is begun before anything is looked up or a
file is placed, and committed at its end, so another process writing the same cache (the window,
`listen`, a scripted import) waits for it instead of racing it; if the unit fails (the disk is
full), its rows roll back and its file changes are undone, so no file is left without its row.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Self

from workstation.core.cache import files, schema
from workstation.core.cache.reports import CacheBusy, CacheError, CacheFull, IndexDamaged

_STRIPES = 64


def stripe_index(study: str) -> int:
    return int(files.uid_hash(study)[:8], 16) % _STRIPES


def storage_failure(exc: BaseException) -> BaseException | None:
    """The one-line failure a write error means for the whole job (disk full, index damaged, busy), or
    None when it concerns one item only."""
    if isinstance(exc, CacheFull | CacheBusy | IndexDamaged):
        return exc
    if isinstance(exc, OSError) and exc.errno in files.FULL_ERRNOS:
        return CacheFull(f"the disk holding the cache is full ({exc.strerror or exc})")
    if isinstance(exc, sqlite3.OperationalError):
        message = str(exc)
        if "full" in message:
            return CacheFull("the disk holding the cache is full (its index could not grow)")
        if "locked" in message or "busy" in message:
            return CacheBusy("another program kept the cache index locked too long; try again")
        return CacheFull(f"the cache index could not be written ({message}): the disk may be full or failing")
    if isinstance(exc, sqlite3.DatabaseError) and not isinstance(exc, sqlite3.IntegrityError):
        return schema.damaged(str(exc))
    return None


class Unit:
    """File changes made inside one index transaction: undone when it rolls back, finished when it commits."""

    def __init__(self) -> None:
        self._undo: list[Callable[[], None]] = []
        self._after: list[Callable[[], None]] = []

    def placed(self, path: Path) -> None:
        """A new file: removed again if the rows describing it do not commit."""
        self._undo.append(lambda: path.unlink(missing_ok=True))

    def keep_backup(self, final: Path) -> None:
        """`final` is about to be overwritten: hard-link it aside (no space needed) to restore it on rollback."""
        backup = files.temp_name(final)
        os.link(final, backup)
        self._undo.append(lambda: os.replace(backup, final))
        self._after.append(lambda: backup.unlink(missing_ok=True))

    def on_undo(self, action: Callable[[], None]) -> None:
        self._undo.append(action)

    def after_commit(self, action: Callable[[], None]) -> None:
        self._after.append(action)

    def rolled_back(self) -> None:
        for action in reversed(self._undo):
            with contextlib.suppress(OSError):
                action()
        self._undo.clear()
        self._after.clear()

    def committed(self) -> None:
        self._undo.clear()
        after, self._after = self._after, []
        for action in after:
            action()


class CacheCore:
    """Folders, connection, locks and transactions; the import, query and maintenance parts build on it.

    Opening checks the index (`PRAGMA quick_check`, about 0.1 s for 200,000 instances) and raises
    IndexDamaged in one sentence when it is not readable; `rebuild_index` makes a new one from the files.
    """

    def __init__(self, home: Path, quota_bytes: int | None = None, *, new_index: bool = False) -> None:
        """`new_index`: an empty index over existing files is expected (the rebuild makes one)."""
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
        self._unit_now: Unit | None = None
        try:
            self._conn: sqlite3.Connection | None = schema.open_index(self.root, new_index)
        except sqlite3.OperationalError as exc:  # WAL mode needs room for its shared-memory file even to read
            raise storage_failure(exc) from exc

    def close(self) -> None:
        with self._lock:
            if self._conn is None:
                return
            if self._conn.in_transaction:
                self._conn.execute("COMMIT")
            self._conn.close()
            self._conn = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def subscribe(self, callback: Callable[[str, str, str], None]) -> None:
        """Call `callback(study_uid, series_uid, sop_uid)` after each instance is stored (any thread)."""
        self._listeners.append(callback)

    def _now(self) -> float:
        with self._lock:
            self._last_now = max(time.time(), self._last_now + 1e-6)
            return self._last_now

    def _stripe(self, study: str) -> threading.Lock:
        return self._stripes[stripe_index(study)]

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
    def _unit(self):
        """One atomic change of the store: index rows and the file changes registered on the yielded Unit.

        The write transaction begins first (other processes' writers wait, up to the busy timeout),
        and the connection's lock is held throughout, so no other thread commits it half-way. A unit
        opened inside another joins it. Storage failures come out as CacheFull, CacheBusy or IndexDamaged.
        """
        with self._lock:
            if self._unit_now is not None:
                yield self._unit_now
                return
            conn = self._db()
            unit = self._unit_now = Unit()
            try:
                try:
                    if conn.in_transaction:  # left open by a failed statement outside any unit
                        conn.execute("ROLLBACK")
                    conn.execute("BEGIN IMMEDIATE")
                    yield unit
                    conn.execute("COMMIT")
                except BaseException as exc:
                    if conn.in_transaction:
                        with contextlib.suppress(sqlite3.Error):
                            conn.execute("ROLLBACK")
                    unit.rolled_back()
                    failure = storage_failure(exc)
                    if failure is not None and failure is not exc:
                        raise failure from exc
                    raise
            finally:
                self._unit_now = None
        unit.committed()

    @contextlib.contextmanager
    def _write(self, commit: bool = True):
        """A unit for index changes alone (no files): yields the connection."""
        with self._unit():
            yield self._db()

    def _commit(self) -> None:
        """Units commit themselves; kept for callers that used to end a batch."""

    def _abs(self, relpath: str) -> Path:
        return self.files / relpath
