"""Shared helpers for the benchmark scripts: repeated timing, medians and a small table."""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SAMPLES = ROOT.parent / "shared" / "dicom-samples"
PHILIPS = SAMPLES / "dcm_qa_ct" / "In" / "Philips" / "S21570" / "S2020"


def timed(fn: Callable[[], object], runs: int, inner: int = 1) -> list[float]:
    """Seconds per call for each of `runs` runs (each run averages `inner` calls)."""
    out = []
    for _ in range(runs):
        start = time.perf_counter()
        for _ in range(inner):
            fn()
        out.append((time.perf_counter() - start) / inner)
    return out


def median(values: list[float]) -> float:
    return statistics.median(values)


def table(rows: list[tuple[str, ...]], header: tuple[str, ...]) -> str:
    """Plain fixed-width table for terminal output."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(h).ljust(w) for h, w in zip(header, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(lines)


def require_samples() -> None:
    if not PHILIPS.is_dir():
        print(f"samples not found at {SAMPLES}; nothing to benchmark")
        sys.exit(0)


def wait(app, condition: Callable[[], bool], seconds: float, poll: float = 0.0005) -> None:
    """Run the Qt event loop until `condition()` holds; TimeoutError after `seconds`."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("the window did not get there in time")
        app.processEvents()
        time.sleep(poll)
