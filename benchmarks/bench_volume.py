"""Opening a 300-slice 512x512 CT series from the cache as a volume, vs the naive dcmread + pixel_array loop.

The series is the Philips 140-slice head phantom written out again with fresh SOP Instance UIDs
and ImagePositionPatient shifted by 140 mm per copy (300 slices, uncompressed, in a temp folder),
then imported into a cache once (not timed). Variants, each run in its own fresh subprocess so
page cache is the only thing shared:

  cache  the product path: a fresh Cache(...).volume_slices(uid) + assemble_volume_from_headers
         (per-slice records from the index; no header is parsed)
  paths  assemble_volume(paths) over the cache's files (headers parsed with pydicom)
  naive  dcmread + pixel_array + rescale + np.stack over the same files

Peak memory is ru_maxrss after the run minus ru_maxrss just before it (after imports), compared
with the size of the resulting int16 volume. Targets: cache >= 3x faster than naive, peak <= 1.3x.
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

    sources = sorted(PHILIPS.iterdir(), key=lambda p: float(pydicom.dcmread(p, stop_before_pixels=True).ImagePositionPatient[2]))
    series_uid = generate_uid()   # in stack order, so the copies continue one another 1 mm apart
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


def import_series(folder: Path, home: Path) -> str:
    """Import the slices into a cache at `home` (untimed); returns the series UID."""
    from workstation.core.cache import Cache

    with Cache(home) as cache:
        report = cache.import_paths([folder])
        assert report.imported == SLICES, report
        (series,) = report.series_uids
    return series


def worker(variant: str, home: str, series_uid: str) -> None:
    """Runs in a child: one assembly, prints seconds and peak-RSS growth as JSON."""
    import numpy as np
    import pydicom

    from workstation.core.cache import Cache
    from workstation.core.pixels.volume import assemble_volume, assemble_volume_from_headers

    with Cache(Path(home)) as cache:
        paths = [i.path for i in cache.instances(series_uid)]
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    start = time.perf_counter()
    if variant == "cache":
        with Cache(Path(home)) as cache:
            headers = cache.volume_slices(series_uid)
        array = assemble_volume_from_headers(headers).array
    elif variant == "paths":
        array = assemble_volume(paths).array
    else:
        dss = [pydicom.dcmread(p) for p in paths]
        dss.sort(key=lambda d: float(d.ImagePositionPatient[2]))
        slices = [d.pixel_array.astype(np.int16) * int(d.RescaleSlope) + int(d.RescaleIntercept) for d in dss]
        array = np.stack(slices).astype(np.int16)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
    print(json.dumps({"seconds": seconds, "peak": peak, "nbytes": array.nbytes, "shape": list(array.shape)}))


def run(variant: str, home: Path, series_uid: str) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--worker", variant, str(home), series_uid],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    require_samples()
    variants = ("cache", "paths", "naive")
    with tempfile.TemporaryDirectory(prefix="bench-volume-") as tmp:
        folder = Path(tmp) / "series"
        folder.mkdir()
        make_series(folder)
        series_uid = import_series(folder, Path(tmp) / "home")
        for variant in variants:
            run(variant, Path(tmp) / "home", series_uid)
        results: dict[str, list[dict]] = {v: [] for v in variants}
        for _ in range(RUNS):
            for variant in variants:
                results[variant].append(run(variant, Path(tmp) / "home", series_uid))
    labels = {
        "cache": "Cache.volume_slices + assemble_volume_from_headers",
        "paths": "assemble_volume(paths) (parses headers)",
        "naive": "naive dcmread+pixel_array loop",
    }
    summary = {}
    for variant in labels:
        secs = median([r["seconds"] for r in results[variant]])
        peak = median([r["peak"] for r in results[variant]])
        summary[variant] = (secs, peak, results[variant][0]["nbytes"])
    naive = summary["naive"][0]
    rows = [
        (label, f"{secs:.3f} s", f"{naive / secs:.2f}x", f"{peak / 2**20:.0f} MiB", f"{peak / nbytes:.2f}x")
        for label, (secs, peak, nbytes) in ((labels[v], summary[v]) for v in labels)
    ]
    shape = results["cache"][0]["shape"]
    print(f"{shape[0]} slices of {shape[1]}x{shape[2]} into a volume, median of {RUNS} fresh processes each")
    print(table(rows, ("variant", "time", "speed-up vs naive", "peak RSS growth", "peak / volume size")))
    speedup = summary["naive"][0] / summary["cache"][0]
    mem = summary["cache"][1] / summary["cache"][2]
    print(f"speed-up naive/cache = {speedup:.2f}x (target >= 3x): {'OK' if speedup >= 3 else 'MISSED'}")
    print(f"cache path peak / volume = {mem:.2f}x (target <= 1.3x): {'OK' if mem <= 1.3 else 'MISSED'}")
    print(f"(path-based assemble_volume: {summary['naive'][0] / summary['paths'][0]:.2f}x, "
          f"peak {summary['paths'][1] / summary['paths'][2]:.2f}x)")


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--worker":
        worker(sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        main()
