"""The transfers panel: running and finished retrievals and sends with progress, speed, cancel, retry.

Rows follow their `Transfer` objects (the network service updates them from its workers); the
widget only shows them and forwards Cancel, Retry and Remove, and "Clear finished" removes every
finished row (never a running or waiting one). Its dock (`TransfersDockWidget`) takes no room
while there is nothing to show.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDockWidget,
    QHBoxLayout,
    QHeaderView,
    QMainWindow,
    QProgressBar,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from workstation.services.network_service import NetworkService
from workstation.services.transfer_queue import CANCELLED, DONE, FAILED, Transfer

COLUMNS = ["Transfer", "Node", "Progress", "Speed", "State", ""]


def format_bytes(n: int) -> str:
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"


class TransfersWidget(QWidget):
    rows_changed = Signal(bool)   # rows were added (True) or removed (False)

    def __init__(self, network: NetworkService, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.network = network
        self.rows: dict[Transfer, int] = {}
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setWordWrap(False)
        self.table.verticalHeader().hide()
        self.table.verticalHeader().setDefaultSectionSize(self.fontMetrics().height() + 14)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        header.setStretchLastSection(False)
        header.setSectionResizeMode(4, QHeaderView.ResizeMode.Stretch)
        for column, width in enumerate((320, 110, 220, 90, 0, 230)):
            if width:
                self.table.setColumnWidth(column, width)
        self.clear_button = QPushButton("Clear finished")
        self.clear_button.setToolTip("Remove the finished transfers (done, failed, cancelled) from the list")
        self.clear_button.clicked.connect(self.clear_finished)
        bar = QHBoxLayout()
        bar.setContentsMargins(4, 2, 4, 0)
        bar.addStretch(1)
        bar.addWidget(self.clear_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(bar)
        layout.addWidget(self.table)
        network.queue.transfer_added.connect(self.add)
        network.queue.transfers_removed.connect(self._remove_rows)
        for transfer in network.queue.transfers:
            self.add(transfer)
        self._update_clear()

    def clear_finished(self) -> None:
        self.network.queue.remove_finished()

    def remove(self, transfer: Transfer) -> None:
        """Remove one row, if its transfer is finished."""
        self.network.queue.remove_finished([transfer])

    def _remove_rows(self, transfers: list[Transfer]) -> None:
        for transfer in transfers:
            row = self.rows.pop(transfer, None)
            if row is None:
                continue
            self.table.removeRow(row)
            self.rows = {t: r - 1 if r > row else r for t, r in self.rows.items()}
        self._update_clear()
        self.rows_changed.emit(False)

    def _update_clear(self) -> None:
        self.clear_button.setEnabled(any(t.finished for t in self.rows))

    def add(self, transfer: Transfer) -> None:
        row = 0
        self.table.insertRow(row)  # newest first
        self.rows = {t: r + 1 for t, r in self.rows.items()}
        self.rows[transfer] = row
        verb = "Retrieve" if transfer.kind == "retrieve" else "Send"
        self.table.setItem(row, 0, QTableWidgetItem(f"{verb}: {transfer.description}"))
        self.table.setItem(row, 1, QTableWidgetItem(transfer.node.name))
        bar = QProgressBar()
        bar.setRange(0, 0)
        bar.setTextVisible(True)
        self.table.setCellWidget(row, 2, bar)
        self.table.setItem(row, 3, QTableWidgetItem(""))
        self.table.setItem(row, 4, QTableWidgetItem("waiting"))
        buttons = QWidget()
        box = QHBoxLayout(buttons)
        box.setContentsMargins(2, 0, 2, 0)
        cancel = QPushButton("Cancel")
        retry = QPushButton("Retry")
        remove = QPushButton("Remove")
        remove.setToolTip("Remove this finished transfer from the list")
        retry.setEnabled(False)
        cancel.clicked.connect(transfer.cancel)
        retry.clicked.connect(transfer.retry)
        remove.clicked.connect(lambda checked=False, t=transfer: self.remove(t))
        box.addWidget(cancel)
        box.addWidget(retry)
        box.addWidget(remove)
        self.table.setCellWidget(row, 5, buttons)
        transfer.changed.connect(lambda t=transfer: self.refresh(t))
        self.refresh(transfer)
        self.table.scrollToTop()   # the new row, newest first, is in sight
        self.rows_changed.emit(True)

    def widgets(self, transfer: Transfer) -> tuple[QProgressBar, QPushButton, QPushButton]:
        """(progress bar, Cancel, Retry) of a transfer's row."""
        row = self.rows[transfer]
        buttons = self.table.cellWidget(row, 5).findChildren(QPushButton)
        return self.table.cellWidget(row, 2), buttons[0], buttons[1]

    def remove_button(self, transfer: Transfer) -> QPushButton:
        return self.table.cellWidget(self.rows[transfer], 5).findChildren(QPushButton)[2]

    def refresh(self, transfer: Transfer) -> None:
        row = self.rows.get(transfer)
        if row is None:
            return
        bar, cancel, retry = self.widgets(transfer)
        if transfer.total:
            bar.setRange(0, transfer.total)
            bar.setValue(transfer.done)
            bar.setFormat(f"%v / %m  ({format_bytes(transfer.bytes)})" if transfer.bytes > 0 else "%v / %m")
        elif transfer.state == DONE:
            bar.setRange(0, 1)
            bar.setValue(1)
            bar.setFormat("nothing missing")
        elif transfer.finished:
            bar.setRange(0, 1)
            bar.setValue(0)
            bar.setFormat("—")
        speed = self.table.item(row, 3)
        speed.setText(f"{transfer.speed:.1f} MB/s" if transfer.speed > 0 else "")
        state = self.table.item(row, 4)
        state.setText(transfer.status_text())
        state.setToolTip(transfer.error or transfer.status_text())
        cancel.setEnabled(not transfer.finished)
        retry.setEnabled(transfer.state in (FAILED, CANCELLED) and transfer.retried_by is None)
        self.remove_button(transfer).setEnabled(transfer.finished)
        self._update_clear()


class TransfersDockWidget(QDockWidget):
    """The Transfers panel's dock: hidden while the panel is empty, shown when a transfer is added.

    A user who closed it (its close button, or View > Transfers) keeps it closed: new transfers do not
    bring it back (the status line still says when each starts and ends) until it is shown again from
    the View menu.
    """

    HEIGHT = 160

    def __init__(self, transfers: TransfersWidget, parent: QMainWindow) -> None:
        super().__init__("Transfers", parent)
        self.setObjectName("transfers_dock")
        self.setWidget(transfers)
        self.transfers = transfers
        self.closed_by_user = False
        self._sized = False
        transfers.rows_changed.connect(self._follow)
        self.toggleViewAction().triggered.connect(self._on_view_menu)

    def place(self) -> None:
        """Once it is in its window: hidden if there is nothing to show."""
        self._follow(bool(self.transfers.rows))

    def closeEvent(self, event) -> None:
        self.closed_by_user = True
        super().closeEvent(event)

    def _on_view_menu(self, checked: bool) -> None:
        self.closed_by_user = not checked

    def _follow(self, added: bool) -> None:
        if not self.transfers.rows:
            self.hide()
        elif added and not self.closed_by_user and not self.isVisible():
            self.show()
            window = self.parent()
            if not self._sized and isinstance(window, QMainWindow):
                self._sized = True
                window.resizeDocks([self], [self.HEIGHT], Qt.Orientation.Vertical)
