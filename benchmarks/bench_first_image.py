"""The first image of a remote study on screen while the rest is still arriving, in the real window.

An Orthanc of our own (TCP_NODELAY=1) holds the 141-image phantom study. For each run, a fresh
workstation home, the window built as the application builds it (Qt offscreen), the node
searched, the study selected and Open clicked: the retrieval starts and the viewer opens on the
first images to arrive. Measured, from the monotonic clock shared by the worker processes:
  arrival   the first instance's C-STORE reaching the workstation (the worker's handler),
  commit    that instance committed to the cache,
  shown     the viewport holding the rendered first frame (its pixmap ready to paint),
and how many of the 141 instances had arrived by then. Target: shown - arrival < 1 s.
The anchor is the retrieval itself: the time to the last instance, in the same run.

    .venv/bin/python benchmarks/bench_first_image.py [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from _util import ROOT, SAMPLES, median, require_samples, table, wait  # noqa: E402

sys.path.insert(0, str(ROOT))

from tests.peers import WORKSTATION_AET, OrthancPeer, running  # noqa: E402

STUDY = SAMPLES / "dcm_qa_ct" / "In" / "Philips" / "S21570"


def one_run(app, orthanc: OrthancPeer, home: Path) -> dict[str, float]:
    from PySide6.QtCore import QCoreApplication

    from workstation.app import build, shutdown
    from workstation.core.model.node import Node
    from workstation.core.net import retrieve as retrieve_module
    from workstation.core.settings import Settings, save_settings
    from workstation.ui.browser.study_table import STUDY_ROLE
    from workstation.ui.viewer.viewport import ViewportWidget as Viewport

    marks: dict[str, float] = {}
    arrived: list[float] = []
    original_stored = retrieve_module._Tally.stored
    original_show = Viewport._refresh_image

    def stored(self, sop, size, when=None):
        if when is not None and not arrived:
            arrived.append(when)
            marks["commit"] = time.monotonic()
        return original_stored(self, sop, size, when)

    def show(self):
        original_show(self)
        if "shown" not in marks and self.image is not None:
            marks["shown"] = time.monotonic()
            marks["count"] = len(self.display_set) if self.display_set is not None else 0

    retrieve_module._Tally.stored = stored
    Viewport._refresh_image = show
    node = Node("pacs", orthanc.aet, "127.0.0.1", orthanc.port, connect_timeout=3, network_timeout=30)
    save_settings(home, Settings(ae_title=WORKSTATION_AET, port=orthanc.workstation_port, nodes=[node]))
    window, services = build(home)
    try:
        window.show()
        browser = window.browser
        browser.search_bar.set_source("pacs")
        browser.search()
        wait(app, lambda: browser._search_job is not None and not browser._search_job.running, 30)
        for row in range(browser.proxy.rowCount()):
            study = browser.proxy.index(row, 0).data(STUDY_ROLE)
            if study.NumberOfStudyRelatedInstances == 141:
                browser.table.setCurrentIndex(browser.proxy.index(row, 0))
        started = time.monotonic()
        browser.open_button.click()
        transfer = window.network.queue.transfers[-1]
        wait(app, lambda: "shown" in marks and transfer.finished, 60)
        marks["done"] = transfer.report.seconds if transfer.report else time.monotonic() - started
        marks["arrival"] = arrived[0]
        QCoreApplication.processEvents()
        return marks
    finally:
        retrieve_module._Tally.stored = original_stored
        Viewport._refresh_image = original_show
        window.close()
        shutdown(services)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    require_samples()
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication([])
    work = Path(tempfile.mkdtemp(prefix="bench-first-image-"))
    try:
        with running(OrthancPeer(work / "orthanc")) as orthanc:
            orthanc.upload(p for p in sorted(STUDY.rglob("*")) if p.is_file())
            runs = []
            for i in range(args.runs + 1):
                marks = one_run(app, orthanc, work / f"home{i}")
                if i:   # the first run starts the worker processes; the GUI starts them after start-up
                    runs.append(marks)
            rows = [
                ("arrival -> commit", f"{median([m['commit'] - m['arrival'] for m in runs]) * 1000:.0f} ms"),
                ("arrival -> on screen", f"{median([m['shown'] - m['arrival'] for m in runs]) * 1000:.0f} ms"),
                ("worst arrival -> on screen", f"{max(m['shown'] - m['arrival'] for m in runs) * 1000:.0f} ms"),
                ("images in the viewer then", f"{median([m['count'] for m in runs]):.0f} of 141"),
                ("whole retrieval (anchor)", f"{median([m['done'] for m in runs]):.3f} s"),
            ]
            print(f"\nmedians of {args.runs} runs (target: on screen < 1000 ms after the first arrival)\n")
            print(table(rows, ("first image of a remote study", "value")))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
