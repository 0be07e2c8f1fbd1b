"""A date field of the search bar: typed as 2015-01-31 or 20150131, or picked from a calendar; empty means any date.

A QDateEdit cannot be empty: it stood for "any" with its lowest date and a special text, so typed
digits joined the text ("any20150101") and its calendar opened in 1900. This field is plain text
read by the core's one date parser (`core.dicom.dates`), shown as ISO once typing is done, and its
calendar opens at the field's date, or today.
"""

from __future__ import annotations

from PySide6.QtCore import QDate, Qt, QTimer, Signal
from PySide6.QtGui import QIcon
from PySide6.QtWidgets import QCalendarWidget, QFrame, QLineEdit, QVBoxLayout, QWidget

from workstation.core.dicom.dates import parse_date
from workstation.core.resources import resource_path

INVALID_STYLE = "color: #c0392b;"
TIDY_AFTER_MS = 800
"""A complete date typed in another form is shown as ISO once typing has paused this long (or at once
when the field is left or Return is pressed)."""


def iso(date: str) -> str:
    """YYYYMMDD as YYYY-MM-DD."""
    return f"{date[:4]}-{date[4:6]}-{date[6:]}"


class DateFieldWidget(QLineEdit):
    date_changed = Signal()   # the date it stands for changed: typed, picked or cleared (not while it is no date)

    def __init__(self, tip: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._tip = f"{tip}: type 2015-01-31 or 20150131, or pick it from the calendar; empty means any date"
        self.setPlaceholderText("any date")
        self.setToolTip(self._tip)
        self.setClearButtonEnabled(True)
        self.setMaximumWidth(self.fontMetrics().horizontalAdvance("2015-01-31") + 70)
        self.calendar_action = self.addAction(QIcon(str(resource_path("icons", "calendar.svg"))),
                                              QLineEdit.ActionPosition.TrailingPosition)
        self.calendar_action.setToolTip("Pick the date from a calendar")
        self.calendar_action.triggered.connect(self.open_calendar)
        self.popup = QFrame(self, Qt.WindowType.Popup)
        self.popup.setFrameShape(QFrame.Shape.StyledPanel)
        self.calendar = QCalendarWidget(self.popup)
        self.calendar.setGridVisible(True)
        QVBoxLayout(self.popup).addWidget(self.calendar)
        self.popup.layout().setContentsMargins(2, 2, 2, 2)
        self.calendar.clicked.connect(self._picked)
        self.calendar.activated.connect(self._picked)
        self._announced = ""
        self._tidy_timer = QTimer(self, singleShot=True, interval=TIDY_AFTER_MS)
        self._tidy_timer.timeout.connect(self.tidy)
        self.textChanged.connect(self._on_text_changed)
        self.editingFinished.connect(self.tidy)

    def dicom_date(self) -> str | None:
        """YYYYMMDD, "" when empty (any date), None when the text is not a date."""
        text = self.text().strip()
        return "" if not text else parse_date(text)

    def set_dicom_date(self, value: str, announce: bool = True) -> None:
        """Show YYYYMMDD (or "" for any date) as if typed; without `announce`, `date_changed` stays quiet
        (the caller searches itself)."""
        if not announce:
            self._announced = value
        self.setText(iso(value) if value else "")

    def problem(self, name: str) -> str:
        """Why the field cannot be searched with, in words; "" when it can."""
        if self.dicom_date() is not None:
            return ""
        return f"The {name} date {self.text().strip()!r} is not a date: type it as 2015-01-31 or 20150131."

    def tidy(self) -> None:
        """Typing is done: show a date the one way dates are shown (2015-01-31)."""
        self._tidy_timer.stop()
        date = self.dicom_date()
        if date and self.text() != iso(date):
            self.setText(iso(date))

    def _on_text_changed(self) -> None:
        date = self.dicom_date()
        self.setStyleSheet("" if date is not None else INVALID_STYLE)
        self.setToolTip(self._tip if date is not None else self.problem("typed") + "\n" + self._tip)
        if date and self.text() != iso(date):
            self._tidy_timer.start()
        else:
            self._tidy_timer.stop()
        if date is not None and date != self._announced:
            self._announced = date
            self.date_changed.emit()

    # --- the calendar -------------------------------------------------------------------------

    def shown_date(self) -> QDate:
        """Where the calendar opens: at the field's date, else today."""
        date = self.dicom_date()
        return QDate.fromString(date, "yyyyMMdd") if date else QDate.currentDate()

    def open_calendar(self) -> None:
        date = self.shown_date()
        self.calendar.setSelectedDate(date)
        self.calendar.setCurrentPage(date.year(), date.month())
        self.popup.adjustSize()
        self.popup.move(self.mapToGlobal(self.rect().bottomLeft()))
        self.popup.show()
        self.calendar.setFocus()

    def _picked(self, date: QDate) -> None:
        self.popup.hide()
        self.setText(date.toString("yyyy-MM-dd"))
        self.setFocus()
