"""Result records of cache jobs, shaped for the CLI's `--json` output."""

from __future__ import annotations

from dataclasses import dataclass, field


class CacheError(Exception):
    """A file or request the cache refuses; the message is a sentence meant for the user."""


@dataclass
class Rejection:
    path: str
    reason: str

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

    def to_json(self) -> dict:
        return {
            "imported": self.imported,
            "duplicates": self.duplicates,
            "replaced": self.replaced,
            "rejected": [r.to_json() for r in self.rejected],
        }


@dataclass
class VerifyReport:
    ok: bool
    orphan_files: int = 0
    missing_files: int = 0
    repaired: int = 0

    def to_json(self) -> dict:
        return {
            "ok": self.ok,
            "orphan_files": self.orphan_files,
            "missing_files": self.missing_files,
            "repaired": self.repaired,
        }


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
