"""MPR in the real window (Qt offscreen), on a cached 512x512x300 CT derived from the Philips phantom
as bench_viewer.py makes it. Medians of several runs:
  open       Ctrl+M's action on the tab -> the three planes painted (volume assembled on a worker,
             VTK imported the first time), target < 1.5 s; anchor: the same volume's assembly alone.
  crosshair  a crosshair move (the point set as a drag sets it) -> the three planes resliced,
             rendered and painted, target >= 20 per second; anchor: three reslices alone.
  slab       the same with a 10 mm MIP slab.
  memory     what MPR's planes add beyond the volume itself (30 moves, three planes, with and
             without a slab): private data at its peak (RssAnon) after VTK's import, target <= 10 %
             of the volume's bytes; VTK's import apart (a fixed cost of its libraries' start-up); and
             the resident size with all of it (the volume itself is the anchor). The 3D quarter is
             kept from starting in these runs and measured in its own:
  3D         Ctrl+M -> the 3D quarter's first frame painted (the unshaded preview) and its first
             shaded full-quality frame, target < 3 s; what the shaded 3D adds in RssAnon over the
             volume (VTK's CPU ray caster keeps a gradient direction and magnitude per voxel, 3 bytes).

    .venv/bin/python benchmarks/bench_mpr_gui.py [--runs 5]
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from _util import ROOT, median, require_samples, table, wait  # noqa: E402

sys.path.insert(0, str(ROOT))

from bench_viewer import DATA, build_window, make_stacks, rss, study_uids  # noqa: E402


def anonymous() -> int:
    """The process's private memory (RssAnon): data, not the shared libraries' code VTK pages in."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    return rss()


def planes_painted(app, mpr, after: float) -> bool:
    return all(c.model.renderer is not None and not c.model.loading and getattr(c, "_painted", 0) >= after
               for c in mpr.cells.values())


def open_decoded(app, window):
    """The study opened in a tab and its 2D stack decoded (that memory is not MPR's); the tab."""
    window.open_study(study_uids()[0])
    wait(app, lambda: window.viewer is not None and window.viewer.viewport.image is not None, 30)
    frames = window.viewer.active_model.frames
    wait(app, lambda: all(window.frames.cached(f) is not None for f in frames), 60)
    gc.collect()
    return window.viewer


def one_run(app, home: Path, moves: int) -> dict[str, float]:
    import numpy as np

    from workstation.app import shutdown
    from workstation.core.pixels.mpr import Slab
    from workstation.ui.mpr.view3d import View3DWidget
    from workstation.ui.viewer.viewport import ViewportWidget

    original = ViewportWidget.paintEvent
    start_3d = View3DWidget.start
    View3DWidget.start = lambda self: None       # the planes' figures without the 3D quarter's work

    def paint(self, event):
        original(self, event)
        self._painted = time.perf_counter()

    ViewportWidget.paintEvent = paint
    window, services = build_window(home)
    out: dict[str, float] = {}
    try:
        viewer = open_decoded(app, window)
        before, before_anon = rss(), anonymous()
        peak = [0]
        start = time.perf_counter()
        viewer.toggle_mpr()
        wait(app, lambda: viewer.showing_mpr and planes_painted(app, viewer.mpr, start), 60)
        out["open"] = time.perf_counter() - start
        mpr = viewer.mpr
        session = mpr.session
        centre = session.point.copy()
        for name, slab in (("crosshair", None), ("slab", Slab("mip", 10.0))):
            session.set_slab(slab)
            wait(app, lambda: planes_painted(app, mpr, 0), 30)
            start = time.perf_counter()
            for i in range(moves):
                step = time.perf_counter()
                session.set_cursor(session.viewport_of("axial"), centre + np.array([i % 7, (i * 3) % 11, i % 5], float))
                wait(app, lambda s=step: planes_painted(app, mpr, s), 30)
                peak[0] = max(peak[0], anonymous())
            out[name] = moves / (time.perf_counter() - start)
        volume_bytes = mpr.session.volume.array.nbytes
        out["memory"] = (rss() - before) / volume_bytes - 1.0            # over the volume itself
        out["memory_data"] = (peak[0] - before_anon) / volume_bytes - 1.0
        # the anchor of the move: three reslices alone, as the planes of the last move
        specs = [session.make_frame(c.model.current)[0] for c in mpr.cells.values()]
        start = time.perf_counter()
        for _ in range(moves):
            for spec in specs:
                mpr.reslicer.reslice(spec)
        out["reslice_anchor"] = moves / (time.perf_counter() - start)
        from workstation.core.pixels.volume import assemble_volume_from_headers

        start = time.perf_counter()
        series = mpr.session.series.SeriesInstanceUID
        assemble_volume_from_headers(window.cache.cache.volume_slices(series))
        out["assembly_anchor"] = time.perf_counter() - start
    finally:
        ViewportWidget.paintEvent = original
        View3DWidget.start = start_3d
        window.close()
        shutdown(services)
    return out


def run_3d(app, home: Path) -> dict[str, float]:
    """Ctrl+M's action -> the 3D quarter's first frame and its first shaded one, painted."""
    from workstation.app import shutdown
    from workstation.ui.mpr.view3d import View3DWidget

    painted: list[float] = []
    original = View3DWidget._arrived

    def arrived(self, *args):
        original(self, *args)
        self.canvas.repaint()
        painted.append(time.perf_counter())

    View3DWidget._arrived = arrived
    window, services = build_window(home)
    out: dict[str, float] = {}
    try:
        viewer = open_decoded(app, window)
        before = anonymous()
        start = time.perf_counter()
        viewer.toggle_mpr()
        # polled every 10 ms: a busier loop would take a core from the renderer as an idle GUI does not
        wait(app, lambda: viewer.showing_mpr and isinstance(viewer.mpr.view3d, View3DWidget)
             and viewer.mpr.view3d.final, 120, poll=0.01)
        view = viewer.mpr.view3d
        out["first_3d"] = painted[0] - start
        out["shaded_3d"] = painted[-1] - start
        out["frame_3d"] = view.rendered[-1][1]
        out["memory_3d"] = (anonymous() - before) / viewer.mpr.session.volume.array.nbytes - 1.0
    finally:
        View3DWidget._arrived = original
        window.close()
        shutdown(services)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--moves", type=int, default=30)
    args = parser.parse_args()
    require_samples()
    from PySide6.QtWidgets import QApplication

    from workstation.core.cache import Cache

    app = QApplication.instance() or QApplication([])
    make_stacks(300)
    work = Path(tempfile.mkdtemp(prefix="bench-mpr-gui-"))
    try:
        home = work / "home"
        gc.collect()
        before = anonymous()
        import workstation.ui.mpr.mpr_widget  # noqa: F401 - VTK's own start-up, measured apart (a fixed cost, once)

        vtk_import = anonymous() - before
        with Cache(home) as cache:
            cache.import_paths([DATA / "one"])
        runs = [one_run(app, home, args.moves) | run_3d(app, home) for _ in range(args.runs)]
        m = {k: median([r[k] for r in runs]) for k in runs[0]}
        m["vtk_import"] = vtk_import
        rows = [
            ("open MPR: three planes painted", f"{m['open']:.2f} s", "< 1.5 s", f"{m['open'] / 1.5:.2f}x of the target",
             f"assembly alone {m['assembly_anchor']:.2f} s ({m['open'] / m['assembly_anchor']:.2f}x)"),
            ("crosshair move, three planes painted", f"{m['crosshair']:.0f} /s", ">= 20", f"{m['crosshair'] / 20:.2f}x",
             f"three reslices alone {m['reslice_anchor']:.0f}/s"),
            ("crosshair move, 10 mm MIP slab", f"{m['slab']:.0f} /s", "", f"{m['slab'] / 20:.2f}x", ""),
            ("MPR's data over the volume (peak RssAnon)", f"{m['memory_data'] * 100:.1f} % of the volume", "<= 10 %",
             "", "the volume itself"),
            ("VTK's import (once, whatever the volume)", f"{m['vtk_import'] / 2**20:.0f} MiB", "", "", ""),
            ("all MPR adds in RSS (VTK's code too)", f"{m['memory'] * 100:.1f} % of the volume", "", "", ""),
            ("3D: first frame painted (preview)", f"{m['first_3d']:.2f} s", "< 3 s", f"{m['first_3d'] / 3:.2f}x",
             "from Ctrl+M, the planes first"),
            ("3D: first shaded full-quality frame", f"{m['shaded_3d']:.2f} s", "< 3 s", f"{m['shaded_3d'] / 3:.2f}x",
             f"its render alone {m['frame_3d']:.2f} s"),
            ("3D: shaded rendering's data over the volume", f"{m['memory_3d'] * 100:.0f} % of the volume", "", "",
             "planes included"),
        ]
        print(f"\nmedians of {args.runs} runs; a 512x512x300 CT\n")
        print(table(rows, ("MPR in the window", "measured", "target", "ratio", "anchor")))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
