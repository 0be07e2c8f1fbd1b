"""Opening CT slices for display: ImageSource.open (header fast path, pixel bytes read at their offset)
vs the old route, the whole file read by pydicom (dcmread, then ImageSource.from_dataset), the anchor.

Each pass opens all 140 slices of dcm_qa_ct's Philips S2020 series once and builds a FrameRenderer
(then, separately, also renders it with its own window), dropping each before the next; medians of
several passes (ours and the anchor's alternating), per slice. Then
the bytes that stay allocated (tracemalloc) while only the renderer is referenced, against the decoded
frame's size. Target: open + FrameRenderer at least 3x faster than the anchor, retention at most 1.1x.
"""

from __future__ import annotations

import gc
import tracemalloc

import pydicom
from _util import PHILIPS, median, require_samples, table, timed

from workstation.core.pixels import FrameRenderer, ImageSource

RUNS = 9


def fast(path) -> FrameRenderer:
    return FrameRenderer(ImageSource.open(path))


def anchor(path) -> FrameRenderer:
    return FrameRenderer(ImageSource.from_dataset(pydicom.dcmread(path, force=True)))


def retained(build, path) -> int:
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        renderer = build(path)
        gc.collect()
        kept = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    del renderer
    return kept


def main() -> None:
    require_samples()
    paths = sorted(PHILIPS.iterdir())
    assert all(ImageSource.open(p).is_native_file for p in paths)
    for p in paths:   # both routes once: the files are in the page cache, the imports done
        fast(p), anchor(p)

    rows, ratios = [], {}
    def build_each(build) -> None:
        for p in paths:
            build(p)

    def render_each(build) -> None:
        for p in paths:
            build(p).render()

    for label, work in (("open + FrameRenderer", build_each), ("open + FrameRenderer + render()", render_each)):
        ours, theirs = [], []
        for _ in range(RUNS):   # alternating, so both see the same machine load and allocator state
            ours += [t / len(paths) for t in timed(lambda work=work: work(fast), 1)]
            theirs += [t / len(paths) for t in timed(lambda work=work: work(anchor), 1)]
        ratios[label] = median(theirs) / median(ours)
        rows.append((label, f"{median(ours) * 1e3:.3f} ms", f"{median(theirs) * 1e3:.3f} ms", f"{ratios[label]:.2f}x"))
    print(f"{len(paths)} CT slices of 512 x 512, per slice, medians of {RUNS} passes")
    print(table(rows, ("work", "ImageSource.open", "anchor: pydicom.dcmread", "anchor / ours")))
    target = ratios["open + FrameRenderer"]
    print(f"open + FrameRenderer: {target:.2f}x faster (target >= 3x): {'OK' if target >= 3 else 'MISSED'}")

    decoded = pydicom.dcmread(paths[10]).pixel_array.nbytes
    kept_ours, kept_anchor = retained(fast, paths[10]), retained(anchor, paths[10])
    print(f"\nbytes kept per frame while only its renderer is referenced (decoded frame {decoded} bytes)")
    print(table([("ImageSource.open", f"{kept_ours}", f"{kept_ours / decoded:.2f}x"),
                 ("anchor: pydicom.dcmread", f"{kept_anchor}", f"{kept_anchor / decoded:.2f}x")],
                ("route", "bytes kept", "of decoded")))
    print(f"retention {kept_ours / decoded:.2f}x (target <= 1.1x): {'OK' if kept_ours <= 1.1 * decoded else 'MISSED'}")


if __name__ == "__main__":
    main()
