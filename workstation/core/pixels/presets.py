"""Named window presets from resources/presets/window_presets.json, looked up case-insensitively."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from workstation.core.resources import resource_path

from .voi import Window

PRESETS_FILE = resource_path("presets", "window_presets.json")


@lru_cache(maxsize=1)
def _load(path: str) -> dict[str, Window]:
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    out: dict[str, Window] = {}
    for item in data["presets"]:
        out[item["name"]] = Window(float(item["center"]), float(item["width"]), "LINEAR", item["name"])
    return out


def load_presets(path: str | Path | None = None) -> dict[str, Window]:
    """All presets by display name, in file order (a fresh dict, safe to modify)."""
    return dict(_load(str(path or PRESETS_FILE)))


def preset(name: str) -> Window:
    """One preset by name, ignoring case and surrounding spaces; KeyError lists the known names."""
    presets = _load(str(PRESETS_FILE))
    wanted = " ".join(name.split()).casefold()
    for key, window in presets.items():
        if key.casefold() == wanted:
            return window
    raise KeyError(f"unknown window preset {name!r}; known presets: {', '.join(presets)}")
