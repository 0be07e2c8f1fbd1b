"""The study browser over a real Orthanc: search, expand, retrieve, open, cancel, send, dead nodes.

The window is built as the application builds it (`make_window` in conftest), with settings written
into the test's home first: our Storage SCP on the port Orthanc knows for WORKSTATION, and the node(s)
to search.
"""

from __future__ import annotations

import socket

import pytest
from PySide6.QtCore import QTimer

from tests.peers import free_port, silent_peer
from tests.ui.conftest import pacs_node
from workstation.core.cache import QueryFilter
from workstation.core.model import Study
from workstation.core.model.node import Node
from workstation.core.settings import load_settings
from workstation.services.transfer_queue import CANCELLED, DONE, FAILED
from workstation.ui.browser.study_table import STUDY_ROLE

pytestmark = pytest.mark.timeout(180)

GE_STUDY_PATIENT = "QMNx85rKkkg"   # one CT series of 28 images
PHANTOM = "PLASTIC"                # the 141-image study: a localizer and a 140-slice series


def search_node(qtbot, browser, name: str, expect_rows: int | None = None):
    browser.search_bar.set_source(name)
    browser.search()
    job = browser._search_job
    with qtbot.waitSignal(job.ended, timeout=30000):
        pass
    if expect_rows is not None:
        assert browser.model.rowCount() == expect_rows
    return job


def select_study(qtbot, browser, predicate) -> int:
    for row in range(browser.proxy.rowCount()):
        study = browser.proxy.index(row, 0).data(STUDY_ROLE)
        if predicate(study):
            browser.table.setCurrentIndex(browser.proxy.index(row, 0))
            return row
    raise AssertionError("no such study in the table")


def where(browser, study_uid: str) -> str:
    return browser.model.where.get(study_uid, "")


def test_search_streams_rows_then_expand_retrieve_and_open(qtbot, make_window, orthanc):
    win = make_window(orthanc, [pacs_node(orthanc)])
    browser = win.browser
    sources = browser.search_bar.source_box
    assert [sources.itemText(i) for i in range(sources.count())] == ["Local cache", "pacs"]

    events = []
    browser.search_bar.set_source("pacs")
    browser.search()
    job = browser._search_job
    job.partial.connect(lambda batch: events.append(("rows", browser.model.rowCount())))
    job.succeeded.connect(lambda outcome: events.append(("done", browser.model.rowCount())))
    with qtbot.waitSignal(job.ended, timeout=30000):
        pass
    assert events[0][0] == "rows" and events[0][1] > 0          # rows were on screen before the search ended
    assert events[-1] == ("done", 9) and browser.model.rowCount() == 9
    assert browser.search_bar.count_label.text() == "9 studies" and not browser.search_bar.cap_label.isVisible()
    assert set(browser.model.where.values()) == {"remote"}

    # Expand (select) the phantom study: its series are listed, not yet local.
    select_study(qtbot, browser, lambda s: s.PatientID == PHANTOM and s.NumberOfStudyRelatedInstances == 141)
    study = browser.current_study()
    qtbot.waitUntil(lambda: browser.series_table.rowCount() == 2, timeout=15000)
    counts = sorted(int(browser.series_table.item(r, 4).text()) for r in range(2))
    assert counts == [1, 140]
    assert {browser.series_table.item(r, 5).text() for r in range(2)} == {"remote"}
    assert browser.retrieve_button.isEnabled() and not browser.delete_button.isEnabled()
    # Each remote series gets a preview, its middle image fetched into memory: the cache stays empty.
    qtbot.waitUntil(lambda: browser.series_table.thumbnail_count() == 2, timeout=20000)
    assert win.network.cache.studies(QueryFilter(StudyInstanceUID=study.StudyInstanceUID)) == []
    assert where(browser, study.StudyInstanceUID) == "remote"

    # Retrieve: the transfer's progress bar reaches the end and the study turns to "both".
    browser.retrieve_button.click()
    transfer = win.network.queue.transfers[-1]
    bar, cancel, retry = win.transfers.widgets(transfer)
    qtbot.waitUntil(lambda: transfer.finished, timeout=90000)
    assert transfer.state == DONE, transfer.error
    assert (bar.value(), bar.maximum()) == (141, 141)
    assert transfer.bytes > 70_000_000 and transfer.speed > 0
    assert not cancel.isEnabled() and not retry.isEnabled()
    qtbot.waitUntil(lambda: where(browser, study.StudyInstanceUID) == "both", timeout=10000)
    # The series list follows, with thumbnails rendered from the cache.
    qtbot.waitUntil(lambda: browser.series_table.thumbnail_count() == 2, timeout=20000)
    qtbot.waitUntil(lambda: {browser.series_table.item(r, 5).text() for r in range(2)} == {"both"}, timeout=10000)
    assert browser.delete_button.isEnabled() and not browser.retrieve_button.isEnabled()

    # Open: the study is local now, so the viewer shows a series of it at once.
    with qtbot.waitSignal(win.display_set_shown, timeout=20000) as shown:
        browser.open_button.click()
    display_set = shown.args[0]
    assert display_set.study.StudyInstanceUID == study.StudyInstanceUID
    assert len(display_set) in (1, 140)
    assert win.tabs.currentWidget() is win.viewer


def test_open_a_remote_study_shows_images_while_they_arrive(qtbot, make_window, orthanc):
    win = make_window(orthanc, [pacs_node(orthanc)], retrieve_associations=1)
    browser = win.browser
    search_node(qtbot, browser, "pacs", expect_rows=9)
    select_study(qtbot, browser, lambda s: s.PatientID == GE_STUDY_PATIENT)
    assert where(browser, browser.current_study().StudyInstanceUID) == "remote"
    shown_sets = []
    win.display_set_shown.connect(shown_sets.append)
    browser.open_button.click()
    transfer = win.network.queue.transfers[-1]
    qtbot.waitUntil(lambda: bool(shown_sets) or "Could not open" in win.status_label.text(), timeout=30000)
    assert shown_sets, (transfer.state, transfer.error, transfer.done, win.status_label.text())
    shown = type("Shown", (), {"args": shown_sets})
    first = shown.args[0]
    assert first.study.PatientID == GE_STUDY_PATIENT and len(first) >= 1
    viewport = win.viewer.viewport
    qtbot.waitUntil(lambda: viewport.image is not None, timeout=20000)
    # The display set grows to the whole series as the rest arrives.
    qtbot.waitUntil(lambda: transfer.finished, timeout=60000)
    assert transfer.state == DONE, transfer.error
    qtbot.waitUntil(lambda: len(viewport.display_set) == 28, timeout=10000)
    assert len(viewport.model.frames) == 28
    strip = win.viewer.strip
    qtbot.waitUntil(lambda: strip.expected.get(first.SeriesInstanceUID) == 28, timeout=10000)   # the node's count
    assert any("28 images" in strip.item(i).text() for i in range(strip.count()))
    assert viewport.model.arriving is None                    # all here: no "(arriving: n of 28)" any more


def test_cancel_a_retrieval_then_retry_fetches_the_rest(qtbot, make_window, orthanc):
    win = make_window(orthanc, [pacs_node(orthanc)], retrieve_associations=1)
    browser = win.browser
    search_node(qtbot, browser, "pacs")
    select_study(qtbot, browser, lambda s: s.PatientID == PHANTOM and s.NumberOfStudyRelatedInstances == 141)
    study = browser.current_study()
    transfer = browser.retrieve_selected()
    _bar, cancel, retry = win.transfers.widgets(transfer)
    qtbot.waitUntil(lambda: transfer.done >= 5, timeout=30000)
    assert cancel.isEnabled()
    cancel.click()
    qtbot.waitUntil(lambda: transfer.finished, timeout=30000)
    assert transfer.state == CANCELLED
    assert 5 <= transfer.report.completed < 141
    assert transfer.status_text().startswith("cancelled after")
    assert transfer.done == transfer.report.completed and transfer.bytes > 0   # not "25 / 140 (0 B)"
    assert "(0 B)" not in win.transfers.widgets(transfer)[0].text()
    qtbot.waitUntil(lambda: where(browser, study.StudyInstanceUID).startswith("both ("), timeout=10000)
    assert win.network.cache.verify().ok

    assert retry.isEnabled()
    retry.click()
    again = transfer.retried_by
    assert again is not None and not retry.isEnabled()
    qtbot.waitUntil(lambda: again.finished, timeout=90000)
    assert again.state == DONE, again.error
    assert again.report.already_local == transfer.report.completed
    assert again.report.completed == 141 - transfer.report.completed
    qtbot.waitUntil(lambda: where(browser, study.StudyInstanceUID) == "both", timeout=10000)


def test_a_capped_search_says_so(qtbot, make_window, orthanc):
    win = make_window(orthanc, [pacs_node(orthanc)], find_limit=4)
    search_node(qtbot, win.browser, "pacs", expect_rows=4)
    assert win.browser.search_bar.cap_label.isVisible()
    assert "Only the first 4 studies" in win.browser.search_bar.cap_label.text()


def test_a_closed_port_gives_a_worded_error(qtbot, make_window):
    dead = Node("dead", "DEAD", "127.0.0.1", free_port(), connect_timeout=2, network_timeout=5)
    win = make_window(None, [dead])
    search_node(qtbot, win.browser, "dead", expect_rows=0)
    assert win.browser.search_bar.error_label.isVisible()
    assert "refused the connection" in win.browser.search_bar.error_label.text()
    assert "refused the connection" in win.status_label.text()


def test_an_unknown_ae_title_or_host_is_said_in_the_browser(qtbot, make_window, orthanc, strict_orthanc):
    far = Node("far", "FAR", "no-such-host.invalid", 104, connect_timeout=2, network_timeout=5)
    win = make_window(orthanc, [pacs_node(orthanc), pacs_node(strict_orthanc, "strict"), far], ae_title="STRANGER")
    error = win.browser.search_bar.error_label
    search_node(qtbot, win.browser, "strict", expect_rows=0)
    assert error.isVisible() and "rejected the association: Calling AE title not recognised" in error.text()
    assert "'STRANGER'" in error.text() and "'STRANGER'" in win.status_label.text()
    search_node(qtbot, win.browser, "pacs", expect_rows=0)
    assert "aborted the association instead of answering the search" in error.text()
    assert "did not answer" not in error.text()
    search_node(qtbot, win.browser, "far", expect_rows=0)
    assert error.text().endswith(": the host name 'no-such-host.invalid' of node far could not be found: "
                                 "check the node's host")
    assert "Errno" not in error.text() and win.status_label.text() == error.text()


@pytest.fixture
def silent_node():
    """A node that accepts the TCP connection and never says a word."""
    with silent_peer() as port:
        yield Node("silent", "SILENT", "127.0.0.1", port, connect_timeout=1, network_timeout=3)


def test_a_node_that_never_answers_does_not_freeze_the_window(qtbot, make_window, silent_node):
    """How long the event loop stalls meanwhile is measured in benchmarks/bench_silent_node.py."""
    win = make_window(None, [silent_node])
    browser = win.browser
    ticks_while_searching = []
    timer = QTimer(interval=20)
    timer.timeout.connect(lambda: ticks_while_searching.append(job.running))
    browser.search_bar.set_source("silent")
    browser.search()
    job = browser._search_job
    assert job is not None and job.running            # search() returned with the search on a worker
    timer.start()
    assert browser.search_bar.stop_button.isEnabled()
    # The user can still type while the node is silent.
    qtbot.keyClicks(browser.search_bar.name_edit, "DOE")
    assert browser.search_bar.name_edit.text() == "DOE"
    with qtbot.waitSignal(job.ended, timeout=30000):
        pass
    timer.stop()
    assert any(ticks_while_searching)                 # the event loop ran timers while the node was silent
    assert browser.search_bar.error_label.isVisible()
    assert "did not answer" in browser.search_bar.error_label.text()


def test_leaving_a_node_mid_search_forgets_its_late_answers(qtbot, make_window, silent_node):
    win = make_window(None, [silent_node])
    browser = win.browser
    statuses = []
    browser.status_changed.connect(statuses.append)
    browser.search_bar.set_source("silent")
    browser.search()
    search = browser._search_job
    browser.series_table.list_series(Study("1.2.3.4"), silent_node)
    listing = browser.series_table._job
    browser.search_bar.set_source("Local cache")
    assert not browser.search_bar.stop_button.isEnabled()
    qtbot.waitUntil(lambda: not search.running and not listing.running, timeout=30000)
    assert browser.search_bar.count_label.text() == "0 studies"
    assert not browser.search_bar.error_label.isVisible()
    assert browser.series_table.rowCount() == 0
    assert not any("silent" in s for s in statuses), statuses


def test_send_a_local_study_to_a_node(qtbot, make_window, orthanc, fresh_orthanc, samples):
    fresh = pacs_node(fresh_orthanc, "fresh")
    win = make_window(orthanc, [pacs_node(orthanc), fresh])
    with qtbot.waitSignal(win.import_ended, timeout=60000):
        win.import_paths([str(samples / "dcm_qa_ct/In/GE")])
    browser = win.browser
    qtbot.waitUntil(lambda: browser.model.rowCount() == 1, timeout=10000)
    select_study(qtbot, browser, lambda s: True)
    assert browser.send_button.isEnabled()
    browser._fill_send_menu()
    action = next(a for a in browser.send_menu.actions() if a.text() == "fresh")
    action.trigger()
    transfer = win.network.queue.transfers[-1]
    assert transfer.kind == "send" and transfer.node == fresh
    qtbot.waitUntil(lambda: transfer.finished, timeout=60000)
    assert transfer.state == DONE, transfer.error
    assert (transfer.report.sent, transfer.report.failed) == (28, 0)
    bar, _cancel, _retry = win.transfers.widgets(transfer)
    assert (bar.value(), bar.maximum()) == (28, 28)
    assert fresh_orthanc.instance_count() == 28
    # Searching that node now finds it there, and "where it is" says both.
    search_node(qtbot, browser, "fresh", expect_rows=1)
    assert list(browser.model.where.values()) == ["both"]


def test_a_send_to_a_dead_node_fails_in_words_and_can_be_retried(qtbot, make_window, samples):
    dead = Node("dead", "DEAD", "127.0.0.1", free_port(), connect_timeout=2, network_timeout=5)
    win = make_window(None, [dead])
    with qtbot.waitSignal(win.import_ended, timeout=60000):
        win.import_paths([str(samples / "dcm_qa_ct/In/GE")])
    qtbot.waitUntil(lambda: win.browser.model.rowCount() == 1, timeout=10000)
    select_study(qtbot, win.browser, lambda s: True)
    transfer = win.browser.send_selected(dead)
    with qtbot.waitSignal(transfer.ended, timeout=30000):   # finished turns true before the panel hears `changed`
        pass
    assert transfer.state == FAILED and "refused the connection" in transfer.error
    row = win.transfers.rows[transfer]
    assert "refused the connection" in win.transfers.table.item(row, 4).text()
    _bar, cancel, retry = win.transfers.widgets(transfer)
    assert retry.isEnabled() and not cancel.isEnabled()
    assert "failed" in win.status_label.text()


def test_nodes_dialog_adds_tests_and_saves_a_node_and_moves_the_storage_scp(qtbot, make_window, orthanc,
                                                                           workstation_home):
    win = make_window(None, [])
    network = win.network
    dialog = win.edit_nodes()
    dialog.new_node()
    dialog.name_edit.setText("orthanc")
    dialog.aet_edit.setText(orthanc.aet)
    dialog.host_edit.setText("127.0.0.1")
    dialog.port_spin.setValue(orthanc.port)
    job = dialog.test_node()
    with qtbot.waitSignal(job.ended, timeout=20000):
        pass
    assert "orthanc answered in" in dialog.test_label.text()
    dialog.port_spin.setValue(free_port())   # a wrong port: the test says so in words
    job = dialog.test_node()
    with qtbot.waitSignal(job.ended, timeout=20000):
        pass
    assert "refused the connection" in dialog.test_label.text()
    dialog.port_spin.setValue(orthanc.port)
    assert dialog.associations_spin.value() == 4
    dialog.associations_spin.setValue(2)
    assert dialog.save_node() is not None
    dialog.aet_edit.setText("")
    assert dialog.save_node() is None and "AE title is empty" in dialog.error_label.text()
    new_port = free_port()
    dialog.own_port_spin.setValue(new_port)
    dialog.accept()
    saved = load_settings(workstation_home)
    assert [(n.name, n.max_associations) for n in saved.nodes] == [("orthanc", 2)] and saved.port == new_port
    sources = win.browser.search_bar.source_box
    assert "orthanc" in [sources.itemText(i) for i in range(sources.count())]
    qtbot.waitUntil(lambda: f"port {new_port}" in win.server_label.text(), timeout=10000)
    assert network.storage.server is not None and network.storage.server.port == new_port


def test_a_busy_storage_port_is_reported_and_the_window_keeps_working(qtbot, make_window, orthanc):
    busy = socket.socket()
    busy.bind(("0.0.0.0", 0))
    busy.listen(1)
    try:
        win = make_window(None, [pacs_node(orthanc)], port=busy.getsockname()[1])
        qtbot.waitUntil(lambda: "Not receiving images" in win.server_label.text(), timeout=10000)
        assert "cannot listen on port" in win.server_label.text()
        assert "Tools > Nodes and network" in win.server_label.text()
        assert "workstation config" not in win.server_label.text()   # the window's way out, not the CLI's
        search_node(qtbot, win.browser, "pacs", expect_rows=9)   # searching still works
    finally:
        busy.close()


def test_the_series_list_follows_arrivals_without_asking_the_node_again(qtbot, make_window, orthanc, samples):
    """While a study arrives, each series' Where counts its local images; the node is not asked for
    the series again (re-asking on every arrival kept being superseded on a busy machine)."""
    win = make_window(orthanc, [pacs_node(orthanc)])
    browser = win.browser
    search_node(qtbot, browser, "pacs")
    select_study(qtbot, browser, lambda s: s.PatientID == PHANTOM and s.NumberOfStudyRelatedInstances == 141)
    qtbot.waitUntil(lambda: browser.series_table.rowCount() == 2, timeout=15000)
    asked = []
    original = win.network.queries.series
    win.network.queries.series = lambda *args: asked.append(args) or original(*args)
    slices = sorted(p for p in (samples / "dcm_qa_ct/In/Philips/S21570/S2020").iterdir())[:10]
    with qtbot.waitSignal(win.import_ended, timeout=60000):
        win.import_paths([str(p) for p in slices])

    def wheres() -> set[str]:
        return {browser.series_table.item(r, 5).text() for r in range(browser.series_table.rowCount())}

    qtbot.waitUntil(lambda: wheres() == {"remote", "both (10/140 local)"}, timeout=10000)
    assert asked == []
    qtbot.waitUntil(lambda: where(browser, browser.current_study().StudyInstanceUID) == "both (10/141 local)",
                    timeout=10000)


def test_a_remote_studys_prior_is_listed_from_the_node_and_opened_beside_it(qtbot, make_window, orthanc):
    """A002304 has two studies on the PACS and none in the cache: opening the newer lists the older from
    the node, and opening that prior retrieves it and shows it beside the current study."""
    win = make_window(orthanc, [pacs_node(orthanc)])
    browser = win.browser
    search_node(qtbot, browser, "pacs")
    select_study(qtbot, browser, lambda s: s.PatientID == "A002304" and s.StudyDate.startswith("1901"))
    current = browser.current_study()
    with qtbot.waitSignal(win.display_set_shown, timeout=30000):
        browser.open_button.click()
    viewer = win.viewer
    qtbot.waitUntil(lambda: any(s.StudyDate.startswith("1900") for s in viewer.others), timeout=30000)
    (prior,) = viewer.others
    assert not win.cache.cache.studies(QueryFilter(StudyInstanceUID=prior.StudyInstanceUID))   # only on the node
    strip = viewer.strip
    assert any("Other studies of this patient" in strip.item(i).text() for i in range(strip.count()))
    win.open_prior(viewer, prior)
    qtbot.waitUntil(lambda: len(viewer.session.studies) == 2, timeout=60000)
    shown = {c.model.display_set.StudyInstanceUID for c in viewer.grid.cells if c.model.display_set is not None}
    assert shown == {current.StudyInstanceUID, prior.StudyInstanceUID}
    assert win.cache.cache.studies(QueryFilter(StudyInstanceUID=prior.StudyInstanceUID))      # retrieved
