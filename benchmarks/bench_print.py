"""Printing a 4x5 film of twenty 512x512 CT slices (the GE sample) on 14x17 in film at 300 dpi to DCMTK's
dcmprscp on loopback, medians of several runs, beside its two parts measured in the same run:

  end to end   print_job: the films planned, each box rendered by the display pipeline at the
               printer's resolution (1016 x 1016 px), the association, N-GET, N-CREATEs, twenty
               N-SETs, N-ACTION, N-DELETEs; target < 3 s.
  rendering    the same film's boxes rendered alone.
  sending      the same job with its film rendered beforehand: the transfer alone.

    .venv/bin/python benchmarks/bench_print.py [--runs 5]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from _util import ROOT, SAMPLES, median, require_samples, table

sys.path.insert(0, str(ROOT))

from tests.peers import PrintSCP, running  # noqa: E402

GE = SAMPLES / "dcm_qa_ct" / "In" / "GE"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    require_samples()
    from workstation.core.model.printer import Printer
    from workstation.core.net import transport
    from workstation.core.net.print_scu import print_films
    from workstation.core.pixels.voi import Window
    from workstation.core.printing import FilmOptions, items_of, planned_films, print_job

    transport.install()
    paths = sorted(GE.glob("*.dcm"), key=lambda p: int(p.stem))[:20]
    items = items_of(map(str, paths), Window(40.0, 400.0))
    options = FilmOptions(display_format="STANDARD\\4,5")
    figures: dict[str, list[float]] = {"end to end": [], "rendering": [], "sending": []}
    with running(PrintSCP(Path(tempfile.mkdtemp(prefix="bench-print-")))) as scp:
        printer = Printer("film", scp.aet, "127.0.0.1", scp.port)
        print_job(printer, "WORKSTATION", items[:1])       # warm: imports, the first association
        for _ in range(args.runs):
            start = time.perf_counter()
            report = print_job(printer, "WORKSTATION", items, options)
            figures["end to end"].append(time.perf_counter() - start)
            assert (report.films, report.images) == (1, 20), report
            start = time.perf_counter()
            films = [plan.render() for plan in planned_films(printer, items, options)]
            figures["rendering"].append(time.perf_counter() - start)
            start = time.perf_counter()
            print_films(printer, "WORKSTATION", films)
            figures["sending"].append(time.perf_counter() - start)
        box = films[0].images[0].shape
    m = {k: median(v) for k, v in figures.items()}
    rows = [
        ("end to end: plan, render, send, print", f"{m['end to end']:.2f} s", "< 3 s", f"{m['end to end'] / 3:.2f}x",
         f"render {m['rendering']:.2f} s + send {m['sending']:.2f} s"),
        ("rendering the 20 boxes", f"{m['rendering']:.2f} s", "", f"{m['rendering'] / m['end to end']:.2f} of it", ""),
        ("sending them (the transfer)", f"{m['sending']:.2f} s", "", f"{m['sending'] / m['end to end']:.2f} of it",
         f"{20 * box[0] * box[1] / 2**20:.0f} MiB of pixels"),
    ]
    print(f"\nmedians of {args.runs} runs; 20 CT slices 512x512 on a 4x5 film, 14INX17IN at 300 dpi, boxes of "
          f"{box[1]} x {box[0]} px, dcmprscp on loopback\n")
    print(table(rows, ("print", "measured", "target", "ratio", "anchor")))


if __name__ == "__main__":
    main()
