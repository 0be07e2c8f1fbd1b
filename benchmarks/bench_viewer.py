"""The reading viewer's figures, in the real window (Qt offscreen), on cached 512x512 CT stacks.

The stacks are derived from the 140-slice Philips phantom: 300 slices each (the phantom's slices
in turn, 1 mm apart, new UIDs), one study of one stack and one study of four stacks sharing a
frame of reference. They are made once into a temporary folder and imported into one cache.
Measured, medians of several runs:
  open      a fresh window (cold frame cache): `open_study` -> the first image painted, target
            < 250 ms; -> every frame of the stack decoded (scrollable without waiting), < 2 s.
            Anchor: opening and rendering one slice with the core alone.
  scroll    2x2 of the four stacks, all frames cached, linked scrolling: one step = the active
            viewport moves one image and the three others follow by position, all four painted
            (repaint, synchronous) -> images per second per viewport, target >= 60. Anchor: four
            viewports painting a ready image (the paint alone).
  window    a window/level drag in one viewport: re-window and paint per step, target >= 60/s.
  memory    the process's resident size with the 2x2 open and every frame decoded, over the
            decoded pixels of the four stacks, target < 1.5; and what is left after closing the tab.

    .venv/bin/python benchmarks/bench_viewer.py [--runs 5] [--slices 300]
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from _util import PHILIPS, ROOT, median, require_samples, table, wait  # noqa: E402

sys.path.insert(0, str(ROOT))

DATA = Path(tempfile.gettempdir()) / "workstation-bench-viewer-v1"


def uid(*parts) -> str:
    digest = int(hashlib.sha1("/".join(map(str, parts)).encode()).hexdigest()[:24], 16)
    return f"2.25.{digest}"


def make_stacks(slices: int) -> Path:
    """Write the derived studies once: study 1 with one stack, study 2 with four (one frame of reference)."""
    import pydicom

    done = DATA / f"done-{slices}"
    if done.exists():
        return DATA
    shutil.rmtree(DATA, ignore_errors=True)
    sources = [pydicom.dcmread(p) for p in sorted(PHILIPS.iterdir())]
    sources.sort(key=lambda ds: float(ds.ImagePositionPatient[2]))
    for study, stacks in (("one", 1), ("four", 4)):
        for stack in range(stacks):
            folder = DATA / study / f"s{stack}"
            folder.mkdir(parents=True)
            for i in range(slices):
                ds = sources[i % len(sources)].copy()
                ds.StudyInstanceUID = uid(study)
                ds.SeriesInstanceUID = uid(study, stack)
                ds.SOPInstanceUID = uid(study, stack, i)
                ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
                ds.FrameOfReferenceUID = uid(study, "for")
                ds.SeriesNumber = 300 + stack
                ds.SeriesDescription = f"DERIVED STACK {stack + 1}"
                ds.InstanceNumber = i + 1
                x, y, _ = (float(v) for v in ds.ImagePositionPatient)
                ds.ImagePositionPatient = [x, y, float(i) + 0.25 * stack]
                ds.save_as(folder / f"{i:04d}.dcm")
    done.touch()
    return DATA


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def study_uids() -> tuple[str, str]:
    return uid("one"), uid("four")


def build_window(home: Path):
    from workstation.app import build

    window, services = build(home)
    window.resize(1400, 900)
    window.show()
    return window, services


def open_timing(app, home: Path) -> tuple[float, float]:
    """(first image painted, every frame decoded) in seconds after open_study, with a cold frame cache."""
    from workstation.app import shutdown
    from workstation.ui.viewer.viewport import ViewportWidget

    window, services = build_window(home)
    painted: list[float] = []
    original = ViewportWidget.paintEvent

    def paint(self, event):
        original(self, event)
        if not painted and self.image is not None:
            painted.append(time.perf_counter())

    ViewportWidget.paintEvent = paint
    try:
        app.processEvents()
        start = time.perf_counter()
        window.open_study(study_uids()[0])
        wait(app, lambda: bool(painted), 20)
        viewer = window.viewer
        frames = viewer.active_model.frames
        wait(app, lambda: all(window.frames.cached(f) is not None for f in frames), 60)
        return painted[0] - start, time.perf_counter() - start
    finally:
        ViewportWidget.paintEvent = original
        window.close()
        shutdown(services)


def anchor_one_slice() -> float:
    from workstation.core.pixels.image import ImageSource
    from workstation.core.pixels.render import FrameRenderer

    path = next(iter(sorted((DATA / "one" / "s0").iterdir())))
    start = time.perf_counter()
    FrameRenderer(ImageSource.open(path)).render()
    return time.perf_counter() - start


def two_by_two(app, home: Path, steps: int, runs: int) -> dict[str, list[float]]:
    """Scrolling and window/level rates and memory with the four stacks in 2x2, all frames cached."""
    from PySide6.QtGui import QColor, QImage, QPainter

    from workstation.app import shutdown
    from workstation.core.pixels.voi import Window

    gc.collect()
    before = rss()
    window, services = build_window(home)
    out: dict[str, list[float]] = {"scroll": [], "window": [], "paint_anchor": []}
    try:
        window.open_study(study_uids()[1])
        wait(app, lambda: window.viewer is not None, 20)
        viewer = window.viewer
        viewer.set_grid(2, 2)
        cells = viewer.grid.cells
        wait(app, lambda: all(c.model.display_set is not None for c in cells), 20)
        every = [f for c in cells for f in c.model.frames]
        wait(app, lambda: all(window.frames.cached(f) is not None for f in every), 300)
        wait(app, lambda: all(c.image is not None for c in cells), 20)
        decoded = sum(c.model.display_set.frames.__len__() for c in cells) * 512 * 512 * 2
        out["memory"] = [(rss() - before) / decoded]
        active = cells[0].model
        viewer.session.layout.activate(0)
        n = len(active.frames)
        for _ in range(runs):
            start = time.perf_counter()
            for i in range(steps):
                active.set_index((i * 7) % n)
                for c in cells:
                    c.repaint()
            out["scroll"].append(steps / (time.perf_counter() - start))
            start = time.perf_counter()
            for i in range(steps):
                active.set_window(Window(40.0 + (i % 50), 80.0 + 4 * (i % 50)))
                cells[0].repaint()
            out["window"].append(steps / (time.perf_counter() - start))
            # the anchor: four viewports painting a ready QImage of the same size
            image = QImage(cells[0].image)
            start = time.perf_counter()
            for _ in range(steps):
                for c in cells:
                    target = QImage(c.size(), QImage.Format.Format_RGB32)
                    p = QPainter(target)
                    p.fillRect(target.rect(), QColor(0, 0, 0))
                    p.drawImage(target.rect(), image)
                    p.end()
            out["paint_anchor"].append(steps / (time.perf_counter() - start))
        index = window.tabs.indexOf(viewer)
        window.close_tab(index)
        for _ in range(60):            # the window gives the memory back 200 ms after the tab closes
            app.processEvents()
            time.sleep(0.01)
        out["after_close"] = [(rss() - before) / decoded]
    finally:
        window.close()
        shutdown(services)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--steps", type=int, default=120)
    args = parser.parse_args()
    require_samples()
    from PySide6.QtWidgets import QApplication

    from workstation.core.cache import Cache

    app = QApplication.instance() or QApplication([])
    make_stacks(args.slices)
    work = Path(tempfile.mkdtemp(prefix="bench-viewer-"))
    try:
        home = work / "home"
        with Cache(home) as cache:
            cache.import_paths([DATA / "one", DATA / "four"])
        opens = [open_timing(app, home) for _ in range(args.runs)]
        anchor = median([anchor_one_slice() for _ in range(args.runs)])
        rates = two_by_two(app, home, args.steps, args.runs)
        first = median([o[0] for o in opens])
        ready = median([o[1] for o in opens])
        scroll, wl, paint = median(rates["scroll"]), median(rates["window"]), median(rates["paint_anchor"])
        rows = [
            ("open: first image painted", f"{first * 1000:.0f} ms", "< 250 ms", f"{first / 0.25:.2f}x of the target",
             f"core alone {anchor * 1000:.1f} ms ({first / anchor:.1f}x)"),
            (f"open: all {args.slices} frames decoded", f"{ready:.2f} s", "< 2 s", f"{ready / 2:.2f}x of the target", ""),
            ("2x2 linked scrolling", f"{scroll:.0f} images/s per viewport", ">= 60", f"{scroll / 60:.2f}x the target",
             f"bare paint {paint:.0f}/s ({scroll / paint:.2f}x)"),
            ("window/level drag", f"{wl:.0f} /s", ">= 60", f"{wl / 60:.2f}x the target", ""),
            ("memory, 2x2 all decoded", f"{rates['memory'][0]:.2f}x decoded pixels", "< 1.5x", "", ""),
            ("memory after closing the tab", f"{rates['after_close'][0]:.2f}x", "", "", ""),
        ]
        print(f"\nmedians of {args.runs} runs; stacks of {args.slices} 512x512 CT slices\n")
        print(table(rows, ("viewer", "measured", "target", "ratio", "anchor")))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
