"""The film composer: a window of its own beside the viewer, over a `FilmComposer` (core). Choose the
printer, film size, orientation, display format (or the smallest that fits), medium and copies; fill
the boxes from the viewer (current image, key images, every Nth image of a range of the series,
the current layout); reorder them by dragging, remove them with Delete. The preview shows each film
at its aspect ratio with the printer's density range simulated, made of the same pixels that are
sent; Print puts the job in the print queue (the Transfers panel), so a dead or busy printer never
blocks the window. The printer's status (N-GET) is asked on a worker when it is chosen."""

from __future__ import annotations

from PySide6.QtCore import QRectF, QSize, Qt, Signal
from PySide6.QtGui import QColor, QImage, QKeySequence, QPainter, QPen, QShortcut
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDialog,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMenu,
    QPushButton,
    QSizePolicy,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from workstation.core.film_composer import FilmComposer
from workstation.core.model.printer import FILM_SIZES_MM, MEDIUMS, film_size_mm
from workstation.core.printing import film_page, simulate_density

AUTO = "Smallest that fits"
DISPLAY_SET_MIME = "application/x-workstation-display-set"   # what the viewer's series strip drags


class FilmList(QListWidget):
    """The boxes in order: dragged within to reorder; a series dragged from a viewer's strip is added."""

    series_dropped = Signal(str, str)   # StudyInstanceUID, display set key

    def __init__(self) -> None:
        super().__init__()
        self.setDragDropMode(QAbstractItemView.DragDropMode.DragDrop)
        self.setDefaultDropAction(Qt.DropAction.MoveAction)
        self.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.setAcceptDrops(True)

    def dragEnterEvent(self, event) -> None:
        if event.mimeData().hasFormat(DISPLAY_SET_MIME):
            event.acceptProposedAction()
        else:
            super().dragEnterEvent(event)

    def dragMoveEvent(self, event) -> None:
        if event.mimeData().hasFormat(DISPLAY_SET_MIME):
            event.acceptProposedAction()
        else:
            super().dragMoveEvent(event)

    def dropEvent(self, event) -> None:
        if event.mimeData().hasFormat(DISPLAY_SET_MIME):
            study_uid, _, key = bytes(event.mimeData().data(DISPLAY_SET_MIME)).decode().partition("\n")
            event.acceptProposedAction()
            self.series_dropped.emit(study_uid, key)
            return
        super().dropEvent(event)


class FilmPreview(QWidget):
    """One film page at the film's aspect ratio, its boxes outlined."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.image: QImage | None = None
        self.boxes: list[tuple[float, float, float, float]] = []   # fractions of the film
        self.aspect = 14 / 17
        self.note = "No images yet: add some from the viewer."
        self.setMinimumSize(240, 300)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)

    def sizeHint(self) -> QSize:
        return QSize(420, 520)

    def film_rect(self):
        w, h = self.width() - 16, self.height() - 16
        if w / max(h, 1) > self.aspect:
            w = h * self.aspect
        else:
            h = w / self.aspect
        return (self.width() - w) / 2, (self.height() - h) / 2, w, h

    def paintEvent(self, event) -> None:
        p = QPainter(self)
        p.fillRect(self.rect(), QColor(60, 60, 60))
        x, y, w, h = self.film_rect()
        if self.image is not None:
            p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, True)
            p.drawImage(QRectF(x, y, w, h), self.image)
        else:
            p.fillRect(QRectF(x, y, w, h), QColor(20, 20, 20))
            p.setPen(QColor(170, 170, 170))
            p.drawText(QRectF(x, y, w, h), Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap, self.note)
        p.setPen(QPen(QColor(90, 140, 200), 1))
        for bx, by, bw, bh in self.boxes:
            p.drawRect(QRectF(x + bx * w, y + by * h, bw * w, bh * h))
        p.end()


class PrintComposer(QDialog):
    """`source` is the viewer tab the images come from (it may change: `set_source`)."""

    status_changed = Signal(str)

    def __init__(self, settings, network, runner, source=None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Print to film")
        self.setWindowFlag(Qt.WindowType.Window, True)
        self.settings_of = settings          # callable -> Settings (the printers)
        self.network = network               # its queue prints
        self.runner = runner                 # previews and printer status on workers
        self.source = source
        printers = self.settings_of().printers
        self.model = FilmComposer(printers[0] if printers else None)
        self.page = 0
        self._preview_job = None
        self._status_job = None

        self.printer_box = QComboBox()
        self.size_box = QComboBox()
        self.orientation_box = QComboBox()
        self.orientation_box.addItems(["PORTRAIT", "LANDSCAPE"])
        self.format_box = QComboBox()
        self.medium_box = QComboBox()
        self.medium_box.addItems(MEDIUMS)
        self.copies = QSpinBox()
        self.copies.setRange(1, 99)
        self.annotate = QCheckBox("Burn in patient, date, numbers and a ruler")
        self.true_size = QCheckBox("True size (1 cm on film = 1 cm in the patient)")
        self.printer_state = QLabel("")
        self.printer_state.setWordWrap(True)
        form = QFormLayout()
        form.addRow("Printer", self.printer_box)
        form.addRow("", self.printer_state)
        form.addRow("Film size", self.size_box)
        form.addRow("Orientation", self.orientation_box)
        form.addRow("Format", self.format_box)
        form.addRow("Medium", self.medium_box)
        form.addRow("Copies", self.copies)
        form.addRow("", self.annotate)
        form.addRow("", self.true_size)

        self.list = FilmList()
        self.list.model().rowsMoved.connect(lambda *a: self._reordered())
        self.list.series_dropped.connect(self.add_series)
        QShortcut(QKeySequence(QKeySequence.StandardKey.Delete), self.list, activated=self.remove_selected)
        add = QPushButton("Add…")
        menu = QMenu(add)
        menu.addAction("Current image", lambda: self.add_from("current"))
        menu.addAction("Key images", lambda: self.add_from("keys"))
        menu.addAction("Every Nth image of the series…", self.add_range)
        menu.addAction("Current layout", lambda: self.add_from("layout"))
        add.setMenu(menu)
        remove = QPushButton("Remove")
        remove.clicked.connect(self.remove_selected)
        clear = QPushButton("Clear")
        clear.clicked.connect(self.model.clear)
        row = QHBoxLayout()
        for b in (add, remove, clear):
            row.addWidget(b)
        left = QVBoxLayout()
        left.addLayout(form)
        left.addWidget(QLabel("Images, in box order (drag to reorder)"))
        left.addWidget(self.list, 1)
        left.addLayout(row)

        self.preview = FilmPreview()
        self.pages = QLabel("")
        previous, following = QPushButton("◀"), QPushButton("▶")
        previous.clicked.connect(lambda: self.show_page(self.page - 1))
        following.clicked.connect(lambda: self.show_page(self.page + 1))
        nav = QHBoxLayout()
        nav.addWidget(previous)
        nav.addWidget(self.pages, 1, Qt.AlignmentFlag.AlignCenter)
        nav.addWidget(following)
        self.print_button = QPushButton("Print")
        self.print_button.setDefault(True)
        self.print_button.clicked.connect(self.print_films)
        self.file_button = QPushButton("Print to file…")
        self.file_button.setToolTip("The same films as a PDF (one page per film, at the film's size) or PNG pages")
        self.file_button.clicked.connect(self.print_to_file)
        close = QPushButton("Close")
        close.clicked.connect(self.close)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        buttons.addWidget(self.file_button)
        buttons.addWidget(self.print_button)
        buttons.addWidget(close)
        right = QVBoxLayout()
        right.addWidget(self.preview, 1)
        right.addLayout(nav)
        right.addLayout(buttons)
        layout = QHBoxLayout(self)
        layout.addLayout(left, 2)
        layout.addLayout(right, 3)

        self.printer_box.currentIndexChanged.connect(self._on_printer)
        self.size_box.currentIndexChanged.connect(lambda: self._option("film_size", self.size_box.currentText()))
        self.orientation_box.currentIndexChanged.connect(
            lambda: self._option("orientation", self.orientation_box.currentText()))
        self.format_box.currentIndexChanged.connect(self._on_format)
        self.medium_box.currentIndexChanged.connect(lambda: self._option("medium", self.medium_box.currentText()))
        self.copies.valueChanged.connect(lambda v: self._option("copies", v))
        self.annotate.toggled.connect(lambda on: self._option("annotate", on))
        self.true_size.toggled.connect(lambda on: self._option("true_size", on))
        self.model.changed.connect(self._on_model)
        self.refresh_printers()
        self.resize(1000, 680)

    # --- printers and options ---------------------------------------------------------------------

    def refresh_printers(self) -> None:
        printers = self.settings_of().printers
        self.printer_box.blockSignals(True)
        self.printer_box.clear()
        for p in printers:
            self.printer_box.addItem(f"{p.name} ({'colour' if p.color else 'grey'})", p.name)
        self.printer_box.blockSignals(False)
        if not printers:
            self.printer_state.setText("No printer yet: add one in Tools ▸ Printers (or 'workstation printer add').")
        self._on_printer()

    def _on_printer(self) -> None:
        name = self.printer_box.currentData()
        printer = next((p for p in self.settings_of().printers if p.name == name), None)
        self.model.set_printer(printer)
        self._fill_choices()
        if printer is not None:
            self._ask_status(printer)

    def _fill_choices(self) -> None:
        printer = self.model.printer
        widgets = (self.size_box, self.format_box, self.orientation_box, self.medium_box, self.copies)
        for box in widgets:
            box.blockSignals(True)
        for box in (self.size_box, self.format_box):
            box.clear()
        if printer is not None:
            self.size_box.addItems(list(printer.film_sizes))
            self.size_box.setCurrentText(self.model.options.film_size or printer.film_size)
            self.format_box.addItem(AUTO)
            self.format_box.addItems(list(printer.formats))
            self.format_box.setCurrentText(self.model.options.display_format or (AUTO if self.model.options.auto
                                                                                 else printer.display_format))
            self.orientation_box.setCurrentText(self.model.options.orientation or printer.orientation)
            self.medium_box.setCurrentText(self.model.options.medium or printer.medium)
            self.copies.setValue(self.model.options.copies or printer.copies)
        for box in widgets:
            box.blockSignals(False)

    def _option(self, key: str, value) -> None:
        if self.model.printer is not None:
            self.model.set_options(**{key: value})

    def _on_format(self) -> None:
        text = self.format_box.currentText()
        if self.model.printer is not None and text:
            self.model.set_options(display_format="" if text == AUTO else text, auto=text == AUTO)

    def _ask_status(self, printer) -> None:
        from workstation.core.net.print_scu import printer_status

        own = self.settings_of().ae_title
        self.printer_state.setText(f"Asking {printer.name} how it is…")
        job = self.runner.submit(f"status of {printer.name}", lambda progress, cancel: printer_status(printer, own))
        job.succeeded.connect(lambda status, p=printer: self._status_arrived(p, status.words(), status.status))
        job.failed.connect(lambda message, p=printer: self._status_arrived(p, message, "FAILURE"))
        self._status_job = job

    def _status_arrived(self, printer, words: str, status: str) -> None:
        if self.model.printer is not printer:
            return
        colour = {"NORMAL": "#8fd18f", "WARNING": "#ffb478"}.get(status, "#ff7a7a")
        self.printer_state.setText(f"<span style='color:{colour}'>{words}</span>")

    # --- images -----------------------------------------------------------------------------------

    def set_source(self, source) -> None:
        self.source = source

    def add_from(self, what: str) -> None:
        if self.source is None:
            self.status_changed.emit("Open a study in a viewer tab first: the images come from it.")
            return
        items = self.source.print_items(what)
        if not items:
            self.status_changed.emit({"keys": "This study has no key images (K marks one).",
                                      "current": "The viewport shows no image."}.get(what, "No images there."))
            return
        self.model.add(items)

    def add_series(self, study_uid: str, key: str) -> None:
        if self.source is not None:
            self.model.add(self.source.series_items(study_uid, key))

    def add_range(self) -> None:
        if self.source is None:
            return
        count = self.source.series_length()
        if not count:
            return
        first, ok = QInputDialog.getInt(self, "Every Nth image", "From image:", 1, 1, count)
        if not ok:
            return
        last, ok = QInputDialog.getInt(self, "Every Nth image", "To image:", count, first, count)
        if not ok:
            return
        step, ok = QInputDialog.getInt(self, "Every Nth image", "Every Nth:", 1, 1, count)
        if ok:
            self.model.add(self.source.print_range(first, last, step))

    def remove_selected(self) -> None:
        self.model.remove(self.list.row(i) for i in self.list.selectedItems())

    def _reordered(self) -> None:
        order = [self.list.item(i).data(Qt.ItemDataRole.UserRole) for i in range(self.list.count())]
        self.model.reorder(order)

    # --- the model changed ------------------------------------------------------------------------

    def _on_model(self) -> None:
        self.list.blockSignals(True)
        self.list.clear()
        for n, item in enumerate(self.model.items):
            name = item.label or item.path.rsplit("/", 1)[-1] + (f" frame {item.frame + 1}" if item.frame else "")
            window = f", W {item.window.width:g} L {item.window.center:g}" if item.window else ""
            entry = QListWidgetItem(f"{n + 1}. {name}{window}")
            entry.setData(Qt.ItemDataRole.UserRole, n)
            self.list.addItem(entry)
        self.list.blockSignals(False)
        self.show_page(min(self.page, max(0, len(self.model.plans()) - 1)))

    def show_page(self, page: int) -> None:
        plans = self.model.plans()
        self.print_button.setEnabled(bool(plans))
        self.file_button.setEnabled(bool(plans))
        if self.model.printer is not None:
            size, orientation = (self.model.options.film_size or self.model.printer.film_size,
                                 self.model.options.orientation or self.model.printer.orientation)
            if size in FILM_SIZES_MM:
                w, h = film_size_mm(size, orientation)
                self.preview.aspect = w / h
        if not plans:
            self.page = 0
            self.preview.image, self.preview.boxes = None, []
            self.pages.setText("no films")
            self.preview.update()
            return
        self.page = max(0, min(page, len(plans) - 1))
        plan = plans[self.page]
        layout = plan.layout
        self.preview.boxes = [(x / layout.width, y / layout.height, w / layout.width, h / layout.height)
                              for x, y, w, h in layout.boxes]
        self.pages.setText(f"film {self.page + 1} of {len(plans)} · {plan.display_format} · {plan.count} images")
        printer = self.model.printer
        low = (printer.min_density or 20) / 100
        high = (printer.max_density or 300) / 100

        def work(progress, cancel):
            return simulate_density(film_page(plan), low, high)

        if self._preview_job is not None:
            self._preview_job.cancel()   # a newer preview replaces it
        job = self.runner.submit("film preview", work)
        job.succeeded.connect(lambda page, j=job: self._preview_arrived(j, page))
        job.failed.connect(lambda message, j=job: self._preview_failed(j, message))
        self._preview_job = job
        self.preview.update()

    def _preview_arrived(self, job, page) -> None:
        if job is not self._preview_job:
            return   # the films changed meanwhile: a newer preview comes
        h, w = page.shape[:2]
        fmt = QImage.Format.Format_RGB888 if page.ndim == 3 else QImage.Format.Format_Grayscale8
        self.preview.image = QImage(page.data, w, h, page.strides[0], fmt).copy()
        self.preview.update()

    def _preview_failed(self, job, message: str) -> None:
        if job is not self._preview_job:
            return
        self.preview.image = None
        self.preview.note = message
        self.preview.update()

    # --- printing ---------------------------------------------------------------------------------

    def print_films(self) -> None:
        printer = self.model.printer
        if printer is None or not self.model.items:
            return
        films = len(self.model.plans())
        transfer = self.network.queue.print(printer, list(self.model.items), self.model.options,
                                            f"{len(self.model.items)} images, {films} film{'s' if films != 1 else ''}")
        self.status_changed.emit(f"Sent to the print queue for {printer.name} (see Transfers).")
        self.last_transfer = transfer

    def print_to_file(self, path: str | None = None):
        """The films as a PDF (or PNG pages for a .png name), written on a worker."""
        plans = self.model.plans()
        if not plans:
            return None
        if path is None:
            path, _ = QFileDialog.getSaveFileName(self, "Print to file", "films.pdf",
                                                  "PDF (*.pdf);;PNG pages (*.png)")
            if not path:
                return None
        from workstation.core.print_file import write_pdf, write_pngs

        def work(progress, cancel):
            if path.lower().endswith(".png"):
                return len(write_pngs(plans, path.removesuffix(".png")))
            return write_pdf(plans, path, progress, cancel)

        job = self.runner.submit("print to file", work)
        job.succeeded.connect(lambda pages: self.status_changed.emit(
            f"Wrote {pages} film{'s' if pages != 1 else ''} to {path}."))
        job.failed.connect(lambda message: self.status_changed.emit(f"The films were not written: {message}"))
        self._file_job = job
        return job
