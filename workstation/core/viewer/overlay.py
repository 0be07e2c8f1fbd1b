"""The four corners' text as data: which fields each corner shows (resources/overlays/corners.json,
or the user's own copy in HOME/overlays/corners.json), filled from one frame's values. The screen,
export and print all burn in what `corner_texts` gives."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from pydicom.datadict import dictionary_VR, tag_for_keyword

from workstation.core.dicom.text import format_date, format_time, person_name
from workstation.core.resources import resource_path

CORNERS = ("top_left", "top_right", "bottom_left", "bottom_right")
LAYOUT_FILE = resource_path("overlays", "corners.json")
VIEWER_FIELDS = frozenset({"image", "images", "frame", "frames", "location", "thickness", "window", "zoom",
                           "rotation", "part", "key", "loading", "arriving"})
_FIELD = re.compile(r"\{([A-Za-z][A-Za-z0-9_]*)\}")


@dataclass(frozen=True)
class CornerLayout:
    """Line templates per corner, e.g. {"top_left": ("{PatientName}", ...), ...}."""

    corners: Mapping[str, tuple[str, ...]]

    @property
    def keywords(self) -> frozenset[str]:
        """The DICOM keywords the layout asks for (what a frame's header must give)."""
        found = {name for lines in self.corners.values() for line in lines for name in _FIELD.findall(line)}
        return frozenset(name for name in found if name not in VIEWER_FIELDS and tag_for_keyword(name) is not None)

    def texts(self, values: Mapping[str, str]) -> dict[str, list[str]]:
        """Each corner's lines with the values filled in; a line (or a part of one) whose fields are all empty is left out."""
        return {corner: [text for line in self.corners.get(corner, ()) if (text := fill(line, values))]
                for corner in CORNERS}


def fill(line: str, values: Mapping[str, str]) -> str:
    """A line with its fields filled in. Parts of a line set apart by two spaces ("{KVP} kV  {XRayTubeCurrent} mA")
    are left out when all their fields are empty, and the line when all of its fields are."""
    kept, filled_any = [], False
    for part in re.split(r" {2,}", line.strip()):
        names = _FIELD.findall(part)
        filled = {name: str(values.get(name, "") or "") for name in names}
        if names and not any(filled.values()):
            continue
        filled_any = filled_any or bool(names)
        kept.append(" ".join(_FIELD.sub(lambda m, f=filled: f[m.group(1)], part).split()))
    if _FIELD.search(line) and not filled_any:
        return ""
    return "  ".join(k for k in kept if k)


@lru_cache(maxsize=8)
def _read(path: str) -> dict:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def load_layout(modality: str = "", home: Path | None = None) -> CornerLayout:
    """The layout for a modality: the user's file when there is one, else the shipped one; a modality's
    own entry replaces the corners it names in the default."""
    path = LAYOUT_FILE
    if home is not None and (Path(home) / "overlays" / "corners.json").is_file():
        path = Path(home) / "overlays" / "corners.json"
    data = _read(str(path))
    corners = {name: tuple(lines) for name, lines in data.get("default", {}).items() if name in CORNERS}
    for name, lines in data.get((modality or "").upper(), {}).items():
        if name in CORNERS:
            corners[name] = tuple(lines)
    return CornerLayout(corners)


def all_keywords(home: Path | None = None) -> frozenset[str]:
    """Every DICOM keyword any modality's layout asks for: what the decoding worker reads of a header."""
    path = LAYOUT_FILE
    if home is not None and (Path(home) / "overlays" / "corners.json").is_file():
        path = Path(home) / "overlays" / "corners.json"
    data = _read(str(path))
    out: set[str] = set()
    for key, value in data.items():
        if isinstance(value, dict):
            out |= load_layout("" if key == "default" else key, home).keywords
    return frozenset(out)


@lru_cache(maxsize=512)
def _vr(keyword: str) -> str:
    try:
        return dictionary_VR(keyword)
    except KeyError:
        return ""


def display_value(keyword: str, value) -> str:
    """A header value as the corners show it: dates, times and names in words, numbers trimmed."""
    if value is None or value == "":
        return ""
    vr = _vr(keyword)
    if isinstance(value, list | tuple):
        return "\\".join(display_value(keyword, v) for v in value)
    if vr == "DA":
        return format_date(str(value))
    if vr == "TM":
        return format_time(str(value))
    if vr == "PN":
        return person_name(str(value))
    if vr in ("DS", "FD", "FL") or isinstance(value, float):
        try:
            return f"{float(value):.4g}"
        except (TypeError, ValueError):
            return str(value)
    return " ".join(str(value).split())
