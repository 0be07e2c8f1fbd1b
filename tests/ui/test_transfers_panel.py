"""The Transfers panel and the status line with real transfers: a study Orthanc pushes into our Storage
SCP is counted while it arrives and summed when its association ends; finished rows can be cleared
(never running or waiting ones); an empty panel takes no room from the images."""

from __future__ import annotations

import pytest

from tests.peers import WORKSTATION_AET, free_port, silent_peer
from tests.ui.conftest import pacs_node
from workstation.core.cache import QueryFilter
from workstation.core.model.node import Node
from workstation.core.net.find import find
from workstation.core.scheduling import Priority, Scheduler
from workstation.services.transfer_queue import CANCELLED, DONE, FAILED, QUEUED, RUNNING

pytestmark = pytest.mark.timeout(180)


def orthanc_study(orthanc, instances: int) -> str:
    """Orthanc's own ID of a study with that many instances."""
    for study in orthanc.rest("GET", "/studies"):
        if orthanc.rest("GET", f"/studies/{study}/statistics")["CountInstances"] == instances:
            return study
    raise AssertionError(f"no study of {instances} instances in Orthanc")


def test_a_pushed_study_is_counted_while_it_arrives_and_summed_when_its_association_ends(qtbot, make_window,
                                                                                         orthanc):
    win = make_window(orthanc, [pacs_node(orthanc)])
    said: list[str] = []   # the status line after each announcement of the push
    win.network.instances_received.connect(lambda *announced: said.append(win.status_label.text()))
    orthanc.rest("POST", "/modalities/workstation/store",
                 {"Resources": [orthanc_study(orthanc, 141)], "Asynchronous": True})   # Orthanc pushes it to us
    qtbot.waitUntil(lambda: "Received 141 images from ORTHANC." in said, timeout=60000)
    assert said[-1] == "Received 141 images from ORTHANC."
    going_on = said[:-1]
    assert going_on, "the push was never reported while it went on"
    counts = [int(text.removeprefix("Receiving from ORTHANC: ").removesuffix(" images…")) for text in going_on]
    assert counts == sorted(set(counts)) and counts[-1] < 141   # a running total, not the last batch
    local = win.network.cache.studies(QueryFilter(PatientID="PLASTIC"))
    assert [s.NumberOfStudyRelatedInstances for s in local] == [141]


@pytest.fixture
def silent_node():
    """A node that accepts the TCP connection and never answers: its retrieval keeps running a while."""
    with silent_peer() as port:
        yield Node("silent", "SILENT", "127.0.0.1", port, connect_timeout=2, network_timeout=5)


def test_finished_rows_are_cleared_and_an_empty_panel_takes_no_room(qtbot, make_window, orthanc, silent_node):
    dead = Node("dead", "DEAD", "127.0.0.1", free_port(), connect_timeout=2, network_timeout=5)
    pacs = pacs_node(orthanc)
    win = make_window(orthanc, [pacs, dead, silent_node])
    queue, panel, dock = win.network.queue, win.transfers, win.transfers_dock
    queue.scheduler = Scheduler(slots=1, ceilings={p: 1 for p in Priority}, group_limits={})   # one at a time
    central = win.centralWidget()
    assert not dock.isVisible() and panel.table.rowCount() == 0
    full_height = central.height()

    studies = sorted(find(pacs, WORKSTATION_AET, "study", QueryFilter()),
                     key=lambda s: (s.NumberOfStudyRelatedInstances, s.StudyInstanceUID))
    done = queue.retrieve(pacs, studies[0].StudyInstanceUID, description="smallest")
    qtbot.waitUntil(dock.isVisible, timeout=5000)                 # a transfer shows the panel
    qtbot.waitUntil(lambda: central.height() < full_height, timeout=5000)
    failed = queue.retrieve(dead, "1.2.3.4", description="from a dead node")
    qtbot.waitUntil(lambda: done.finished and failed.finished, timeout=60000)
    assert (done.state, failed.state) == (DONE, FAILED)
    reason = f"127.0.0.1:{dead.port} refused the connection"   # said once, not after 'Retrieve from dead failed:'
    assert failed.error.startswith(reason) and panel.table.item(panel.rows[failed], 4).text().startswith(reason)
    running = queue.retrieve(silent_node, "1.2.3.5", description="from a silent node")
    cancelled = queue.retrieve(silent_node, "1.2.3.6", description="cancelled", priority=Priority.BACKGROUND)
    waiting = queue.retrieve(pacs, studies[1].StudyInstanceUID, description="second smallest")
    with qtbot.waitSignal(cancelled.ended, timeout=5000):
        cancelled.cancel()
    qtbot.waitUntil(lambda: running.state == RUNNING, timeout=5000)
    assert (cancelled.state, waiting.state) == (CANCELLED, QUEUED)
    assert [panel.remove_button(t).isEnabled() for t in (done, failed, cancelled, running, waiting)] == \
        [True, True, True, False, False]

    panel.remove_button(failed).click()                           # one finished row, by its own button
    assert failed not in panel.rows and failed not in queue.transfers and panel.table.rowCount() == 4
    assert panel.clear_button.isEnabled()
    panel.clear_button.click()                                    # the other finished ones; never the rest
    assert set(panel.rows) == {running, waiting} and set(queue.transfers) == {running, waiting}
    shown = {panel.table.item(row, 0).text() for row in range(panel.table.rowCount())}
    assert shown == {"Retrieve: from a silent node", "Retrieve: second smallest"}
    assert not panel.clear_button.isEnabled() and dock.isVisible()
    for transfer in (running, waiting):                           # the rows still follow their transfers
        bar, cancel, _retry = panel.widgets(transfer)
        assert cancel.isEnabled()

    qtbot.waitUntil(lambda: running.finished and waiting.finished, timeout=60000)
    assert waiting.state == DONE and panel.widgets(waiting)[0].value() == studies[1].NumberOfStudyRelatedInstances
    panel.clear_button.click()
    assert panel.table.rowCount() == 0 and queue.transfers == []
    qtbot.waitUntil(lambda: not dock.isVisible(), timeout=5000)   # nothing to show: the images get the room
    qtbot.waitUntil(lambda: central.height() == full_height, timeout=5000)


def test_a_panel_the_user_closed_stays_closed_until_shown_from_the_view_menu(qtbot, make_window, orthanc):
    pacs = pacs_node(orthanc)
    win = make_window(orthanc, [pacs])
    queue, dock = win.network.queue, win.transfers_dock
    studies = sorted(find(pacs, WORKSTATION_AET, "study", QueryFilter()),
                     key=lambda s: (s.NumberOfStudyRelatedInstances, s.StudyInstanceUID))
    first = queue.retrieve(pacs, studies[0].StudyInstanceUID)
    qtbot.waitUntil(lambda: dock.isVisible() and first.finished, timeout=60000)
    dock.close()                                                  # the panel's close button
    second = queue.retrieve(pacs, studies[1].StudyInstanceUID)
    qtbot.waitUntil(lambda: second.finished, timeout=60000)
    assert not dock.isVisible()
    assert "Retrieval of" in win.status_label.text()            # the status line still tells
    view_menu = next(a.menu() for a in win.menuBar().actions() if a.text() == "&View")
    toggle = next(a for a in view_menu.actions() if a.text() == "Transfers")
    toggle.trigger()
    assert dock.isVisible() and win.transfers.table.rowCount() == 2
    toggle.trigger()                                              # closed from the View menu: the same
    assert not dock.isVisible()
    third = queue.retrieve(pacs, studies[2].StudyInstanceUID)
    qtbot.waitUntil(lambda: third.finished, timeout=60000)
    assert not dock.isVisible()
