"""Refusing a header that claims an impossible image, beside opening a real one: medians, side by side.

Ours: ImageSource.open on orthanc_tests' 2026-05-26-oob-monochrome-{46341,65535}.dcm (Rows x Columns
claim 4-8 GB of pixel data) until its PixelDataError; the anchor is ImageSource.open of one Philips
CT slice (512 x 512, header parsed, no pixel data decoded). The refusal must not cost more than a
normal open: it is decided from the header before anything is allocated
(tests/core/test_pixels.py checks that in words and in traced memory).

    .venv/bin/python benchmarks/bench_header_checks.py [--runs 30]
"""

from __future__ import annotations

import argparse

from _util import PHILIPS, SAMPLES, median, require_samples, table, timed

from workstation.core.pixels import ImageSource, PixelDataError


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    require_samples()
    normal = PHILIPS / "I10"
    anchor = timed(lambda: ImageSource.open(normal), args.runs)
    rows = []
    for size in (46341, 65535):
        path = SAMPLES / "orthanc_tests" / "Database" / f"2026-05-26-oob-monochrome-{size}.dcm"

        def refuse(path=path) -> None:
            try:
                ImageSource.open(path)
            except PixelDataError:
                return
            raise RuntimeError(f"{path.name} was not refused")

        ours = timed(refuse, args.runs)
        rows.append((f"refuse {size} x {size}", f"{median(ours) * 1000:.3g} ms", "open I10 (512 x 512)",
                     f"{median(anchor) * 1000:.3g} ms", f"{median(ours) / median(anchor):.2f}"))
    print(f"ImageSource.open, medians of {args.runs} runs")
    print(table(rows, ("ours", "median", "anchor", "median", "ours / anchor")))


if __name__ == "__main__":
    main()
