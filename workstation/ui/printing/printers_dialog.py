"""Tools ▸ Printers: the film printer profiles (AE title, host, port, colour or grey, the film sizes
and formats it takes, its resolution and densities, a job's defaults), with Test: C-ECHO, then N-GET
of the Printer, on a worker, the answer in words."""

from __future__ import annotations

from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from workstation.core.model.printer import DEFAULT_FORMATS, MEDIUMS, Printer, PrintSetupError


class PrintersDialog(QDialog):
    def __init__(self, network, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Printers")
        self.network = network
        self.list = QListWidget()
        self.list.currentRowChanged.connect(self._show)
        self.name, self.aet, self.host = QLineEdit(), QLineEdit(), QLineEdit()
        self.port = QSpinBox()
        self.port.setRange(1, 65535)
        self.port.setValue(104)
        self.color = QCheckBox("Colour printer (Basic Color Print)")
        self.sizes = QLineEdit("8INX10IN, 10INX12IN, 11INX14IN, 14INX14IN, 14INX17IN")
        self.formats = QLineEdit("; ".join(DEFAULT_FORMATS))
        self.dpi = QDoubleSpinBox()
        self.dpi.setRange(50, 1200)
        self.dpi.setValue(300)
        self.dpi.setSuffix(" dpi")
        self.bits = QComboBox()
        self.bits.addItems(["8", "12"])
        self.film_size = QLineEdit("14INX17IN")
        self.display_format = QLineEdit("STANDARD\\2,2")
        self.medium = QComboBox()
        self.medium.addItems(MEDIUMS)
        self.medium.setCurrentText("BLUE FILM")
        form = QFormLayout()
        for label, widget in (("Name", self.name), ("AE title", self.aet), ("Host", self.host), ("Port", self.port),
                              ("", self.color), ("Film sizes", self.sizes), ("Formats", self.formats),
                              ("Resolution", self.dpi), ("Grey bits", self.bits), ("Default film", self.film_size),
                              ("Default format", self.display_format), ("Medium", self.medium)):
            form.addRow(label, widget)
        self.result = QLabel("")
        self.result.setWordWrap(True)
        save, remove, test, close = QPushButton("Save"), QPushButton("Remove"), QPushButton("Test"), QPushButton("Close")
        save.clicked.connect(self.save)
        remove.clicked.connect(self.remove)
        test.clicked.connect(self.test)
        close.clicked.connect(self.accept)
        buttons = QHBoxLayout()
        for b in (save, remove, test):
            buttons.addWidget(b)
        buttons.addStretch(1)
        buttons.addWidget(close)
        right = QVBoxLayout()
        right.addLayout(form)
        right.addWidget(self.result)
        right.addStretch(1)
        right.addLayout(buttons)
        layout = QHBoxLayout(self)
        layout.addWidget(self.list, 1)
        layout.addLayout(right, 2)
        self._fill()

    def _fill(self) -> None:
        self.list.clear()
        for p in self.network.settings.printers:
            self.list.addItem(p.name)

    def _show(self, row: int) -> None:
        printers = self.network.settings.printers
        if not 0 <= row < len(printers):
            return
        p = printers[row]
        self.name.setText(p.name)
        self.aet.setText(p.aet)
        self.host.setText(p.host)
        self.port.setValue(p.port)
        self.color.setChecked(p.color)
        self.sizes.setText(", ".join(p.film_sizes))
        self.formats.setText("; ".join(p.formats))
        self.dpi.setValue(p.dpi)
        self.bits.setCurrentText(str(p.bits))
        self.film_size.setText(p.film_size)
        self.display_format.setText(p.display_format)
        self.medium.setCurrentText(p.medium)

    def printer(self) -> Printer:
        """The profile from the fields; what the dialog does not show is kept from the saved one."""
        name = self.name.text().strip()
        saved = next((p for p in self.network.settings.printers if p.name == name), None)
        if saved is not None:
            return saved.with_values(
                aet=self.aet.text().strip(), host=self.host.text().strip(), port=self.port.value(),
                color=self.color.isChecked(),
                film_sizes=tuple(s.strip() for s in self.sizes.text().split(",") if s.strip()),
                formats=tuple(f.strip() for f in self.formats.text().split(";") if f.strip()),
                dpi=self.dpi.value(), bits=int(self.bits.currentText()), film_size=self.film_size.text().strip(),
                display_format=self.display_format.text().strip(), medium=self.medium.currentText())
        return Printer(self.name.text().strip(), self.aet.text().strip(), self.host.text().strip(), self.port.value(),
                       color=self.color.isChecked(),
                       film_sizes=tuple(s.strip() for s in self.sizes.text().split(",") if s.strip()),
                       formats=tuple(f.strip() for f in self.formats.text().split(";") if f.strip()),
                       dpi=self.dpi.value(), bits=int(self.bits.currentText()), film_size=self.film_size.text().strip(),
                       display_format=self.display_format.text().strip(), medium=self.medium.currentText())

    def save(self) -> Printer | None:
        try:
            printer = self.printer()
        except PrintSetupError as exc:
            self.result.setText(f"<span style='color:#ff7a7a'>{exc}</span>")
            return None
        from copy import deepcopy

        settings = deepcopy(self.network.settings)
        settings.with_printer(printer)
        self.network.apply_settings(settings)
        self._fill()
        self.result.setText(f"Saved {printer.name}.")
        return printer

    def remove(self) -> None:
        item = self.list.currentItem()
        if item is None:
            return
        from copy import deepcopy

        settings = deepcopy(self.network.settings)
        settings.without_printer(item.text())
        self.network.apply_settings(settings)
        self._fill()

    def test(self) -> None:
        try:
            printer = self.printer()
        except PrintSetupError as exc:
            self.result.setText(f"<span style='color:#ff7a7a'>{exc}</span>")
            return
        own = self.network.settings.ae_title

        def work(progress, cancel):
            from workstation.core.net.echo import echo
            from workstation.core.net.print_scu import printer_status

            seconds = echo(printer.node(), own)
            return seconds, printer_status(printer, own)

        self.result.setText(f"Testing {printer.name}…")
        job = self.network.runner.submit(f"test {printer.name}", work)
        job.succeeded.connect(lambda found: self.result.setText(
            f"<span style='color:#8fd18f'>C-ECHO in {found[0] * 1000:.0f} ms; printer {found[1].words()}</span>"))
        job.failed.connect(lambda message: self.result.setText(f"<span style='color:#ff7a7a'>{message}</span>"))
        self._test_job = job
