"""Volume rendering presets as data (resources/volume_presets/*.json): a colour and an opacity
transfer function over modality values and the shading, for CT in HU; a preset marked `relative`
(MR, which has no absolute units) gives its values as fractions of the volume's own range and is
fitted to a volume before use. The 3D MIP's transfer function is a window. No VTK here: vtk3d turns
a preset into VTK's functions."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path

import numpy as np

from workstation.core.resources import resource_path

FOLDER = "volume_presets"


@dataclass(frozen=True)
class Shading:
    ambient: float = 0.2
    diffuse: float = 0.8
    specular: float = 0.2
    power: float = 10.0


@dataclass(frozen=True)
class VolumePreset:
    name: str
    color: tuple[tuple[float, float, float, float], ...]      # (value, r, g, b), values increasing
    opacity: tuple[tuple[float, float], ...]                  # (value, opacity 0..1)
    modalities: tuple[str, ...] = ()
    relative: bool = False
    shading: Shading | None = field(default_factory=Shading)  # None: unshaded (MIP)

    def fitted(self, low: float, high: float) -> VolumePreset:
        """An absolute preset: a relative one's fractions mapped onto [low, high]; others unchanged."""
        if not self.relative:
            return self
        span = max(high - low, 1e-6)
        return replace(self, relative=False,
                       color=tuple((low + v * span, r, g, b) for v, r, g, b in self.color),
                       opacity=tuple((low + v * span, a) for v, a in self.opacity))


def _preset(data: dict, source: str) -> VolumePreset:
    try:
        color = tuple(tuple(float(x) for x in point) for point in data["color"])
        opacity = tuple(tuple(float(x) for x in point) for point in data["opacity"])
        if any(len(p) != 4 for p in color) or any(len(p) != 2 for p in opacity) or not color or not opacity:
            raise ValueError("colour points are (value, r, g, b), opacity points (value, opacity)")
        for points in (color, opacity):
            values = [p[0] for p in points]
            if values != sorted(values):
                raise ValueError("the points' values must increase")
        shading = Shading(**{k: float(v) for k, v in data.get("shading", {}).items()})
        return VolumePreset(str(data["name"]), color, opacity, tuple(m.upper() for m in data.get("modalities", ())),
                            bool(data.get("relative", False)), shading)
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"the volume preset {source} is not valid: {exc}") from exc


@lru_cache(maxsize=4)
def _load(folder: str) -> tuple[VolumePreset, ...]:
    paths = sorted(Path(folder).glob("*.json"))
    return tuple(_preset(json.loads(p.read_text(encoding="utf-8")), p.name) for p in paths)


def volume_presets(modality: str = "") -> list[VolumePreset]:
    """The presets, those made for the modality first (CT's for CT, MR default for MR)."""
    presets = list(_load(str(resource_path(FOLDER))))
    own = [p for p in presets if (modality or "").upper() in p.modalities]
    return own + [p for p in presets if p not in own]


def default_preset(modality: str) -> VolumePreset:
    """What the 3D view opens with: CT's soft tissue, MR's default, else the first relative preset."""
    presets = volume_presets(modality)
    wanted = {"CT": "CT soft tissue"}.get((modality or "").upper())
    for p in presets:
        if p.name == wanted:
            return p
    if (modality or "").upper() in presets[0].modalities:
        return presets[0]
    return next((p for p in presets if p.relative), presets[0])


def value_range(array: np.ndarray, low: float = 2.0, high: float = 99.5) -> tuple[float, float]:
    """The volume's own range for relative presets: percentiles of a strided sample (a few hundred
    thousand voxels, not a copy of the volume)."""
    flat = array.reshape(-1)
    step = max(1, flat.size // 400_000)
    sample = flat[::step]
    lo, hi = (float(v) for v in np.percentile(sample, [low, high]))
    return lo, hi if hi > lo else lo + 1.0


def mip_preset(center: float, width: float) -> VolumePreset:
    """The 3D MIP's transfer function: the window as a grey ramp, opaque, so a pixel is its ray's maximum
    windowed as a 2D viewport windows a value."""
    width = max(float(width), 1.0)
    low, high = center - width / 2, center + width / 2
    return VolumePreset("MIP", ((low, 0.0, 0.0, 0.0), (high, 1.0, 1.0, 1.0)),
                        ((low, 1.0), (high, 1.0)), shading=None)
