"""Printing a 4x5 film of twenty 512x512 CT slices (the GE sample) on 14x17 in film at 300 dpi to DCMTK's
dcmprscp on loopback, medians of several runs, beside its two parts measured in the same run:

  end to end   print_job: the films planned, each box rendered by the display pipeline at the
               printer's resolution (1016 x 1016 px), the association, N-GET, N-CREATEs, twenty
               N-SETs, N-ACTION, N-DELETEs; target < 3 s.
  rendering    the same film's boxes rendered alone.
  sending      the same job with its film rendered beforehand: the transfer alone.
  window       the same job from the window's print queue (Qt offscreen): from Print to the
               transfer done, and the longest the event loop went without serving a 5 ms timer
               meanwhile (the window's responsiveness; a frame at 60 Hz is 17 ms).

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


def window_runs(printer, items, options, runs: int) -> tuple[list[float], list[float]]:
    """The job through the window's print queue; the event loop's longest gap while it runs."""
    import os
    import shutil

    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    from workstation.app import build, shutdown
    from workstation.core.settings import Settings, save_settings
    from workstation.services.transfer_queue import DONE

    app = QApplication.instance() or QApplication([])
    home = Path(tempfile.mkdtemp(prefix="bench-print-home-"))
    from tests.peers import free_port

    save_settings(home, Settings(port=free_port(), printers=[printer]))
    window, services = build(home)
    window.show()
    totals, stalls = [], []
    try:
        for _ in range(runs):
            ticks: list[float] = []
            timer = QTimer()
            timer.setInterval(5)
            timer.timeout.connect(lambda t=ticks: t.append(time.perf_counter()))
            timer.start()
            start = time.perf_counter()
            transfer = window.network.queue.print(printer, items, options)
            while not transfer.finished:
                app.processEvents()
                time.sleep(0.001)
            totals.append(time.perf_counter() - start)
            timer.stop()
            assert transfer.state == DONE, transfer.status_text()
            gaps = [b - a for a, b in zip(ticks, ticks[1:], strict=False)]
            stalls.append(max(gaps) if gaps else 0.0)
    finally:
        window.close()
        shutdown(services)
        shutil.rmtree(home, ignore_errors=True)
    return totals, stalls


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
        figures["window"], figures["stall"] = window_runs(printer, items, options, args.runs)
    m = {k: median(v) for k, v in figures.items()}
    rows = [
        ("end to end: plan, render, send, print", f"{m['end to end']:.2f} s", "< 3 s", f"{m['end to end'] / 3:.2f}x",
         f"render {m['rendering']:.2f} s + send {m['sending']:.2f} s"),
        ("rendering the 20 boxes", f"{m['rendering']:.2f} s", "", f"{m['rendering'] / m['end to end']:.2f} of it", ""),
        ("sending them (the transfer)", f"{m['sending']:.2f} s", "", f"{m['sending'] / m['end to end']:.2f} of it",
         f"{20 * box[0] * box[1] / 2**20:.0f} MiB of pixels"),
        ("from the window's print queue", f"{m['window']:.2f} s", "< 3 s", f"{m['window'] / 3:.2f}x", ""),
        ("longest event-loop stall meanwhile", f"{m['stall'] * 1000:.0f} ms", "", "",
         "a 60 Hz frame: 17 ms"),
    ]
    print(f"\nmedians of {args.runs} runs; 20 CT slices 512x512 on a 4x5 film, 14INX17IN at 300 dpi, boxes of "
          f"{box[1]} x {box[0]} px, dcmprscp on loopback\n")
    print(table(rows, ("print", "measured", "target", "ratio", "anchor")))


if __name__ == "__main__":
    main()
