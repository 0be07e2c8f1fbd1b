"""The user's settings: one typed schema with a version, kept as JSON in the home folder.

Later issues add nodes and printers here; `migrate` brings older files up to the current
schema so a user's settings survive upgrades.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

SCHEMA_VERSION = 1
FILE_NAME = "settings.json"


@dataclass
class Settings:
    schema_version: int = SCHEMA_VERSION
    ae_title: str = "WORKSTATION"
    port: int = 11112
    cache_quota_bytes: int | None = None
    recent_import_folder: str = ""
    window_geometry: str = ""
    extra: dict = field(default_factory=dict)


def migrate(raw: dict) -> dict:
    """Upgrade a settings document from an older schema version, in place."""
    raw.setdefault("schema_version", SCHEMA_VERSION)
    return raw


def load_settings(home: Path) -> Settings:
    path = Path(home) / FILE_NAME
    if not path.exists():
        return Settings()
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return Settings()
    raw = migrate(raw)
    known = {f.name for f in fields(Settings)}
    return Settings(**{k: v for k, v in raw.items() if k in known})


def save_settings(home: Path, settings: Settings) -> None:
    """Write atomically, so a crash never leaves a half-written settings file."""
    home = Path(home)
    home.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=home, prefix=".settings-", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(asdict(settings), f, indent=2)
    os.replace(tmp, home / FILE_NAME)
