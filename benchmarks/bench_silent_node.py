"""The window while a node never answers: how long search() holds the GUI thread, and how long the event
loop stalls while the search waits, beside an answering Orthanc and an idle window (the anchors).

The window is built as the application builds it (Qt offscreen) with two nodes: an Orthanc of our own
(empty, TCP_NODELAY=1) and a socket that accepts the connection and never says a word (connect timeout
1 s, network timeout 3 s, as in tests/ui/test_browser_remote.py). A 20 ms timer records the event loop's
ticks; the longest gap between ticks is the longest the user could not interact.

    .venv/bin/python benchmarks/bench_silent_node.py [--runs 3]
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from _util import ROOT, median, table  # noqa: E402

sys.path.insert(0, str(ROOT))

from tests.peers import WORKSTATION_AET, OrthancPeer, free_port, running, silent_peer  # noqa: E402


def ticking(app, until, seconds: float) -> float:
    """Run the event loop until `until()` (or `seconds` pass); the longest gap between 20 ms timer ticks."""
    from PySide6.QtCore import QTimer

    ticks = [time.monotonic()]
    timer = QTimer(interval=20)
    timer.timeout.connect(lambda: ticks.append(time.monotonic()))
    timer.start()
    deadline = ticks[0] + seconds
    while not until() and time.monotonic() < deadline:
        app.processEvents()
        time.sleep(0.002)
    timer.stop()
    ticks.append(time.monotonic())
    return max(b - a for a, b in zip(ticks, ticks[1:], strict=False))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    from PySide6.QtWidgets import QApplication

    from workstation.app import build, shutdown
    from workstation.core.model.node import Node
    from workstation.core.settings import Settings, save_settings

    app = QApplication.instance() or QApplication([])
    logging.disable(logging.ERROR)  # the silent node's search fails by design: no traceback per run
    with silent_peer() as silent_port, tempfile.TemporaryDirectory() as tmp, \
            running(OrthancPeer(Path(tmp) / "orthanc")) as orthanc:
        silent = Node("silent", "SILENT", "127.0.0.1", silent_port, connect_timeout=1, network_timeout=3)
        pacs = Node("pacs", orthanc.aet, "127.0.0.1", orthanc.port, connect_timeout=3, network_timeout=10)
        save_settings(Path(tmp), Settings(ae_title=WORKSTATION_AET, port=free_port(), nodes=[silent, pacs]))
        window, services = build(Path(tmp))
        window.show()
        browser = window.browser
        hand_off: dict[str, list[float]] = {"silent": [], "pacs": []}
        stall: dict[str, list[float]] = {"silent": [], "idle": []}
        try:
            ticking(app, lambda: False, 1.0)  # settle after start-up
            for _ in range(args.runs):
                for name in ("pacs", "silent"):
                    browser.search_bar.set_source(name)
                    started = time.monotonic()
                    browser.search()
                    hand_off[name].append(time.monotonic() - started)
                    job = browser._search_job
                    gap = ticking(app, lambda job=job: not job.running, 30)
                    if name == "silent":
                        stall["silent"].append(gap)
                        stall["idle"].append(ticking(app, lambda: False, 3.0))
        finally:
            window.close()
            shutdown(services)
    ms = lambda values: f"{median(values) * 1000:.3g} ms"  # noqa: E731
    rows = [
        ("search() returns, silent node", ms(hand_off["silent"]), "answering Orthanc", ms(hand_off["pacs"]),
         f"{median(hand_off['silent']) / median(hand_off['pacs']):.2f}"),
        ("longest event-loop gap, silent search", ms(stall["silent"]), "idle window, 3 s", ms(stall["idle"]),
         f"{median(stall['silent']) / median(stall['idle']):.2f}"),
    ]
    print(f"medians of {args.runs} runs")
    print(table(rows, ("ours", "median", "anchor", "median", "ours / anchor")))


if __name__ == "__main__":
    main()
