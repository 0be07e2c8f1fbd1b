"""Preferences for the network: the DICOM nodes (add, edit, remove, test) and our own AE.

The dialog edits a copy of the settings; OK hands it to the network service, which saves it
and restarts the Storage SCP when our AE title or port changed. Test runs a C-ECHO through the
service and shows the answer in words.
"""

from __future__ import annotations

import dataclasses

from PySide6.QtCore import QSignalBlocker
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from workstation.core.model.node import (
    DEFAULT_MAX_ASSOCIATIONS,
    MAX_ASSOCIATIONS,
    Node,
    NodeError,
    check_ae_title,
    check_port,
)
from workstation.core.settings import Settings
from workstation.services.jobs import Job
from workstation.services.network_service import NetworkService


class NodesDialog(QDialog):
    def __init__(self, network: NetworkService, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Nodes and network")
        self.network = network
        self.settings: Settings = dataclasses.replace(network.settings, nodes=list(network.settings.nodes))
        self._echo_job: Job | None = None

        self.node_list = QListWidget()
        self.add_button = QPushButton("New")
        self.remove_button = QPushButton("Remove")
        self.name_edit = QLineEdit()
        self.aet_edit = QLineEdit()
        self.host_edit = QLineEdit()
        self.port_spin = QSpinBox(minimum=1, maximum=65535, value=104)
        self.method_box = QComboBox()
        self.method_box.addItems(["get", "move"])
        self.model_box = QComboBox()
        self.model_box.addItems(["study", "patient"])
        self.connect_spin = QDoubleSpinBox(minimum=0.5, maximum=120, value=5, suffix=" s")
        self.network_spin = QDoubleSpinBox(minimum=1, maximum=600, value=30, suffix=" s")
        self.associations_spin = QSpinBox(minimum=1, maximum=MAX_ASSOCIATIONS, value=DEFAULT_MAX_ASSOCIATIONS)
        self.associations_spin.setToolTip("How many associations the node serves at once (Orthanc: "
                                          "DicomThreadsCount, 4 by default); a retrieval never opens more")
        self.save_node_button = QPushButton("Save node")
        self.test_button = QPushButton("Test (C-ECHO)")
        self.test_label = QLabel()
        self.test_label.setWordWrap(True)
        self.test_label.setObjectName("echo_result")

        self.own_aet_edit = QLineEdit(self.settings.ae_title)
        self.own_port_spin = QSpinBox(minimum=1, maximum=65535, value=self.settings.port)
        self.error_label = QLabel()
        self.error_label.setStyleSheet("color: #c0392b;")
        self.error_label.setWordWrap(True)

        form = QFormLayout()
        form.addRow("Name", self.name_edit)
        form.addRow("AE title", self.aet_edit)
        form.addRow("Host", self.host_edit)
        form.addRow("Port", self.port_spin)
        form.addRow("Retrieve by", self.method_box)
        form.addRow("Query model", self.model_box)
        form.addRow("Connect timeout", self.connect_spin)
        form.addRow("Network timeout", self.network_spin)
        form.addRow("Most associations", self.associations_spin)
        node_buttons = QHBoxLayout()
        node_buttons.addWidget(self.save_node_button)
        node_buttons.addWidget(self.test_button)
        form.addRow(node_buttons)
        form.addRow(self.test_label)
        left = QVBoxLayout()
        left.addWidget(self.node_list, 1)
        list_buttons = QHBoxLayout()
        list_buttons.addWidget(self.add_button)
        list_buttons.addWidget(self.remove_button)
        left.addLayout(list_buttons)
        nodes_box = QGroupBox("DICOM nodes")
        nodes_layout = QHBoxLayout(nodes_box)
        nodes_layout.addLayout(left, 1)
        nodes_layout.addLayout(form, 2)

        own_box = QGroupBox("This workstation")
        own_form = QFormLayout(own_box)
        own_form.addRow("Our AE title", self.own_aet_edit)
        own_form.addRow("Storage SCP port", self.own_port_spin)
        own_form.addRow(QLabel(network.storage.status))

        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(nodes_box, 1)
        layout.addWidget(own_box)
        layout.addWidget(self.error_label)
        layout.addWidget(buttons)

        self.node_list.currentRowChanged.connect(self._show_node)
        self.add_button.clicked.connect(self.new_node)
        self.remove_button.clicked.connect(self.remove_node)
        self.save_node_button.clicked.connect(self.save_node)
        self.test_button.clicked.connect(self.test_node)
        self._fill_list()

    def _fill_list(self, select: str | None = None) -> None:
        with QSignalBlocker(self.node_list):
            self.node_list.clear()
            for node in self.settings.nodes:
                self.node_list.addItem(node.name)
        names = [n.name for n in self.settings.nodes]
        row = names.index(select) if select in names else (0 if names else -1)
        self.node_list.setCurrentRow(row)
        if row < 0:
            self.new_node()
        else:
            self._show_node(row)

    def _show_node(self, row: int) -> None:
        if not 0 <= row < len(self.settings.nodes):
            return
        node = self.settings.nodes[row]
        self.name_edit.setText(node.name)
        self.aet_edit.setText(node.aet)
        self.host_edit.setText(node.host)
        self.port_spin.setValue(node.port)
        self.method_box.setCurrentText(node.method)
        self.model_box.setCurrentText(node.model)
        self.connect_spin.setValue(node.connect_timeout)
        self.network_spin.setValue(node.network_timeout)
        self.associations_spin.setValue(node.max_associations)
        self.test_label.clear()

    def new_node(self) -> None:
        self.node_list.clearSelection()
        for edit in (self.name_edit, self.aet_edit):
            edit.clear()
        self.host_edit.setText("127.0.0.1")
        self.port_spin.setValue(104)
        self.associations_spin.setValue(DEFAULT_MAX_ASSOCIATIONS)
        self.test_label.clear()
        self.name_edit.setFocus()

    def node_from_form(self) -> Node:
        """The node the form describes; NodeError says what is wrong."""
        old = next((n for n in self.settings.nodes if n.name == self.name_edit.text().strip()), None)
        return Node(self.name_edit.text().strip(), self.aet_edit.text(), self.host_edit.text().strip(),
                    self.port_spin.value(), self.method_box.currentText(), self.model_box.currentText(),
                    *((old.tls_ca, old.tls_cert, old.tls_key) if old else ("", "", "")),
                    connect_timeout=self.connect_spin.value(), network_timeout=self.network_spin.value(),
                    max_associations=self.associations_spin.value())

    def save_node(self) -> Node | None:
        try:
            node = self.node_from_form()
        except NodeError as exc:
            self.error_label.setText(str(exc))
            return None
        self.error_label.clear()
        self.settings.with_node(node)
        self._fill_list(node.name)
        return node

    def remove_node(self) -> None:
        row = self.node_list.currentRow()
        if 0 <= row < len(self.settings.nodes):
            self.settings.without_node(self.settings.nodes[row].name)
            self._fill_list()

    def test_node(self) -> Job | None:
        try:
            node = self.node_from_form()
        except NodeError as exc:
            self.test_label.setText(str(exc))
            return None
        self.test_label.setText(f"Testing {node.name}…")
        job = self.network.queries.echo(node)
        self._echo_job = job
        job.succeeded.connect(lambda seconds: self._tested(job, f"{node.name} answered in {seconds * 1000:.0f} ms."))
        job.failed.connect(lambda message: self._tested(job, message.removeprefix(f"C-ECHO to {node.name} failed: ")))
        return job

    def _tested(self, job: Job, text: str) -> None:
        if job is self._echo_job:
            self.test_label.setText(text)

    def accept(self) -> None:
        try:
            self.settings.ae_title = check_ae_title(self.own_aet_edit.text(), "our AE title")
            self.settings.port = check_port(self.own_port_spin.value())
        except NodeError as exc:
            self.error_label.setText(str(exc))
            return
        self.network.apply_settings(self.settings)
        super().accept()
