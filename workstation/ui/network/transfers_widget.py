"""The transfers panel: running and finished retrievals and sends with progress, speed, cancel, retry.

Rows follow their `Transfer` objects (the network service updates them from its workers); the
widget only shows them and forwards Cancel and Retry.
"""

from __future__ import annotations

from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
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
        for column, width in enumerate((320, 110, 220, 90, 0, 150)):
            if width:
                self.table.setColumnWidth(column, width)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.table)
        network.queue.transfer_added.connect(self.add)
        for transfer in network.queue.transfers:
            self.add(transfer)

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
        retry.setEnabled(False)
        cancel.clicked.connect(transfer.cancel)
        retry.clicked.connect(transfer.retry)
        box.addWidget(cancel)
        box.addWidget(retry)
        self.table.setCellWidget(row, 5, buttons)
        transfer.changed.connect(lambda t=transfer: self.refresh(t))
        self.refresh(transfer)
        self.table.scrollToTop()   # the new row, newest first, is in sight

    def widgets(self, transfer: Transfer) -> tuple[QProgressBar, QPushButton, QPushButton]:
        row = self.rows[transfer]
        buttons = self.table.cellWidget(row, 5).findChildren(QPushButton)
        return self.table.cellWidget(row, 2), buttons[0], buttons[1]

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
