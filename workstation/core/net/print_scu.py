"""The Print SCU (PS3.4 Annex H): Basic Grayscale (or Color) Print Management through its meta SOP
class. A job is one association: N-GET of the Printer (a printer in FAILURE is not sent to), N-CREATE
of the film session, then per film N-CREATE of the film box, one N-SET per image box with its own
pixels (8-bit, or 12-bit grey for printers that take it; an IDENTITY Presentation LUT referenced when
the printer takes that class), N-ACTION print and N-DELETE of the film box, and at the end N-DELETE of the session, also
when a film fails (no session is left open on the printer). Warnings are kept and the job goes on;
a failure stops it and says which film, which box and why. N-EVENT-REPORTs from the printer are
handed to `on_event`. The film session's and film boxes' UIDs are ours (pynetdicom does not return
the one an SCP would assign); the image boxes' come in the film box's N-CREATE response."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import generate_uid
from pynetdicom import evt

from workstation.core.model.printer import Printer
from workstation.core.net.association import NetworkError, associate, no_answer_text
from workstation.core.tasks import CancelToken

log = logging.getLogger(__name__)

GRAYSCALE_META = "1.2.840.10008.5.1.1.9"
COLOR_META = "1.2.840.10008.5.1.1.18"
FILM_SESSION = "1.2.840.10008.5.1.1.1"
FILM_BOX = "1.2.840.10008.5.1.1.2"
GRAYSCALE_IMAGE_BOX = "1.2.840.10008.5.1.1.4"
COLOR_IMAGE_BOX = "1.2.840.10008.5.1.1.4.1"
PRINTER = "1.2.840.10008.5.1.1.16"
PRINTER_INSTANCE = "1.2.840.10008.5.1.1.17"
PRINT_JOB = "1.2.840.10008.5.1.1.14"
PRESENTATION_LUT = "1.2.840.10008.5.1.1.23"
LITTLE_ENDIAN = ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2"]   # explicit, implicit VR little endian

# PS3.4 H.4 and PS3.7 C: what the statuses of the print services mean, in words for the user
STATUS_TEXT = {
    0x0106: "it refused a value (film size, display format, medium or another setting it does not accept)",
    0x0107: "it ignored attributes it does not know",
    0x0116: "a value was out of its range",
    0x0110: "it failed to process the request",
    0x0112: "it does not know that object",
    0x0117: "the object's UID is not valid",
    0x0119: "it does not know that class",
    0x0120: "an attribute was missing",
    0x0211: "it does not know that operation",
    0x0213: "it ran out of resources",
    0xB600: "memory allocation is not supported",
    0xB601: "film session printing is not supported",
    0xB602: "the film session holds no image boxes",
    0xB603: "the film box holds no image boxes",
    0xB604: "an image was larger than its box and was demagnified",
    0xB605: "the requested minimum or maximum density is outside its range",
    0xB609: "an image was larger than its box and was cropped",
    0xB60A: "an image was larger than its box and was decimated",
    0xC600: "the film session holds no film boxes",
    0xC601: "it could not create the print job",
    0xC602: "it could not create a presentation LUT",
    0xC603: "it could not create an image box",
    0xC613: "the image is larger than its box",
    0xC616: "there is another film box or session in progress",
}


def status_text(code: int) -> str:
    words = STATUS_TEXT.get(code)
    return f"status 0x{code:04X}" + (f": {words}" if words else "")


def is_warning(code: int) -> bool:
    return code in (0x0001, 0x0107, 0x0116) or 0xB000 <= code <= 0xBFFF


class PrintError(NetworkError):
    """A print job that failed; str() names the printer, the film and the box where it can; `report`
    says what was printed before (films printed, images sent)."""

    report: PrintReport | None = None


@dataclass(frozen=True)
class PrinterStatus:
    status: str                 # NORMAL, WARNING or FAILURE
    info: str = ""              # PrinterStatusInfo (a defined term such as FILM TRANSP ERR)
    name: str = ""
    manufacturer: str = ""
    model: str = ""

    def words(self) -> str:
        parts = [self.status + (f" ({self.info})" if self.info and self.info != self.status else "")]
        described = " ".join(p for p in (self.manufacturer, self.model) if p)
        if self.name or described:
            parts.append(", ".join(p for p in (self.name, described) if p))
        return "; ".join(parts)


@dataclass
class Film:
    """One film: its box format and geometry, and an 8-bit image (or None: an empty box) per box."""
    display_format: str
    film_size: str
    orientation: str
    images: list[np.ndarray | None]
    magnification: str = ""
    border_density: str = ""
    empty_density: str = ""
    trim: str = ""
    resolution: str = ""
    configuration: str = ""
    smoothing: str = ""


@dataclass(frozen=True)
class Session:
    copies: int = 1
    priority: str = "MED"
    medium: str = ""
    destination: str = ""
    label: str = ""


@dataclass
class PrintReport:
    films: int = 0
    images: int = 0
    printer: PrinterStatus | None = None
    warnings: list[str] = field(default_factory=list)
    events: list[str] = field(default_factory=list)

    @property
    def status(self) -> str:
        return "printed with warnings" if self.warnings else "printed"


Progress = Callable[[int, int, str], None]


def _meta(printer: Printer) -> str:
    return COLOR_META if printer.color else GRAYSCALE_META


def _accepted(assoc, meta: str, printer: Printer) -> None:
    if not any(c.abstract_syntax == meta and c.result == 0 for c in assoc.accepted_contexts):
        kind = "colour" if meta == COLOR_META else "greyscale"
        raise PrintError(f"printer {printer.name} does not accept {kind} printing (Basic "
                         f"{'Color' if meta == COLOR_META else 'Grayscale'} Print Management): check its profile's "
                         f"{'--color' if meta == COLOR_META else 'colour'} setting")


def _status(assoc, meta: str) -> PrinterStatus:
    """N-GET of the Printer: the status and its info always; name, manufacturer and model where given."""
    wanted = [0x21100010, 0x21100020, 0x21100030, 0x00080070, 0x00081090]
    status, attrs = assoc.send_n_get(wanted, PRINTER, PRINTER_INSTANCE, meta_uid=meta)
    if not status or status.Status not in (0x0000, 0x0107) or attrs is None:   # some give only the first two
        status, attrs = assoc.send_n_get(wanted[:2], PRINTER, PRINTER_INSTANCE, meta_uid=meta)
    if not status or "Status" not in status:
        raise PrintError("the printer did not answer the N-GET of its status")
    if status.Status not in (0x0000, 0x0107) or attrs is None:
        raise PrintError(f"the printer refused to give its status: {status_text(status.Status)}")
    text = lambda keyword: str(attrs.get(keyword, "") or "").strip()   # noqa: E731
    return PrinterStatus(text("PrinterStatus") or "NORMAL", text("PrinterStatusInfo"), text("PrinterName"),
                         text("Manufacturer"), text("ManufacturerModelName"))


def printer_status(printer: Printer, own_aet: str) -> PrinterStatus:
    """Ask the printer how it is (C-ECHO is not enough: a printer out of film answers echoes)."""
    meta = _meta(printer)
    with associate(printer.node(), own_aet, [meta]) as assoc:
        _accepted(assoc, meta, printer)
        return _status(assoc, meta)


def _pixels(image: np.ndarray, color: bool) -> Dataset:
    item = Dataset()
    item.Rows, item.Columns = int(image.shape[0]), int(image.shape[1])
    if color:
        item.SamplesPerPixel = 3
        item.PhotometricInterpretation = "RGB"
        item.PlanarConfiguration = 0
    else:
        item.SamplesPerPixel = 1
        item.PhotometricInterpretation = "MONOCHROME2"
    deep = image.dtype != np.uint8      # 12-bit P-values in 16-bit words
    if deep and color:
        raise PrintError("colour images go as 8 bits")
    item.BitsAllocated, item.BitsStored, item.HighBit = (16, 12, 11) if deep else (8, 8, 7)
    item.PixelRepresentation = 0
    item.PixelAspectRatio = [1, 1]
    data = np.ascontiguousarray(image, dtype="<u2" if deep else np.uint8).tobytes()
    expected = item.Rows * item.Columns * item.SamplesPerPixel * (2 if deep else 1)
    if len(data) != expected:   # printers take short pixel data without a word (PEERS.md): check here
        raise PrintError(f"an image of {len(data)} bytes for {item.Rows} x {item.Columns} pixels")
    item.PixelData = data + (b"\0" if len(data) % 2 else b"")
    return item


def print_films(printer: Printer, own_aet: str, films: Sequence[Film], session: Session = Session(),
                progress: Progress | None = None, cancel: CancelToken | None = None,
                on_event: Callable[[str], None] | None = None, total: int | None = None) -> PrintReport:
    """Print the films as one film session; raises PrintError (naming film and box) on a failure.
    `films` may make each Film when indexed (so only one is in memory); `total`: the images in all."""
    meta = _meta(printer)
    report = PrintReport()
    if total is None:
        total = sum(1 for f in films for i in f.images if i is not None)

    def event(e) -> tuple[int, Dataset | None]:
        """An N-EVENT-REPORT: a printer's or a print job's status, in words."""
        kind = int(e.request.EventTypeID)
        if e.request.AffectedSOPClassUID == PRINT_JOB:
            words = {1: "print job pending", 2: "printing", 3: "print job done", 4: "print job failed"}.get(
                kind, f"print job event {kind}")
        else:
            words = {1: "printer NORMAL", 2: "printer WARNING", 3: "printer FAILURE"}.get(kind, f"printer event {kind}")
        try:
            info = e.event_information
            detail = info.get("PrinterStatusInfo") or info.get("ExecutionStatusInfo") or ""
            if detail:
                words += f": {detail}"
        except Exception:   # noqa: BLE001 - an event we cannot read is still one we answer
            pass
        report.events.append(words)
        if on_event is not None:
            on_event(words)
        return 0x0000, None

    # little endian only: 12-bit pixels are packed as little-endian words
    contexts = [(meta, LITTLE_ENDIAN)] + ([(PRESENTATION_LUT, LITTLE_ENDIAN)]
                                         if printer.presentation_lut and not printer.color else [])
    with associate(printer.node(), own_aet, contexts, evt_handlers=[(evt.EVT_N_EVENT_REPORT, event)]) as assoc:
        _accepted(assoc, meta, printer)
        report.printer = _status(assoc, meta)
        if report.printer.status == "FAILURE":
            raise PrintError(f"printer {printer.name} reports FAILURE ({report.printer.info or 'no reason given'}): "
                             "nothing was sent")
        if report.printer.status == "WARNING":
            report.warnings.append(f"printer {printer.name} reports WARNING ({report.printer.info or 'no reason given'})")
        session_uid = generate_uid()
        ds = Dataset()
        ds.NumberOfCopies = str(int(session.copies))
        ds.PrintPriority = session.priority
        for keyword, value in (("MediumType", session.medium), ("FilmDestination", session.destination),
                               ("FilmSessionLabel", session.label)):
            if value:
                setattr(ds, keyword, value)
        _checked(lambda: assoc.send_n_create(ds, FILM_SESSION, session_uid, meta_uid=meta), report, assoc, printer, own_aet,
                 "the film session")
        lut_uid = None
        try:
            lut_uid = _presentation_lut(assoc, printer, own_aet, report)
            done = 0
            for number in range(1, len(films) + 1):
                if cancel is not None:
                    cancel.raise_if_cancelled()
                film = films[number - 1]
                done = _print_film(assoc, meta, printer, own_aet, film, number, len(films), session_uid, report,
                                   progress, done, total, cancel, lut_uid)
                report.films += 1
        except PrintError as exc:
            exc.report = report
            raise
        finally:
            if assoc.is_established:
                status = assoc.send_n_delete(FILM_SESSION, session_uid, meta_uid=meta)
                if not status or status.Status != 0x0000:
                    log.warning("the film session was not deleted: %s", status)
                if lut_uid is not None:
                    assoc.send_n_delete(PRESENTATION_LUT, lut_uid)
    return report


def _presentation_lut(assoc, printer: Printer, own_aet: str, report: PrintReport) -> str | None:
    """An IDENTITY Presentation LUT when the printer took its context: our pixels are P-values already
    (the display pipeline's output), so the printer maps them to densities by its standard curve."""
    if not any(c.abstract_syntax == PRESENTATION_LUT and c.result == 0 for c in assoc.accepted_contexts):
        return None
    uid = generate_uid()
    ds = Dataset()
    ds.PresentationLUTShape = "IDENTITY"
    _checked(lambda: assoc.send_n_create(ds, PRESENTATION_LUT, uid), report, assoc, printer, own_aet,
             "the presentation LUT")
    return uid


def _checked(request: Callable[[], object], report: PrintReport, assoc, printer: Printer, own_aet: str, what: str):
    """Send a request; its answer's attributes on success or a warning (kept), PrintError on a failure."""
    since = time.monotonic()
    answer = request()
    status, attrs = answer if isinstance(answer, tuple) else (answer, None)
    if not status or "Status" not in status:
        raise PrintError(f"{what}: " + no_answer_text(assoc, printer.node(), own_aet, "our request", since))
    code = int(status.Status)
    comment = str(status.get("ErrorComment", "") or "").strip()
    if code == 0x0000:
        return attrs
    words = f"{what}: printer {printer.name} answered {status_text(code)}" + (f" ({comment})" if comment else "")
    if is_warning(code):
        report.warnings.append(words)
        return attrs
    raise PrintError(words)


def _print_film(assoc, meta: str, printer: Printer, own_aet: str, film: Film, number: int, films: int,
                session_uid: str, report: PrintReport, progress: Progress | None, done: int, total: int,
                cancel: CancelToken | None, lut_uid: str | None = None) -> int:
    name = f"film {number} of {films}"
    box_uid = generate_uid()
    ds = Dataset()
    ds.ImageDisplayFormat = film.display_format
    ds.FilmOrientation = film.orientation
    ds.FilmSizeID = film.film_size
    for keyword, value in (("MagnificationType", film.magnification), ("SmoothingType", film.smoothing),
                           ("BorderDensity", film.border_density),
                           ("EmptyImageDensity", film.empty_density), ("Trim", film.trim),
                           ("RequestedResolutionID", film.resolution),
                           ("ConfigurationInformation", film.configuration)):
        if value:
            setattr(ds, keyword, value)
    if printer.min_density is not None:
        ds.MinDensity = int(printer.min_density)
    if printer.max_density is not None:
        ds.MaxDensity = int(printer.max_density)
    reference = Dataset()
    reference.ReferencedSOPClassUID = FILM_SESSION
    reference.ReferencedSOPInstanceUID = session_uid
    ds.ReferencedFilmSessionSequence = DicomSequence([reference])
    if lut_uid is not None:
        lut = Dataset()
        lut.ReferencedSOPClassUID = PRESENTATION_LUT
        lut.ReferencedSOPInstanceUID = lut_uid
        ds.ReferencedPresentationLUTSequence = DicomSequence([lut])
    attrs = _checked(lambda: assoc.send_n_create(ds, FILM_BOX, box_uid, meta_uid=meta), report, assoc, printer, own_aet,
                     f"{name} ({film.display_format}, {film.film_size} {film.orientation.lower()})")
    boxes = list(getattr(attrs, "ReferencedImageBoxSequence", None) or []) if attrs is not None else []
    if len(boxes) < len(film.images):
        raise PrintError(f"{name}: printer {printer.name} made {len(boxes)} image boxes for {film.display_format}, "
                         f"not {len(film.images)}")
    try:
        for position, (image, box) in enumerate(zip(film.images, boxes, strict=False), 1):
            if image is None:
                continue
            if cancel is not None:
                cancel.raise_if_cancelled()
            item = Dataset()
            item.ImageBoxPosition = position
            pixels = _pixels(image, printer.color)
            if printer.color:
                item.BasicColorImageSequence = DicomSequence([pixels])
            else:
                item.BasicGrayscaleImageSequence = DicomSequence([pixels])
            _checked(lambda item=item, box=box: assoc.send_n_set(item, box.ReferencedSOPClassUID,
                                                                   box.ReferencedSOPInstanceUID, meta_uid=meta),
                     report, assoc, printer, own_aet, f"{name}, box {position}")
            report.images += 1
            done += 1
            if progress is not None:
                progress(done, total, f"{name}: box {position} sent")
        _checked(lambda: assoc.send_n_action(None, 1, FILM_BOX, box_uid, meta_uid=meta), report, assoc, printer, own_aet,
                 f"{name}: print")
    finally:
        if assoc.is_established:
            assoc.send_n_delete(FILM_BOX, box_uid, meta_uid=meta)
    return done
