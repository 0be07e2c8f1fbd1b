"""Import into a fresh cache vs `cp -r` of the same files: medians of several runs, side by side.

The target is an import at most 3x as slow as the copy. Both sides read from the page cache (one
warm-up run each first) and write into a fresh folder on the same file system; neither fsyncs
(bulk import does not fsync per file, see workstation/core/cache/store.py).

    .venv/bin/python benchmarks/bench_import.py [--runs N] [FOLDER ...]

Default folders: the CT volumes (dcm_qa_ct, 170 files) and the whole sample corpus (480 files,
461 of them DICOM) from ../shared/dicom-samples.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from workstation.core.cache import Cache  # noqa: E402

SAMPLES = Path(__file__).resolve().parent.parent.parent / "shared" / "dicom-samples"


def _timed(fn) -> float:
    os.sync()  # untimed: start every run with no dirty pages left by the previous one
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def bench(folder: Path, runs: int) -> tuple[float, float, str]:
    """Runs alternate copy and import so that both see the same machine state."""
    scratch = Path(tempfile.mkdtemp(prefix="bench-import-"))
    counter = [0]
    summary = [""]

    def copy() -> None:
        counter[0] += 1
        subprocess.run(["cp", "-r", str(folder), str(scratch / f"cp{counter[0]}")], check=True)

    def do_import() -> None:
        counter[0] += 1
        with Cache(scratch / f"home{counter[0]}") as cache:
            report = cache.import_paths([folder])
        summary[0] = f"imported {report.imported}, duplicates {report.duplicates}, replaced {report.replaced}, rejected {len(report.rejected)}"

    try:
        copy()
        do_import()
        cp_times, imp_times = [], []
        for _ in range(runs):
            cp_times.append(_timed(copy))
            imp_times.append(_timed(do_import))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return statistics.median(cp_times), statistics.median(imp_times), summary[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("folders", nargs="*", type=Path)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    folders = args.folders or [SAMPLES / "dcm_qa_ct", SAMPLES]
    rows = []
    for folder in folders:
        if not folder.is_dir():
            print(f"error: {folder} is not a folder", file=sys.stderr)
            return 2
        files = [p for p in folder.rglob("*") if p.is_file()]
        size = sum(p.stat().st_size for p in files)
        cp_s, imp_s, summary = bench(folder, args.runs)
        rows.append((folder.name, len(files), size / 1e6, cp_s, imp_s, imp_s / cp_s, summary))
    print(f"median of {args.runs} runs each (after one warm-up run; runs alternate, os.sync() before each)")
    print(f"{'folder':<16} {'files':>6} {'MB':>7} {'cp -r s':>9} {'import s':>9} {'ratio':>6}  target <= 3.0")
    for name, n, mb, cp_s, imp_s, ratio, _ in rows:
        print(f"{name:<16} {n:>6} {mb:>7.1f} {cp_s:>9.3f} {imp_s:>9.3f} {ratio:>6.2f}")
    for name, *_, summary in rows:
        print(f"{name}: {summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
