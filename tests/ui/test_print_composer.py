"""The film composer as staff use it: Ctrl+P in a viewer opens it with the current image, a range of
the series is added, the preview shows each film at its aspect with the boxes, Print puts the job in
the Transfers panel's queue and DCMTK's dcmprscp stores exactly the boxes the preview was made of."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from PySide6.QtCore import Qt

from workstation.core.model.printer import Printer
from workstation.core.printing import film_page, simulate_density
from workstation.services.transfer_queue import DONE

pytestmark = [pytest.mark.peers, pytest.mark.timeout(180)]
GE = "dcm_qa_ct/In/GE"


def preview_array(widget) -> np.ndarray:
    image = widget.image
    raw = np.frombuffer(image.constBits(), np.uint8).reshape(image.height(), image.bytesPerLine())
    return raw[:, :image.width()].copy()


def test_compose_preview_and_print(qtbot, make_window, print_scp, samples, tmp_path):
    printer = Printer("film", print_scp.aet, "127.0.0.1", print_scp.port, dpi=100)
    window = make_window(printers=[printer])
    with qtbot.waitSignal(window.import_ended, timeout=60000):
        window.import_paths([str(samples / GE)])
    window.open_study(window.cache.cache.studies()[0].StudyInstanceUID)
    qtbot.waitUntil(lambda: window.viewer is not None and window.viewer.viewport.image is not None, timeout=20000)
    viewer = window.viewer
    qtbot.keyClick(viewer.viewport, Qt.Key.Key_P, Qt.KeyboardModifier.ControlModifier)
    composer = window.composer
    assert composer is not None and composer.isVisible()
    assert len(composer.model.items) == 1                                  # the current image
    current = viewer.active_model.current
    assert composer.model.items[0].path == current.path
    composer.model.clear()
    composer.model.add(composer.source.print_range(1, 12, 2))             # images 1, 3, ... 11
    assert len(composer.model.items) == 6
    composer.format_box.setCurrentText("STANDARD\\2,2")
    assert [p.count for p in composer.model.plans()] == [4, 2]
    assert composer.pages.text().startswith("film 1 of 2")
    # the preview: the film page the job sends, with the printer's density range simulated
    plans = composer.model.plans()
    qtbot.waitUntil(lambda: composer.preview.image is not None, timeout=20000)
    expected = simulate_density(film_page(plans[0]), 0.2, 3.0)
    np.testing.assert_array_equal(preview_array(composer.preview), expected)
    assert len(composer.preview.boxes) == 4
    # a drag in the list reorders the boxes: the model follows the list's order
    composer.model.move(5, 0)
    assert composer.model.items[0].path.endswith(plans[1].items[1].path.rsplit("/", 1)[-1])
    composer.model.move(0, 5)
    # Print: into the queue, the window free meanwhile; the printer stores the same boxes
    composer.print_films()
    transfer = composer.last_transfer
    assert transfer.kind == "print" and transfer in window.network.queue.transfers
    qtbot.waitUntil(lambda: transfer.state == DONE, timeout=60000)
    assert transfer.status_text().startswith("2 films, 6 images printed")
    stored = {pydicom.dcmread(p).SOPInstanceUID: pydicom.dcmread(p).pixel_array for p in print_scp.stored_images()}
    prints = sorted(print_scp.stored_prints(), key=lambda p: p.stat().st_mtime_ns)
    assert len(prints) == 2
    for plan, sp_path in zip(plans, prints, strict=True):
        page = film_page(plan)
        sp = pydicom.dcmread(sp_path)
        for box in sp.ImageBoxContentSequence:
            pixels = stored[box.ReferencedImageSequence[0].ReferencedSOPInstanceUID]
            x, y, w, h = plan.layout.boxes[box.ImageBoxPosition - 1]
            top, left = y + (h - pixels.shape[0]) // 2, x + (w - pixels.shape[1]) // 2
            np.testing.assert_array_equal(page[top:top + pixels.shape[0], left:left + pixels.shape[1]], pixels)
    # Print to file: the same two films as a PDF, on a worker
    pdf = tmp_path / "films.pdf"
    job = composer.print_to_file(str(pdf))
    with qtbot.waitSignal(job.succeeded, timeout=30000):
        pass
    assert pdf.read_bytes().startswith(b"%PDF") and pdf.read_bytes().count(b"/Type /Page") - \
        pdf.read_bytes().count(b"/Type /Pages") == 2


def test_a_series_dragged_from_the_strip_fills_boxes_and_options_reach_the_films(qtbot, make_window, samples):
    from PySide6.QtCore import QByteArray, QMimeData, QPoint
    from PySide6.QtGui import QDropEvent

    printer = Printer("film", "NOWHERE", "127.0.0.1", 9, dpi=100)
    window = make_window(printers=[printer])
    with qtbot.waitSignal(window.import_ended, timeout=60000):
        window.import_paths([str(samples / GE)])
    window.open_study(window.cache.cache.studies()[0].StudyInstanceUID)
    qtbot.waitUntil(lambda: window.viewer is not None and window.viewer.viewport.image is not None, timeout=20000)
    composer = window.open_composer(window.viewer)
    composer.model.clear()
    ds = window.viewer.active_model.display_set
    mime = QMimeData()
    mime.setData("application/x-workstation-display-set", QByteArray(f"{ds.StudyInstanceUID}\n{ds.key}".encode()))
    drop = QDropEvent(QPoint(10, 10).toPointF(), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                      Qt.KeyboardModifier.NoModifier)
    composer.list.dropEvent(drop)
    assert len(composer.model.items) == len(ds.frames) == 28
    assert composer.list.item(0).text().startswith("1. Se ")          # listed by series and image number
    assert [p.display_format for p in composer.model.plans()] == ["STANDARD\\5,6"]   # the smallest that fits
    composer.annotate.setChecked(True)
    assert all(p.annotate for p in composer.model.plans())
    # the printer does not answer: its status says so in words, and the window is not held up
    qtbot.waitUntil(lambda: "refused" in composer.printer_state.text() or "answer" in composer.printer_state.text(),
                    timeout=20000)


def test_a_print_job_in_the_queue_shows_where_it_is_the_printers_events_and_can_be_retried(qtbot, make_window, samples):
    from tests.peers import running
    from tests.print_peer import FakePrinter
    from workstation.core.printing import FilmOptions, items_of
    from workstation.services.transfer_queue import FAILED

    window = make_window()
    paths = sorted((samples / GE).glob("*.dcm"))[:8]
    with running(FakePrinter(color=False, send_event_reports=True, fail_on_set=7)) as peer:
        printer = Printer("grey", peer.aet, "127.0.0.1", peer.port, dpi=100)
        queue = window.network.queue
        failed = queue.print(printer, items_of(map(str, paths)), FilmOptions(display_format="STANDARD\\2,2"))
        qtbot.waitUntil(lambda: failed.finished, timeout=30000)
        assert failed.state == FAILED and failed.error.startswith("film 2 of 2, box 3")
        assert failed.printed_films == 1 and failed.events == ["printer NORMAL"]
        retried = failed.retry()          # the first film was printed: only the second is sent again
        qtbot.waitUntil(lambda: retried.finished, timeout=30000)
        assert retried.state == DONE and retried.status_text() == "1 film, 4 images printed: printer NORMAL"
        assert [f["printed"] for f in peer.films] == [True, False, True] and peer.open_sessions == []
        sent_again = [b["array"] for b in peer.films[2]["boxes"]]
        first_time = [b["array"] for b in peer.films[1]["boxes"]]
        np.testing.assert_array_equal(sent_again[0], first_time[0])   # film 2's first box, now printed
