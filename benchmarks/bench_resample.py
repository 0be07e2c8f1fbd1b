"""Resampling an unevenly spaced stack onto an even grid: which spacing, and what assembly costs.

  choice  the GE head CT (gaps 4.00 mm x13, an overlap of 1.08 mm, 7.00 mm x13; 18.5° tilt) resampled
          at the spacing the volume chooses (the finest stretch of equal gaps, through its slices),
          at the smallest gap and at half the finest stretch: slices, memory, assembly time (median
          of several runs) and fidelity, as the RMS difference between each file's slice and the
          volume interpolated back to that slice's plane (the 4 mm and the 7 mm part apart).
  peak    a 300-slice 512x512 CT (the Philips phantom made into a stack as bench_viewer writes it)
          assembled as it is, and with its second half thinned to every other slice (225 files, 1 mm
          then 2 mm apart) so that it is resampled back to 300 slices: time and peak resident growth
          over the volume's size, each in a fresh process. Anchor: the even stack's own assembly.

    .venv/bin/python benchmarks/bench_resample.py [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _util import ROOT, SAMPLES, median, require_samples, table

GE = SAMPLES / "dcm_qa_ct" / "In" / "GE"


def choice(runs: int) -> None:
    import numpy as np
    import pydicom

    from workstation.core.pixels import volume_checks
    from workstation.core.pixels.slice_reader import read_slice_header
    from workstation.core.pixels.volume import assemble_volume_from_headers

    files = sorted(GE.glob("*.dcm"))
    headers = [read_slice_header(p) for p in files]
    dss = sorted((pydicom.dcmread(p) for p in files), key=lambda d: float(d.ImagePositionPatient[2]))
    slices = [d.pixel_array * float(d.RescaleSlope) + float(d.RescaleIntercept) for d in dss]
    chosen = volume_checks.resampling_spacing
    breaks = volume_checks.breaks
    variants = {
        "the finest stretch (chosen)": chosen,
        "the smallest gap": lambda p: (float(np.diff(p).min()), float(p[0])),
        "half the finest stretch": lambda p: (chosen(p)[0] / 2, chosen(p)[1]),
    }
    rows = []
    try:
        for name, rule in variants.items():
            volume_checks.resampling_spacing = rule
            volume_checks.breaks = lambda *a, **k: []      # the smallest gap is refused as too uneven otherwise
            times = []
            for _ in range(runs):
                start = time.perf_counter()
                v = assemble_volume_from_headers(headers)
                times.append(time.perf_counter() - start)
            normal, gap, first = v.normal, v.slice_gap, float(v.origin @ v.normal)
            errors = []
            for d, values in zip(dss, slices, strict=True):
                x = (float(np.dot([float(c) for c in d.ImagePositionPatient], normal)) - first) / gap
                k = min(max(int(np.floor(x)), 0), v.array.shape[0] - 2)
                f = x - k
                back = v.array[k] * (1 - f) + v.array[k + 1] * f
                errors.append(float(np.sqrt(np.mean((back - values) ** 2))))
            errors = np.array(errors)
            rows.append((name, f"{gap:.2f} mm", str(v.array.shape[0]), f"{v.array.nbytes / 2**20:.1f} MiB",
                         f"{median(times) * 1000:.0f} ms", f"{errors[:14].mean():.2f} HU", f"{errors[15:].mean():.2f} HU"))
    finally:
        volume_checks.resampling_spacing, volume_checks.breaks = chosen, breaks
    print(f"GE head CT, {len(files)} files; RMS difference of each file's slice from the volume at its plane\n")
    print(table(rows, ("grid spacing", "spacing", "slices", "memory", "assembly", "4 mm part", "7 mm part")))


def worker(paths_file: str) -> None:
    from bench_mpr import reset_peak, status

    from workstation.core.pixels.slice_reader import read_slice_header
    from workstation.core.pixels.volume import assemble_volume_from_headers

    headers = [read_slice_header(p) for p in Path(paths_file).read_text().split("\n")]
    before = status("VmRSS")
    reset_peak()      # ru_maxrss would start at the parent's size: Linux keeps it across fork and exec
    start = time.perf_counter()
    v = assemble_volume_from_headers(headers)
    seconds = time.perf_counter() - start
    peak = status("VmHWM") - before
    print(json.dumps({"seconds": seconds, "peak": peak, "nbytes": v.array.nbytes, "slices": v.array.shape[0],
                      "resampled": v.resampled}))


def peak(runs: int) -> None:
    from bench_viewer import make_stacks

    folder = make_stacks(300) / "one" / "s0"
    even = sorted(folder.glob("*.dcm"))
    thinned = even[:150] + even[151::2]
    rows, results = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, paths in (("even, 300 files", even), ("resampled, 225 files -> 300 slices", thinned)):
            listing = Path(tmp) / f"{len(paths)}.txt"
            listing.write_text("\n".join(str(p) for p in paths))
            runs_of = []
            for n in range(runs + 1):
                out = subprocess.run([sys.executable, __file__, "--worker", str(listing)], capture_output=True,
                                     text=True, check=True, cwd=ROOT)
                if n:
                    runs_of.append(json.loads(out.stdout.strip().splitlines()[-1]))
            results[name] = runs_of
    anchor = median([r["seconds"] for r in results["even, 300 files"]])
    for name, runs_of in results.items():
        seconds = median([r["seconds"] for r in runs_of])
        growth = median([r["peak"] / r["nbytes"] for r in runs_of])
        rows.append((name, str(runs_of[0]["slices"]), f"{seconds * 1000:.0f} ms", f"{seconds / anchor:.2f}x",
                     f"{growth:.2f}x"))
    print(f"\nassembly of a 512x512 CT stack, warm page cache, median of {runs} fresh processes\n")
    print(table(rows, ("stack", "slices", "assembly", "vs the even stack", "peak growth / volume")))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    require_samples()
    choice(args.runs)
    peak(args.runs)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        worker(sys.argv[2])
    else:
        main()
