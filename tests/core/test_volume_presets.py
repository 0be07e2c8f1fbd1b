"""Volume rendering presets: the five the issue names ship, CT's are in HU, MR's is fitted to the
volume's own range, and a broken preset file is refused in words."""

from __future__ import annotations

import json

import numpy as np
import pytest

from workstation.core.pixels import volume_presets as vp


def test_the_shipped_presets():
    names = [p.name for p in vp.volume_presets("CT")]
    assert names[:4] == sorted(["CT angio", "CT bone", "CT lung/airways", "CT soft tissue"])
    assert "MR default" in names
    assert vp.default_preset("CT").name == "CT soft tissue"
    assert vp.default_preset("MR").name == "MR default"
    assert vp.volume_presets("MR")[0].name == "MR default"
    assert vp.default_preset("PT").relative        # no preset of its own: the relative one fits any range
    bone = next(p for p in vp.volume_presets("CT") if p.name == "CT bone")
    opacity = dict(bone.opacity)
    assert opacity[-1024] == 0 and max(a for v, a in bone.opacity if v >= 641) > 0.5   # air clear, bone dense


def test_a_relative_preset_is_fitted_to_the_volume_range():
    rng = np.random.default_rng(1)
    array = rng.normal(400, 100, size=(20, 64, 64)).astype(np.int16)
    low, high = vp.value_range(array)
    assert low == pytest.approx(np.percentile(array, 2), abs=5) and high == pytest.approx(np.percentile(array, 99.5), abs=5)
    fitted = vp.default_preset("MR").fitted(low, high)
    assert not fitted.relative
    assert fitted.opacity[0][0] == pytest.approx(low) and fitted.opacity[-1][0] == pytest.approx(high)
    ct = vp.default_preset("CT")
    assert ct.fitted(low, high) is ct


def test_the_mip_preset_is_the_window():
    mip = vp.mip_preset(40, 400)
    assert mip.color[0][0] == -160 and mip.color[-1][0] == 240 and mip.shading is None


def test_a_broken_preset_says_which_and_why(tmp_path, monkeypatch):
    folder = tmp_path / "volume_presets"
    folder.mkdir()
    (folder / "bad.json").write_text(json.dumps({"name": "x", "color": [[0, 1, 1, 1]], "opacity": [[5, 0], [1, 1]]}))
    monkeypatch.setattr(vp, "resource_path", lambda *parts: tmp_path.joinpath(*parts))
    with pytest.raises(ValueError, match="bad.json.*increase"):
        vp.volume_presets("CT")
