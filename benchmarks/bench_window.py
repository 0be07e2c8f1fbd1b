"""Re-windowing a decoded 512x512 16-bit CT slice: FrameRenderer.render vs a bare numpy.take through a 64 Ki LUT.

The anchor is the cheapest conceivable re-window (the LUT is already built, only the take runs);
FrameRenderer builds a fresh table for every new window, as a mouse drag requires.
Target: ratio at most 1.5x.
"""

from __future__ import annotations

import numpy as np
from _util import PHILIPS, median, require_samples, table, timed

from workstation.core.pixels import FrameRenderer, ImageSource, Window
from workstation.core.pixels.voi import window_to_uint8

RUNS = 9
INNER = 100


def main() -> None:
    require_samples()
    source = ImageSource.open(PHILIPS / "I500")
    renderer = FrameRenderer(source)
    stored = source.stored_frame(0)
    assert stored.shape == (512, 512) and stored.itemsize == 2
    indices = stored.view(np.uint16)
    transform = source.modality_transform(0)
    raw = np.arange(65536, dtype=np.uint16).view(stored.dtype)
    lut = window_to_uint8(transform.apply_values(raw), Window(40, 80))

    windows = [Window(40 + 3 * i, 80 + 5 * i) for i in range(INNER)]
    counter = iter(range(10**9))

    def ours() -> None:
        renderer.render(windows[next(counter) % INNER])

    def anchor() -> None:
        np.take(lut, indices)

    assert np.array_equal(renderer.render(Window(40, 80)), np.take(lut, indices))
    ours_t = timed(ours, RUNS, INNER)
    anchor_t = timed(anchor, RUNS, INNER)
    mo, ma = median(ours_t), median(anchor_t)
    print(f"re-window 512x512 16-bit CT slice, median of {RUNS} runs x {INNER} windows")
    print(
        table(
            [
                ("FrameRenderer.render(new window)", f"{mo * 1e6:.0f} us", f"{min(ours_t) * 1e6:.0f} us"),
                ("numpy.take, prebuilt 64 Ki LUT", f"{ma * 1e6:.0f} us", f"{min(anchor_t) * 1e6:.0f} us"),
            ],
            ("variant", "median/call", "best run"),
        )
    )
    ratio = mo / ma
    print(f"ratio ours/anchor = {ratio:.2f}x (target <= 1.5x): {'OK' if ratio <= 1.5 else 'MISSED'}")


if __name__ == "__main__":
    main()
