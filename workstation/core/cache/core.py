"""What every part of the cache shares: its folders, the index connection and the locks around them.

Threads share one SQLite connection guarded by a lock. Writes to one study are serialised by a
striped lock keyed by the Study Instance UID, so duplicate checks, file writes and index rows of one
instance happen as one step, while parsing runs outside any lock.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Self

from workstation.core.cache import files, schema
from workstation.core.cache.reports import CacheError

_STRIPES = 64


def stripe_index(study: str) -> int:
    return int(files.uid_hash(study)[:8], 16) % _STRIPES


class CacheCore:
    """Folders, connection, locks and transactions; the import, query and maintenance parts build on it."""

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
        self._conn: sqlite3.Connection | None = schema.connect(self.root / "index.sqlite")

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
