"""The browser's search bar: where to search, what to match, and how the last search went.

It turns the fields into an immutable `QueryFilter` (plus the referring physician, which the
filter does not carry) and asks for a search; the browser runs it. Over the local cache an edit
asks again once typing settles; over a node only Search and Return do, as each ask is a C-FIND.
"""

from __future__ import annotations

from PySide6.QtCore import QDate, QSignalBlocker, QTimer, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from workstation.core.cache import QueryFilter
from workstation.core.model.node import Node
from workstation.ui.browser.date_field import DateFieldWidget

MODALITIES = ["", "CT", "MR", "CR", "DX", "MG", "US", "XA", "RF", "NM", "PT", "OT", "SC", "SEG"]
LOCAL = "Local cache"


def wildcard(value: str, prefix_only: bool = False) -> str:
    """What a user types as a DICOM matching value: kept when it has wildcards, else widened."""
    value = value.strip()
    if not value or "*" in value or "?" in value:
        return value
    return f"{value}*" if prefix_only else f"*{value}*"


def count_text(n: int) -> str:
    return f"{n} stud" + ("y" if n == 1 else "ies")


def _message_label(name: str, colour: str) -> QLabel:
    label = QLabel()
    label.setObjectName(name)
    label.setStyleSheet(f"color: {colour}; padding: 2px;")
    label.setWordWrap(True)
    label.hide()
    return label


class SearchBarWidget(QWidget):
    search_requested = Signal()   # Search, Return, or over the cache an edit once typing settles
    stop_requested = Signal()
    source_changed = Signal()     # after the bar has reset itself for the new source

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.source_box = QComboBox()
        self.source_box.setToolTip("Search the local cache or a DICOM node")
        self.search_edit = QLineEdit(placeholderText="Search patient name, ID, accession or description")
        self.search_edit.setClearButtonEnabled(True)
        self.search_button = QPushButton("Search")
        self.stop_button = QPushButton("Stop")
        self.stop_button.setToolTip("Stop the search (the node is told with C-CANCEL)")
        self.stop_button.setEnabled(False)
        self.count_label = QLabel()

        self.name_edit = QLineEdit(placeholderText="Patient name")
        self.id_edit = QLineEdit(placeholderText="Patient ID")
        self.accession_edit = QLineEdit(placeholderText="Accession")
        self.referring_edit = QLineEdit(placeholderText="Referring physician")
        self.description_edit = QLineEdit(placeholderText="Study description")
        self.modality_box = QComboBox()
        self.modality_box.addItems([m or "Any modality" for m in MODALITIES])
        self.date_from = DateFieldWidget("From")
        self.date_to = DateFieldWidget("To")
        self.date_buttons = {}
        for choice in ("Today", "Yesterday", "Last 7 days", "Any date"):
            button = QToolButton(text=choice)
            button.clicked.connect(lambda checked=False, c=choice: self.set_dates(c))
            self.date_buttons[choice] = button

        self.cap_label = _message_label("cap_warning", "#b36b00")
        self.error_label = _message_label("search_error", "#c0392b")
        self._lay_out()

        self._debounce = QTimer(self, singleShot=True, interval=200)
        self._debounce.timeout.connect(self._search_if_local)
        for edit in (self.search_edit, self.name_edit, self.id_edit, self.accession_edit, self.referring_edit,
                     self.description_edit, self.date_from, self.date_to):
            edit.returnPressed.connect(self.ask_search)
        for edit in (self.search_edit, self.name_edit, self.id_edit, self.accession_edit, self.referring_edit,
                     self.description_edit):
            edit.textChanged.connect(self._debounce.start)
        self.modality_box.currentIndexChanged.connect(self._search_if_local)
        self.date_from.date_changed.connect(self._debounce.start)
        self.date_to.date_changed.connect(self._debounce.start)
        self.source_box.currentIndexChanged.connect(self._on_source_changed)
        self.search_button.clicked.connect(self.ask_search)
        self.stop_button.clicked.connect(self.stop_requested)

    def _lay_out(self) -> None:
        top = QHBoxLayout()
        top.addWidget(QLabel("Source"))
        top.addWidget(self.source_box)
        top.addWidget(self.search_edit, 1)
        top.addWidget(self.search_button)
        top.addWidget(self.stop_button)
        top.addWidget(self.count_label)
        fields = QGridLayout()
        for column, edit in enumerate((self.name_edit, self.id_edit, self.accession_edit, self.referring_edit,
                                       self.description_edit)):
            fields.addWidget(edit, 0, column)
        dates = QHBoxLayout()
        dates.addWidget(self.modality_box)
        dates.addSpacing(12)
        dates.addWidget(QLabel("Date"))
        dates.addWidget(self.date_from)
        dates.addWidget(QLabel("–"))
        dates.addWidget(self.date_to)
        for button in self.date_buttons.values():
            dates.addWidget(button)
        dates.addStretch(1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(top)
        layout.addLayout(fields)
        layout.addLayout(dates)
        layout.addWidget(self.cap_label)
        layout.addWidget(self.error_label)

    # --- sources ------------------------------------------------------------------------------

    def set_nodes(self, nodes: list[Node]) -> None:
        current = self.source_box.currentText()
        with QSignalBlocker(self.source_box):
            self.source_box.clear()
            self.source_box.addItem(LOCAL, None)
            for node in nodes:
                self.source_box.addItem(node.name, node)
            index = self.source_box.findText(current)
            self.source_box.setCurrentIndex(max(0, index))
        if index < 0 and current and current != LOCAL:
            self._on_source_changed()

    def current_node(self) -> Node | None:
        return self.source_box.currentData()

    def set_source(self, name: str) -> None:
        index = self.source_box.findText(name)
        if index < 0:
            raise LookupError(f"no source named {name!r}")
        self.source_box.setCurrentIndex(index)

    def _on_source_changed(self) -> None:
        node = self.current_node()
        self.search_edit.setEnabled(node is None)
        self.search_edit.setToolTip("" if node is None else "The loose search works on the local cache; "
                                    "use the fields below for a node")
        self.clear_messages()
        self.set_searching(False)
        self.count_label.setText("" if node is None else "Press Search")
        self.source_changed.emit()

    # --- what to match ------------------------------------------------------------------------

    def set_dates(self, choice: str) -> None:
        """Quick dates: fill From and To (Any date clears them); the search follows."""
        today = QDate.currentDate()
        start, end = {"Today": (today, today), "Yesterday": (today.addDays(-1), today.addDays(-1)),
                      "Last 7 days": (today.addDays(-6), today)}.get(choice, (None, None))
        for edit, value in ((self.date_from, start), (self.date_to, end)):
            edit.set_dicom_date(value.toString("yyyyMMdd") if value is not None else "", announce=False)
        self._search_if_local()

    def date_problem(self) -> str:
        """Why the dates cannot be searched with, in words; "" when they can."""
        return self.date_from.problem("From") or self.date_to.problem("To")

    def study_date(self) -> str:
        """The DICOM date or range of the two fields ("" for any date; a field that is no date counts as empty)."""
        start, end = self.date_from.dicom_date() or "", self.date_to.dicom_date() or ""
        if start and start == end:
            return start
        return f"{start}-{end}" if start or end else ""

    def query(self) -> QueryFilter:
        return QueryFilter(
            PatientName=wildcard(self.name_edit.text(), prefix_only=True),
            PatientID=self.id_edit.text().strip(),
            AccessionNumber=self.accession_edit.text().strip(),
            StudyDescription=wildcard(self.description_edit.text()),
            text=self.search_edit.text().strip() if self.current_node() is None else "",
            Modality=MODALITIES[self.modality_box.currentIndex()],
            StudyDate=self.study_date(),
        )

    def referring(self) -> str:
        return wildcard(self.referring_edit.text())

    def has_filters(self) -> bool:
        return self.query() != QueryFilter() or bool(self.referring()) or bool(self.date_problem())

    def clear_filters(self) -> None:
        """Empty every field (the source stays); no search is asked for: the caller searches."""
        edits = (self.search_edit, self.name_edit, self.id_edit, self.accession_edit, self.referring_edit,
                 self.description_edit)
        blockers = [QSignalBlocker(w) for w in (*edits, self.modality_box)]
        for edit in edits:
            edit.clear()
        self.modality_box.setCurrentIndex(0)
        del blockers
        for field in (self.date_from, self.date_to):
            field.set_dicom_date("", announce=False)
        self._debounce.stop()

    def ask_search(self) -> None:
        """Search (the button or Return): unless a date field holds no date, which is said instead."""
        problem = self.date_problem()
        if problem:
            self.show_error(problem)
            return
        self.clear_messages()
        self.search_requested.emit()

    def _search_if_local(self) -> None:
        if self.current_node() is None and not self.date_problem():   # a half-typed date waits for the rest
            self.search_requested.emit()

    # --- how the search went ------------------------------------------------------------------

    def show_count(self, text: str) -> None:
        self.count_label.setText(text)

    def set_searching(self, searching: bool) -> None:
        self.stop_button.setEnabled(searching)

    def show_capped(self, n: int) -> None:
        self.cap_label.setText(f"Only the first {n} studies are shown: the search reached the limit of "
                               f"{n} results and was stopped. Narrow it down (name, date, modality).")
        self.cap_label.show()

    def show_error(self, message: str) -> None:
        self.count_label.setText("")
        self.error_label.setText(message)
        self.error_label.show()

    def clear_messages(self) -> None:
        self.cap_label.hide()
        self.error_label.hide()
