"""The transport tuning's contract with pynetdicom: installed only on request, and loud when upstream moves.

Assigning a module attribute or wrapping a method never raises, so a pynetdicom upgrade that changed
the code the tuning relies on would fail silently (a reactor polling again, a response lost). These
tests read the upstream source and fail first.
"""

from __future__ import annotations

import importlib
import inspect
import subprocess
import sys
import textwrap
from importlib import metadata

import pytest

from workstation.core.net import transport


def _resolve(qualified: str):
    parts = qualified.split(".")
    for split in range(len(parts), 0, -1):
        try:
            target = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        for name in parts[split:]:
            target = getattr(target, name)
        return target
    raise ImportError(qualified)


def test_pynetdicom_is_the_version_the_tuning_was_written_for():
    installed = metadata.version("pynetdicom")
    assert installed.split(".")[:2] == transport.WRITTEN_FOR.split("."), (
        f"pynetdicom {installed} is installed but core/net/transport.py was written for "
        f"{transport.WRITTEN_FOR}.x: check every entry of UPSTREAM_SHAPES against the new source, then "
        "update WRITTEN_FOR and the pin in pyproject.toml")


def test_the_pin_in_pyproject_matches_the_version_the_tuning_was_written_for():
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "pyproject.toml").read_text()
    major, minor = (int(v) for v in transport.WRITTEN_FOR.split("."))
    assert f'"pynetdicom>={major}.{minor},<{major}.{minor + 1}"' in text


@pytest.mark.parametrize("qualified", sorted(transport.UPSTREAM_SHAPES))
def test_upstream_code_still_has_the_shape_the_tuning_relies_on(qualified):
    source = inspect.getsource(_resolve(qualified))
    missing = [text for text in transport.UPSTREAM_SHAPES[qualified] if text not in source]
    assert not missing, (f"{qualified} no longer contains {missing}: the tuning in core/net/transport.py "
                         "relies on it; re-read that function and adapt the tuning")


def _fresh_interpreter(code: str) -> str:
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


STATE = """
    import copy, logging, time
    from pydicom.uid import UID
    from pynetdicom import _config, association, dul
    def state():
        uid = UID("1.2.3")
        return (dul.time is time, association.time is time, copy.deepcopy(uid) is uid,
                _config.LOG_HANDLER_LEVEL, logging.getLogger("pynetdicom").level)
"""


def test_importing_the_core_changes_nothing_in_pynetdicom_or_pydicom():
    out = _fresh_interpreter(STATE + """
    before = state()
    import pkgutil, importlib, workstation.core
    for module in pkgutil.walk_packages(workstation.core.__path__, "workstation.core."):
        importlib.import_module(module.name)
    print(before == state(), state())
    """)
    assert out.startswith("True"), out


def test_install_is_what_changes_them():
    out = _fresh_interpreter(STATE + """
    before = state()
    from workstation.core.net import transport
    transport.install()
    transport.install()
    print(before, state())
    """)
    assert out == "(True, True, False, 'standard', 0) (False, False, False, 'none', 0)", out
