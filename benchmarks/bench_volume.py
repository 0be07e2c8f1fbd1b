"""Opening a 300-slice 512x512 CT series as a volume: assemble_volume vs the naive dcmread + pixel_array loop.

The series is the Philips 140-slice head phantom written out again with fresh SOP Instance UIDs
and ImagePositionPatient shifted by 140 mm per copy (300 slices, uncompressed, in a temp folder).
Each variant runs in its own fresh subprocess, so page cache is the only thing shared. Peak memory
is ru_maxrss after the run minus ru_maxrss just before it (after imports), compared with the size
of the resulting int16 volume. Targets: >= 3x faster, peak <= 1.3x the volume.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _util import PHILIPS, ROOT, median, require_samples, table

RUNS = 5
SLICES = 300


def make_series(folder: Path) -> list[Path]:
    import pydicom
    from pydicom.uid import generate_uid

    sources = sorted(PHILIPS.iterdir())
    series_uid = generate_uid()
    paths = []
    for n in range(SLICES):
        ds = pydicom.dcmread(sources[n % len(sources)])
        shift = 140.0 * (n // len(sources))
        ipp = [float(v) for v in ds.ImagePositionPatient]
        ds.ImagePositionPatient = [ipp[0], ipp[1], ipp[2] + shift]
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.SeriesInstanceUID = series_uid
        path = folder / f"{n:04d}.dcm"
        ds.save_as(path)
        paths.append(path)
    return paths


def worker(variant: str, folder: str) -> None:
    """Runs in a child: one assembly, prints seconds and peak-RSS growth as JSON."""
    import numpy as np
    import pydicom

    from workstation.core.pixels.volume import assemble_volume

    paths = sorted(Path(folder).iterdir())
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    start = time.perf_counter()
    if variant == "ours":
        array = assemble_volume(paths).array
    else:
        dss = [pydicom.dcmread(p) for p in paths]
        dss.sort(key=lambda d: float(d.ImagePositionPatient[2]))
        slices = [d.pixel_array.astype(np.int16) * int(d.RescaleSlope) + int(d.RescaleIntercept) for d in dss]
        array = np.stack(slices).astype(np.int16)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
    print(json.dumps({"seconds": seconds, "peak": peak, "nbytes": array.nbytes, "shape": list(array.shape)}))


def run(variant: str, folder: Path) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--worker", variant, str(folder)],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    require_samples()
    with tempfile.TemporaryDirectory(prefix="bench-volume-") as tmp:
        folder = Path(tmp)
        make_series(folder)
        run("ours", folder)
        run("naive", folder)
        results: dict[str, list[dict]] = {"ours": [], "naive": []}
        for _ in range(RUNS):
            for variant in ("ours", "naive"):
                results[variant].append(run(variant, folder))
    rows = []
    summary = {}
    for variant, label in (("ours", "assemble_volume"), ("naive", "naive dcmread+pixel_array loop")):
        secs = median([r["seconds"] for r in results[variant]])
        peak = median([r["peak"] for r in results[variant]])
        nbytes = results[variant][0]["nbytes"]
        summary[variant] = (secs, peak, nbytes)
        rows.append((label, f"{secs:.3f} s", f"{peak / 2**20:.0f} MiB", f"{peak / nbytes:.2f}x"))
    shape = results["ours"][0]["shape"]
    print(f"{shape[0]} slices of {shape[1]}x{shape[2]} into a volume, median of {RUNS} fresh processes each")
    print(table(rows, ("variant", "time", "peak RSS growth", "peak / volume size")))
    speedup = summary["naive"][0] / summary["ours"][0]
    mem = summary["ours"][1] / summary["ours"][2]
    print(f"speed-up naive/ours = {speedup:.2f}x (target >= 3x): {'OK' if speedup >= 3 else 'MISSED'}")
    print(f"our peak / volume = {mem:.2f}x (target <= 1.3x): {'OK' if mem <= 1.3 else 'MISSED'}")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--worker":
        worker(sys.argv[2], sys.argv[3])
    else:
        main()
