"""The user's settings: one typed schema with a version, kept as JSON in the home folder.

`migrate` brings older files up to the current schema so a user's settings survive upgrades;
a file that cannot be read is kept aside (never silently overwritten) and defaults are used.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from workstation.core.model.node import Node, NodeError, check_ae_title, check_port
from workstation.core.model.printer import Printer, PrintSetupError

SCHEMA_VERSION = 2
FILE_NAME = "settings.json"


@dataclass
class Settings:
    schema_version: int = SCHEMA_VERSION
    ae_title: str = "WORKSTATION"
    port: int = 11112                       # our Storage SCP (C-MOVE destination, pushes)
    allowed_calling_aets: list[str] = field(default_factory=list)  # empty: accept any caller
    retrieve_associations: int = 4          # parallel associations per retrieval
    find_limit: int = 10000                 # C-FIND results kept before a warning and C-CANCEL
    cache_quota_bytes: int | None = None
    nodes: list[Node] = field(default_factory=list)
    printers: list[Printer] = field(default_factory=list)
    recent_import_folder: str = ""
    window_geometry: str = ""

    def node(self, name: str) -> Node:
        for node in self.nodes:
            if node.name == name:
                return node
        known = ", ".join(n.name for n in self.nodes) or "none yet; add one with 'workstation node add'"
        raise NodeError(f"no node named {name!r} (known: {known})")

    def with_node(self, node: Node) -> None:
        """Add a node, or replace the one with the same name."""
        self.nodes = [n for n in self.nodes if n.name != node.name] + [node]

    def without_node(self, name: str) -> None:
        self.node(name)
        self.nodes = [n for n in self.nodes if n.name != name]

    def printer(self, name: str) -> Printer:
        for printer in self.printers:
            if printer.name == name:
                return printer
        known = ", ".join(p.name for p in self.printers) or "none yet; add one with 'workstation printer add'"
        raise PrintSetupError(f"no printer named {name!r} (known: {known})")

    def with_printer(self, printer: Printer) -> None:
        """Add a printer, or replace the one with the same name."""
        self.printers = [p for p in self.printers if p.name != printer.name] + [printer]

    def without_printer(self, name: str) -> None:
        self.printer(name)
        self.printers = [p for p in self.printers if p.name != name]


CONFIG_KEYS = {
    "ae-title": ("ae_title", check_ae_title),
    "port": ("port", check_port),
    "retrieve-associations": ("retrieve_associations", lambda v: max(1, min(16, int(v)))),
    "find-limit": ("find_limit", lambda v: max(1, int(v))),
    "cache-quota": ("cache_quota_bytes", lambda v: None if str(v).lower() in ("", "none", "0") else int(v)),
    "allowed-calling-aets": ("allowed_calling_aets",
                             lambda v: [check_ae_title(a) for a in str(v).replace(",", " ").split()]),
}
"""The keys `workstation config set|get` knows, with their attribute and validation."""


def migrate(raw: dict) -> dict:
    """Upgrade a settings document from an older schema version."""
    version = int(raw.get("schema_version", 1))
    if version < 2:
        raw.setdefault("nodes", [])
        raw.pop("extra", None)
    raw["schema_version"] = SCHEMA_VERSION
    return raw


def load_settings(home: Path) -> Settings:
    path = Path(home) / FILE_NAME
    if not path.exists():
        return Settings()
    try:
        raw = migrate(json.loads(path.read_text(encoding="utf-8")))
        known = {f.name for f in fields(Settings)}
        values = {k: v for k, v in raw.items() if k in known}
        values["nodes"] = [Node.from_json(n) for n in values.get("nodes", [])]
        values["printers"] = [Printer.from_json(p) for p in values.get("printers", [])]
        return Settings(**values)
    except (OSError, ValueError, TypeError, NodeError, PrintSetupError):
        path.replace(path.with_suffix(".unreadable.json"))
        return Settings()


def save_settings(home: Path, settings: Settings) -> None:
    """Write atomically, so a crash never leaves a half-written settings file."""
    home = Path(home)
    home.mkdir(parents=True, exist_ok=True)
    document = asdict(settings)
    document["printers"] = [p.to_json() for p in settings.printers]
    fd, tmp = tempfile.mkstemp(dir=home, prefix=".settings-", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(document, f, indent=2)
    os.replace(tmp, home / FILE_NAME)
