"""Result records of cache jobs, shaped for the CLI's `--json` output."""

from __future__ import annotations

from dataclasses import dataclass, field


class CacheError(Exception):
    """A file or request the cache refuses; the message is a sentence meant for the user."""


class IndexDamaged(CacheError):
    """The index file is not a readable SQLite database; the files are intact and can rebuild it."""

    reason: str = ""


class CacheFull(OSError):
    """The disk holding the cache (its files or its index) has no room left: the job stops, nothing half-done stays.

    An OSError, not a CacheError: the instance is not at fault, so a Storage SCP answers Out of Resources.
    """


class CacheBusy(OSError):
    """Another process kept the index's write lock longer than the busy timeout."""


@dataclass
class Rejection:
    path: str
    reason: str
    full: bool = False
    """Refused because the disk holding the cache is full, not because of the file."""

    def to_json(self) -> dict:
        return {"path": self.path, "reason": self.reason}


@dataclass
class ImportReport:
    imported: int = 0
    duplicates: int = 0
    replaced: int = 0
    rejected: list[Rejection] = field(default_factory=list)
    study_uids: list[str] = field(default_factory=list)
    series_uids: list[str] = field(default_factory=list)
    stopped: str = ""
    """Why the import stopped before the end (the disk is full, ...); empty when it went through."""
    not_attempted: int = 0
    """Files the import never reached because it stopped."""

    def to_json(self) -> dict:
        doc = {
            "imported": self.imported,
            "duplicates": self.duplicates,
            "replaced": self.replaced,
            "rejected": [r.to_json() for r in self.rejected],
        }
        if self.stopped:
            doc["stopped"] = self.stopped
            doc["not_attempted"] = self.not_attempted
        return doc


@dataclass
class VerifyReport:
    ok: bool
    orphan_files: int = 0
    missing_files: int = 0
    repaired: int = 0
    index_damaged: str = ""
    """Why the index could not be read (then it is rebuilt from the files by a repair)."""
    rebuilt: bool = False

    def to_json(self) -> dict:
        doc = {
            "ok": self.ok,
            "orphan_files": self.orphan_files,
            "missing_files": self.missing_files,
            "repaired": self.repaired,
        }
        if self.index_damaged:
            doc["index_damaged"] = self.index_damaged
            doc["rebuilt"] = self.rebuilt
        return doc


@dataclass
class EvictReport:
    evicted_studies: list[str] = field(default_factory=list)
    freed_bytes: int = 0
    size_bytes: int = 0

    def to_json(self) -> dict:
        return {
            "evicted_studies": list(self.evicted_studies),
            "freed_bytes": self.freed_bytes,
            "size_bytes": self.size_bytes,
        }
