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


@lru_cache(maxsize=1)
def _keys(path: str) -> dict[str, dict[int, str]]:
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    out: dict[str, dict[int, str]] = {}
    for item in data["presets"]:
        if "key" in item:
            out.setdefault(str(item.get("modality", "")).upper(), {})[int(item["key"])] = item["name"]
    return out


def keyed_presets(modality: str) -> dict[int, Window]:
    """The presets number keys 1-9 choose for images of a modality (CT's brain, lung, bone...); empty
    for a modality without its own, whose number keys choose the file's own windows."""
    names = _keys(str(PRESETS_FILE)).get((modality or "").upper(), {})
    presets = _load(str(PRESETS_FILE))
    return {key: presets[name] for key, name in sorted(names.items()) if name in presets}


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
