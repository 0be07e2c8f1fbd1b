"""Where the workstation keeps its settings, cache and logs.

`--home DIR` or `WORKSTATION_HOME` override the platform's user data folder, so tests and
scripts never touch a user's real cache.
"""

from __future__ import annotations

import os
from pathlib import Path


def home_folder(explicit: str | os.PathLike[str] | None = None) -> Path:
    if explicit:
        return Path(explicit).expanduser().resolve()
    env = os.environ.get("WORKSTATION_HOME")
    if env:
        return Path(env).expanduser().resolve()
    from platformdirs import user_data_dir

    return Path(user_data_dir("workstation", appauthor=False))
