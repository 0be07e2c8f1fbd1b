"""Where the top-level resources/ folder (presets, icons, hanging protocols) is found.

The package runs from a checkout or an editable install, so resources/ sits beside it;
WORKSTATION_RESOURCES points elsewhere for a bundled install.
"""

from __future__ import annotations

import os
from pathlib import Path


def resource_path(*parts: str) -> Path:
    root = os.environ.get("WORKSTATION_RESOURCES")
    base = Path(root) if root else Path(__file__).resolve().parents[2] / "resources"
    return base.joinpath(*parts)
