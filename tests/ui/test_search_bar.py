"""The browser's date fields, typed into and picked as a user does, and dates shown one way everywhere."""

from __future__ import annotations

import pytest
from PySide6.QtCore import QDate, Qt

from workstation.ui.browser.search_bar import SearchBarWidget
from workstation.ui.browser.study_table import COLUMNS

pytestmark = pytest.mark.timeout(120)

ACR_NEMA_DATES = "orthanc_tests/Database/TransferSyntaxes/1.2.840.10008.1.2.4.57.dcm"
"""An MR whose StudyDate is written 1995.05.01 and StudyTime 15:26:10, the ACR-NEMA way."""


@pytest.fixture
def bar(qtbot):
    widget = SearchBarWidget()
    qtbot.addWidget(widget)
    widget.show()
    qtbot.waitExposed(widget)
    return widget


def type_date(qtbot, field, text: str) -> None:
    field.setFocus()
    qtbot.keyClicks(field, text)
    qtbot.keyClick(field, Qt.Key.Key_Tab)   # typing done: the field tidies what it shows


def test_typed_dates_in_either_form_give_the_same_filter_and_show_as_iso(qtbot, bar):
    assert bar.query().StudyDate == ""                       # empty fields: any date
    type_date(qtbot, bar.date_from, "20150101")
    assert bar.query().StudyDate == "20150101-"
    assert bar.date_from.text() == "2015-01-01"
    type_date(qtbot, bar.date_to, "2015-01-31")
    assert bar.query().StudyDate == "20150101-20150131"
    assert bar.date_to.text() == "2015-01-31"
    bar.date_to.clear()
    type_date(qtbot, bar.date_to, "2015-01-01")
    assert bar.query().StudyDate == "20150101"               # one day
    bar.date_from.clear()
    bar.date_to.clear()
    assert bar.query().StudyDate == ""
    bar.date_from.setFocus()
    qtbot.keyClicks(bar.date_from, "1995.05.01")             # typed and left alone: shown as ISO after a pause
    assert bar.query().StudyDate == "19950501-"
    qtbot.waitUntil(lambda: bar.date_from.text() == "1995-05-01", timeout=5000)


def test_a_date_that_is_not_one_is_said_and_not_searched(qtbot, bar):
    asked = []
    bar.search_requested.connect(lambda: asked.append(bar.query().StudyDate))
    type_date(qtbot, bar.date_from, "2015-13-01")
    bar.search_button.click()
    assert asked == []
    assert bar.error_label.isVisible() and "is not a date" in bar.error_label.text()
    bar.date_from.clear()
    type_date(qtbot, bar.date_from, "2015.01.02")            # the ACR-NEMA form is a date too
    bar.search_button.click()
    assert asked[-1] == "20150102-" and not bar.error_label.isVisible()


def test_the_calendar_opens_at_today_or_the_fields_date_and_a_pick_is_the_same_filter(qtbot, bar):
    field = bar.date_from
    field.calendar_action.trigger()
    qtbot.waitUntil(field.popup.isVisible, timeout=5000)
    assert field.calendar.selectedDate() == QDate.currentDate()
    assert (field.calendar.yearShown(), field.calendar.monthShown()) == (QDate.currentDate().year(),
                                                                          QDate.currentDate().month())
    field.calendar.setSelectedDate(QDate(2015, 1, 1))
    qtbot.keyClick(field.calendar.focusWidget() or field.calendar, Qt.Key.Key_Return)   # pick it
    assert not field.popup.isVisible()
    assert field.text() == "2015-01-01" and bar.query().StudyDate == "20150101-"

    field.clear()
    type_date(qtbot, field, "19950501")
    field.calendar_action.trigger()
    qtbot.waitUntil(field.popup.isVisible, timeout=5000)
    assert field.calendar.selectedDate() == QDate(1995, 5, 1)
    assert (field.calendar.yearShown(), field.calendar.monthShown()) == (1995, 5)
    field.popup.hide()


def test_quick_dates_fill_the_fields_and_any_date_clears_them(qtbot, bar):
    today = QDate.currentDate().toString("yyyyMMdd")
    bar.date_buttons["Today"].click()
    assert bar.query().StudyDate == today and bar.date_from.text() == QDate.currentDate().toString("yyyy-MM-dd")
    bar.date_buttons["Any date"].click()
    assert bar.query().StudyDate == "" and bar.date_from.text() == "" and bar.date_to.text() == ""


def test_an_acr_nema_date_shows_as_iso_and_is_found_by_a_typed_date(qtbot, window, samples):
    with qtbot.waitSignal(window.import_ended, timeout=60000):
        window.import_paths([str(samples / ACR_NEMA_DATES), str(samples / "dcm_qa_ct/In/Philips/S21570/S1000")])
    browser = window.browser
    qtbot.waitUntil(lambda: browser.model.rowCount() == 2, timeout=10000)
    date_column = [key for _, key in COLUMNS].index("StudyDate")
    shown = sorted(browser.model.index(row, date_column).data() for row in range(2))
    assert shown[0] == "1995-05-01 15:26" and shown[1].startswith("2015-02-06 ")
    type_date(qtbot, browser.search_bar.date_from, "19950501")
    type_date(qtbot, browser.search_bar.date_to, "1995-05-01")     # that one day, as the index keeps it
    assert browser.search_bar.query().StudyDate == "19950501"
    qtbot.waitUntil(lambda: browser.model.rowCount() == 1, timeout=10000)
    assert browser.model.studies[0].StudyDescription == "SHOULDER"
