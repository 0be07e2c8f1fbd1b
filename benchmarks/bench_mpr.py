"""MPR figures on a cached 512x512x300 CT volume (the Philips phantom's 140 slices made into a 300-slice
stack, 1 mm apart, as bench_viewer's make_stacks writes it), medians of several runs, each beside an
anchor measured in the same run:

  reslice   one plane through VTK (vtk3d.reslice), then to 8 bits through FrameRenderer.of_values as
            a viewport shows it: orthogonal target < 20 ms, double oblique < 50 ms, 10 mm MIP slab
            < 80 ms. Anchors: numpy's copy of an axial slice as float32, and a nearest-neighbour numpy
            reslice of the same plane (index arithmetic and a gather, NaN outside).
  crosshair three planes through a moved point (axial, coronal, sagittal) in a row, and on three
            workers at once: target >= 20 moves per second.
  memory    in a fresh process: the volume's buffer is VTK's (same address); the peak resident size
            over the assembled volume during 30 crosshair moves of three viewports on three workers
            (orthogonal, double oblique, MIP and average slabs; each viewport keeping its newest plane),
            VTK's libraries loaded first and counted apart; target <= 10 % of the volume.
  open      in a fresh process: Cache.volume_slices + assembly + VTK's image + the first three planes,
            target < 1.5 s; with the first import of VTK counted apart. Anchor: reading the series'
            files (the bytes alone).

    .venv/bin/python benchmarks/bench_mpr.py [--runs 7]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _util import ROOT, median, require_samples, table

SLICES = 300


def series_home(work: Path) -> tuple[Path, str]:
    """A cache holding the derived 300-slice stack (import not timed)."""
    from bench_viewer import make_stacks

    from workstation.core.cache import Cache

    data = make_stacks(SLICES)
    home = work / "home"
    with Cache(home) as cache:
        report = cache.import_paths([data / "one"])
        assert report.imported == SLICES, report
        (series,) = report.series_uids
    return home, series


def load(home: Path, series: str):
    from workstation.core.cache import Cache
    from workstation.core.pixels.volume import assemble_volume_from_headers

    with Cache(home) as cache:
        headers = cache.volume_slices(series)
    return assemble_volume_from_headers(headers)


def nearest_reslice(volume, plane, offsets=(0.0,), normal=None):
    """The anchor: a nearest-neighbour reslice in numpy (max over offsets along `normal` for a slab)."""
    import numpy as np

    inverse = np.linalg.inv(volume.affine())
    i = np.arange(plane.rows, dtype=np.float32)[:, None, None] * plane.pixel_spacing[0]
    j = np.arange(plane.columns, dtype=np.float32)[None, :, None] * plane.pixel_spacing[1]
    centres = plane.position + j * plane.row_direction + i * plane.column_direction
    shape = np.array(volume.array.shape[::-1])[:, None]
    out = None
    for offset in offsets:
        points = centres if normal is None else centres + offset * normal
        index = inverse[:3, :3] @ points.reshape(-1, 3).T + inverse[:3, 3:]
        nearest = np.rint(index).astype(np.int64)
        inside = np.all((nearest >= 0) & (nearest < shape), axis=0)
        np.clip(nearest, 0, shape - 1, out=nearest)
        values = volume.array[nearest[2], nearest[1], nearest[0]].astype(np.float32)
        values[~inside] = np.nan
        out = values if out is None else np.fmax(out, values)
    return out.reshape(plane.rows, plane.columns)


def timed(fn, runs: int, cpu: list | None = None) -> float:
    """Median wall seconds per call; the median CPU seconds (every thread of the process) go to `cpu`."""
    times, cpus = [], []
    for n in range(runs):
        start, start_cpu = time.perf_counter(), time.process_time()
        fn(n)
        times.append(time.perf_counter() - start)
        cpus.append(time.process_time() - start_cpu)
    if cpu is not None:
        cpu.append(median(cpus))
    return median(times)


def reslice_figures(volume, runs: int) -> list[tuple[str, ...]]:
    import numpy as np

    from workstation.core.pixels import mpr
    from workstation.core.pixels.mpr import PlaneSpec, Slab
    from workstation.core.pixels.render import FrameRenderer
    from workstation.core.pixels.voi import Window
    from workstation.vtk3d.image import volume_image
    from workstation.vtk3d.reslice import Reslicer

    reslicer = Reslicer(volume_image(volume))
    centre = mpr.volume_centre(volume)
    window = Window(40, 400)

    def shown(spec, slab=None):
        values, plane = reslicer.reslice(spec, slab)
        return FrameRenderer.of_values(values, plane).render(window)

    def moving(spec, n):       # a new position each run, as scrolling or dragging
        return spec.moved(((n * 7) % 40 - 20) * mpr.scroll_step(volume, spec))

    axial_copy = timed(lambda n: volume.array[100 + n % 50].astype(np.float32), runs * 5)
    cases = [
        ("axial", PlaneSpec.through("axial", centre), None, "< 20 ms"),
        ("coronal", PlaneSpec.through("coronal", centre), None, "< 20 ms"),
        ("sagittal", PlaneSpec.through("sagittal", centre), None, "< 20 ms"),
        ("double oblique (row 30°, column 20°)",
         PlaneSpec.through("coronal", centre).rotated("row", 30).rotated("column", 20), None, "< 50 ms"),
        ("coronal MIP slab 10 mm", PlaneSpec.through("coronal", centre), Slab("mip", 10), "< 80 ms"),
        ("oblique MIP slab 10 mm", PlaneSpec.through("axial", centre).rotated("x", 25), Slab("mip", 10), "< 80 ms"),
    ]
    rows = []
    for name, spec, slab, target in cases:
        shown(spec, slab)
        cpu: list[float] = []
        vtk_only = timed(lambda n, s=spec, b=slab: reslicer.reslice(moving(s, n), b), runs * 5, cpu)
        total = timed(lambda n, s=spec, b=slab: shown(moving(s, n), b), runs * 5)
        plane = mpr.plane_geometry(volume, spec)
        offsets = slab.offsets(mpr.scroll_step(volume, spec)) if slab else (0.0,)
        anchor = timed(lambda n, p=plane, o=offsets, s=spec: nearest_reslice(volume, p, o, s.normal), runs)
        rows.append((name, f"{plane.rows}x{plane.columns}x{len(offsets)}", f"{vtk_only * 1000:.1f} ms",
                     f"{cpu[0] * 1000:.1f} ms", f"{total * 1000:.1f} ms", target,
                     f"{anchor * 1000:.1f} ms ({vtk_only / anchor:.2f}x)",
                     f"{axial_copy * 1000:.2f} ms ({vtk_only / axial_copy:.0f}x)"))
    print(table(rows, ("plane", "samples", "reslice", "its CPU", "reslice + to 8 bits", "target",
                       "numpy nearest (ratio)", "numpy axial copy (ratio)")))

    from concurrent.futures import ThreadPoolExecutor

    def move(n, pool=None):
        point = centre + np.array([n % 9 - 4.0, n % 7 - 3.0, n % 11 - 5.0]) * 3.1
        specs = mpr.orthogonal_planes(point)
        if pool is None:
            return [shown(s) for s in specs]
        return list(pool.map(shown, specs))

    in_a_row = timed(move, runs * 5)
    with ThreadPoolExecutor(3) as pool:
        move(0, pool)
        together = timed(lambda n: move(n, pool), runs * 5)
    anchor = timed(lambda n: [nearest_reslice(volume, mpr.plane_geometry(volume, s))
                              for s in mpr.orthogonal_planes(centre)], runs)
    print()
    print(table([
        ("three planes in a row", f"{in_a_row * 1000:.1f} ms", f"{1 / in_a_row:.0f} /s", ">= 20 /s",
         f"{anchor * 1000:.0f} ms ({in_a_row / anchor:.2f}x)"),
        ("three planes on three workers", f"{together * 1000:.1f} ms", f"{1 / together:.0f} /s", ">= 20 /s",
         f"({together / anchor:.2f}x)"),
    ], ("crosshair move", "per move", "moves", "target", "numpy nearest, three planes (ratio)")))
    return rows


def status(field: str) -> int:
    """A size from /proc/self/status (VmHWM: the peak resident size; RssAnon, RssFile: now)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field}")


def reset_peak() -> None:
    with open("/proc/self/clear_refs", "w") as f:      # Linux >= 4.0: "5" resets the peak resident size
        f.write("5")


def memory_worker(home: str, series: str, workers: int) -> None:
    """Fresh process: VTK's libraries loaded first, the volume assembled, then the peak resident size
    over it through an MPR session, split into VTK's code paged in on first use (file-backed, once
    per process) and data (the planes, VTK's working memory, the allocator's slack)."""
    import gc
    import tracemalloc
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np

    from workstation.core.cache import Cache  # noqa: F401  (the core before VTK, so it counts apart)

    before_vtk = status("VmRSS")
    from vtkmodules.util.numpy_support import vtk_to_numpy

    from workstation.core.pixels import mpr
    from workstation.core.pixels.mpr import Slab
    from workstation.vtk3d.image import volume_image
    from workstation.vtk3d.reslice import Reslicer
    libraries = status("VmRSS") - before_vtk

    volume = load(Path(home), series)
    gc.collect()
    base, base_file = status("VmRSS"), status("RssFile")
    reset_peak()
    tracemalloc.start()
    vi = volume_image(volume)
    shared = vtk_to_numpy(vi.image.GetPointData().GetScalars()).ctypes.data == volume.array.ctypes.data
    reslicer = Reslicer(vi)
    centre = mpr.volume_centre(volume)
    shown: list = []                         # what three viewports hold: the newest plane of each
    with ThreadPoolExecutor(workers) as pool:
        for n in range(30):
            point = centre + np.array([n % 9 - 4.0, n % 7 - 3.0, n % 11 - 5.0]) * 3.1
            specs = list(mpr.orthogonal_planes(point))
            if n % 3 == 1:
                specs = [s.rotated("row", 30).rotated("column", 20) for s in specs]
            slab = (None, Slab("mip", 10), Slab("avg", 20))[n % 3] if n >= 10 else None
            shown = list(pool.map(lambda s, b=slab: reslicer.reslice(s, b)[0], specs))
    traced = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    peak = status("VmHWM") - base
    code = status("RssFile") - base_file
    print(json.dumps({"volume": volume.array.nbytes, "shared": bool(shared), "libraries": libraries,
                      "peak": peak, "code": code, "data_peak": peak - code, "traced": traced,
                      "shown": sum(a.nbytes for a in shown)}))


def open_worker(home: str, series: str, variant: str) -> None:
    """Fresh process: what opening MPR on a cached series costs (VTK's first import timed apart)."""
    start = time.perf_counter()
    if variant == "read":
        from workstation.core.cache import Cache

        with Cache(Path(home)) as cache:
            paths = [i.path for i in cache.instances(series)]
        total = 0
        for p in paths:
            with open(p, "rb") as f:
                total += len(f.read())
        print(json.dumps({"read": time.perf_counter() - start, "bytes": total}))
        return
    volume = load(Path(home), series)
    assembled = time.perf_counter()
    from workstation.core.pixels import mpr
    from workstation.vtk3d.image import volume_image
    from workstation.vtk3d.reslice import Reslicer
    imported = time.perf_counter()
    reslicer = Reslicer(volume_image(volume))
    planes = [reslicer.reslice(s) for s in mpr.orthogonal_planes(mpr.volume_centre(volume))]
    done = time.perf_counter()
    assert all(p[0].size for p in planes)
    print(json.dumps({"assemble": assembled - start, "vtk_import": imported - assembled,
                      "planes": done - imported, "total": done - start}))


def child(*args: str) -> dict:
    out = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, check=True, cwd=ROOT)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    require_samples()
    work = Path(tempfile.mkdtemp(prefix="bench-mpr-"))
    try:
        home, series = series_home(work)
        volume = load(home, series)
        print(f"volume {volume.array.shape} {volume.array.dtype}, {volume.array.nbytes / 2**20:.0f} MiB; "
              f"medians of {args.runs}-{args.runs * 5} runs; {os.cpu_count()} cores, load average "
              f"{os.getloadavg()[0]:.1f} before\n")
        reslice_figures(volume, args.runs)
        del volume

        rows = []
        for workers in (1, 3):
            memory = [child("--memory", str(home), series, str(workers)) for _ in range(3)]
            m = memory[0]
            assert all(r["shared"] for r in memory)
            peak, data, code = (median([r[k] for r in memory]) for k in ("peak", "data_peak", "code"))
            rows += [
                (f"{workers} worker(s): peak resident growth", f"{peak / 2**20:.1f} MiB",
                 f"{peak / m['volume'] * 100:.1f} %", ""),
                ("  VTK's code paged in on first use (once)", f"{code / 2**20:.1f} MiB", "", ""),
                ("  data: planes, VTK's work, allocator slack", f"{data / 2**20:.1f} MiB",
                 f"{data / m['volume'] * 100:.1f} %", "<= 10 %"),
                ("  the three planes shown at the end", f"{m['shown'] / 2**20:.1f} MiB",
                 f"{m['shown'] / m['volume'] * 100:.1f} %", ""),
                ("  numpy's own allocations (tracemalloc)", f"{median([r['traced'] for r in memory]) / 2**10:.0f} KiB",
                 "", ""),
            ]
        rows.append(("VTK's libraries, imported once", f"{median([r['libraries'] for r in memory]) / 2**20:.0f} MiB",
                     "", ""))
        print()
        print("the volume and VTK's image share one buffer (same address): yes")
        print(table(rows, ("memory: 30 crosshair moves (fresh process, median of 3)", "measured", "of the volume",
                           "target")))

        for _ in range(2):
            child("--open", str(home), series, "mpr")
            child("--open", str(home), series, "read")
        opens = [child("--open", str(home), series, "mpr") for _ in range(args.runs)]
        reads = [child("--open", str(home), series, "read") for _ in range(args.runs)]
        read = median([r["read"] for r in reads])
        total = median([r["total"] for r in opens])
        vtk_import = median([r["vtk_import"] for r in opens])
        print()
        print(table([
            ("assembly from the cache", f"{median([r['assemble'] for r in opens]) * 1000:.0f} ms", "", ""),
            ("first import of VTK's modules", f"{vtk_import * 1000:.0f} ms", "", ""),
            ("VTK image and the first three planes", f"{median([r['planes'] for r in opens]) * 1000:.0f} ms", "", ""),
            ("open MPR, all of it", f"{total * 1000:.0f} ms", "< 1.5 s",
             f"{read * 1000:.0f} ms ({total / read:.2f}x)"),
            ("open MPR with VTK already loaded", f"{(total - vtk_import) * 1000:.0f} ms", "< 1.5 s",
             f"({(total - vtk_import) / read:.2f}x)"),
        ], ("opening (fresh process, warm page cache)", "median", "target", "reading the files' bytes (ratio)")))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--memory":
        memory_worker(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    elif len(sys.argv) == 5 and sys.argv[1] == "--open":
        open_worker(sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        main()
