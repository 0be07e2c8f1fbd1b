"""A DICOM film printer for the tests, written with pynetdicom: colour and grey, with failures on demand.

DCMTK's dcmprscp (tests.peers.PrintSCP) is the real grey printer; it cannot print colour and cannot fail in
the middle of a job. This one can. It keeps what it received for the test to inspect: `sessions`, `films`
(each with its image boxes' pixels as numpy arrays), `deleted` and `open_sessions`.
Unlike dcmprscp it checks the pixel data's length (see ../shared/PEERS.md), answering 0x0106 when wrong.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field

import numpy as np
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import generate_uid
from pynetdicom import AE, evt
from pynetdicom.sop_class import Verification

from tests.peers import free_port

COLOR_META = "1.2.840.10008.5.1.1.18"
GRAYSCALE_META = "1.2.840.10008.5.1.1.9"
PRESENTATION_LUT = "1.2.840.10008.5.1.1.23"
PRINTER = "1.2.840.10008.5.1.1.16"
PRINTER_INSTANCE = "1.2.840.10008.5.1.1.17"
FILM_SESSION = "1.2.840.10008.5.1.1.1"
FILM_BOX = "1.2.840.10008.5.1.1.2"
GRAYSCALE_IMAGE_BOX = "1.2.840.10008.5.1.1.4"
COLOR_IMAGE_BOX = "1.2.840.10008.5.1.1.4.1"
TRANSFER_SYNTAXES = ["1.2.840.10008.1.2", "1.2.840.10008.1.2.1"]   # little endian only: the arrays assume it

FILM_SIZES = ["8INX10IN", "10INX12IN", "11INX14IN", "14INX14IN", "14INX17IN", "24CMX24CM", "24CMX30CM", "A4"]


def boxes_of(display_format: str) -> int | None:
    """How many image boxes an Image Display Format makes, None when this printer does not take it."""
    match = re.fullmatch(r"STANDARD\\([1-6]),([1-6])", display_format)
    if match:
        return int(match[1]) * int(match[2])
    match = re.fullmatch(r"(?:ROW|COL)\\([1-9]\d*(?:,[1-9]\d*)*)", display_format)
    return sum(int(n) for n in match[1].split(",")) if match else None


def _status(code: int, comment: str = "") -> Dataset:
    status = Dataset()
    status.Status = code
    if comment:
        status.ErrorComment = comment.replace("\\", "/")[:64]   # LO: no backslash
    return status


def pixels_of(item: Dataset, color: bool) -> np.ndarray | str:
    """The item's pixels as (rows, columns[, 3]), or why they are refused."""
    try:
        rows, columns, bits = int(item.Rows), int(item.Columns), int(item.BitsAllocated)
        samples, photometric = int(item.SamplesPerPixel), str(item.PhotometricInterpretation)
        data = bytes(item.PixelData)
    except (AttributeError, TypeError, ValueError, KeyError) as error:
        return f"incomplete image item: {error}"
    if color and (samples, photometric, bits) != (3, "RGB", 8):
        return f"colour needs 3 samples RGB 8 bits, not {samples} {photometric} {bits}"
    if not color and ((samples, photometric) != (1, "MONOCHROME2") or bits not in (8, 16)):
        return f"grey needs 1 sample MONOCHROME2 8 or 16 bits, not {samples} {photometric} {bits}"
    if not color and bits == 16 and int(item.get("BitsStored", 16)) not in (12, 16):
        return f"BitsStored {item.BitsStored} in 16"
    size = rows * columns * samples * bits // 8
    if len(data) not in (size, size + size % 2):
        return f"pixel data of {len(data)} bytes for {rows} x {columns} x {samples} x {bits // 8}"
    array = np.frombuffer(data[:size], dtype=np.uint8 if bits == 8 else "<u2")
    if not color:
        return array.reshape(rows, columns).copy()
    if int(item.get("PlanarConfiguration", 0)) == 1:
        return array.reshape(3, rows, columns).transpose(1, 2, 0).copy()
    return array.reshape(rows, columns, 3).copy()


@dataclass
class FakePrinter:
    """A print SCP on 127.0.0.1 in a background thread; `tests.peers.running(FakePrinter())` runs it."""

    aet: str = "COLORPRINTER"
    port: int = 0
    color: bool = True
    status: str = "NORMAL"
    status_info: str = "NORMAL"
    printer_name: str = "FAKEPRINTER"
    manufacturer: str = "Workstation tests"
    model: str = "pynetdicom print peer"
    film_sizes: list[str] = field(default_factory=lambda: list(FILM_SIZES))
    fail_on_set: int | None = None
    warn_on_create_film_box: bool = False
    send_event_reports: bool = False
    # What it received (read them under no lock once the association is over):
    sessions: dict[str, Dataset] = field(repr=False, default_factory=dict)
    films: list[dict] = field(repr=False, default_factory=list)
    deleted: list[tuple[str, str]] = field(repr=False, default_factory=list)
    presentation_luts: dict[str, Dataset] = field(repr=False, default_factory=dict)
    sets: int = field(default=0, repr=False)
    events_sent: list[tuple[int, int]] = field(repr=False, default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._server = None

    @property
    def open_sessions(self) -> list[str]:
        """The film sessions created and not deleted."""
        gone = {uid for cls, uid in self.deleted if cls == FILM_SESSION}
        return [uid for uid in self.sessions if uid not in gone]

    def film(self, uid: str) -> dict | None:
        return next((f for f in self.films if f["uid"] == uid), None)

    def start(self) -> None:
        self.port = self.port or free_port()
        ae = AE(ae_title=self.aet)
        ae.network_timeout = ae.acse_timeout = ae.dimse_timeout = 10
        for uid in ([COLOR_META] if self.color else []) + [GRAYSCALE_META, PRESENTATION_LUT, PRINTER]:
            ae.add_supported_context(uid, TRANSFER_SYNTAXES)
        ae.add_supported_context(Verification)
        handlers = [(evt.EVT_N_GET, self._n_get), (evt.EVT_N_CREATE, self._n_create), (evt.EVT_N_SET, self._n_set),
                    (evt.EVT_N_ACTION, self._n_action), (evt.EVT_N_DELETE, self._n_delete)]
        self._server = ae.start_server(("127.0.0.1", self.port), block=False, evt_handlers=handlers)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server = None

    # -- the handlers: each answers (status, dataset) or a status -----------------------------------------------

    def _n_get(self, event):
        req = event.request
        if req.RequestedSOPClassUID != PRINTER or req.RequestedSOPInstanceUID != PRINTER_INSTANCE:
            return _status(0x0112, "only the Printer instance can be read"), None
        ds = Dataset()
        ds.PrinterStatus, ds.PrinterStatusInfo, ds.PrinterName = self.status, self.status_info, self.printer_name
        ds.Manufacturer, ds.ManufacturerModelName = self.manufacturer, self.model
        wanted = list(req.AttributeIdentifierList or [])
        if wanted:
            answer = Dataset()
            for tag in wanted:
                if tag in ds:
                    answer[tag] = ds[tag]
            ds = answer
        return 0x0000, ds

    def _n_create(self, event):
        req, attrs = event.request, event.attribute_list
        uid = str(req.AffectedSOPInstanceUID or generate_uid())
        answer = Dataset()
        answer.update(attrs)
        if req.AffectedSOPInstanceUID is None:
            answer.AffectedSOPInstanceUID = uid
        with self._lock:
            if req.AffectedSOPClassUID == FILM_SESSION:
                if uid in self.sessions:
                    return _status(0x0111, "film session exists"), None
                self.sessions[uid] = attrs
                return 0x0000, answer
            if req.AffectedSOPClassUID == PRESENTATION_LUT:
                self.presentation_luts[uid] = attrs
                return 0x0000, answer
            if req.AffectedSOPClassUID != FILM_BOX:
                return _status(0x0118, "not a class this printer creates"), None
            return self._create_film_box(event.context.abstract_syntax == COLOR_META, uid, attrs, answer)

    def _create_film_box(self, color: bool, uid: str, attrs: Dataset, answer: Dataset):
        display = str(attrs.get("ImageDisplayFormat", "") or "")
        count = boxes_of(display)
        if count is None:
            return _status(0x0106, f"ImageDisplayFormat '{display}'"), None
        answer.FilmSizeID = str(attrs.get("FilmSizeID", "") or self.film_sizes[0])
        if answer.FilmSizeID not in self.film_sizes:
            return _status(0x0106, f"FilmSizeID '{answer.FilmSizeID}'"), None
        answer.FilmOrientation = str(attrs.get("FilmOrientation", "") or "PORTRAIT")
        if answer.FilmOrientation not in ("PORTRAIT", "LANDSCAPE"):
            return _status(0x0106, f"FilmOrientation '{answer.FilmOrientation}'"), None
        refs = attrs.get("ReferencedFilmSessionSequence") or []
        session = str(refs[0].ReferencedSOPInstanceUID) if refs else (self.open_sessions or [""])[-1]
        if session not in self.sessions:
            return _status(0x0106, "no such film session referenced"), None
        if self.film(uid) is not None:
            return _status(0x0111, "film box exists"), None
        box_class = COLOR_IMAGE_BOX if color else GRAYSCALE_IMAGE_BOX
        boxes = []
        for _ in range(count):
            ref = Dataset()
            ref.ReferencedSOPClassUID, ref.ReferencedSOPInstanceUID = box_class, generate_uid()
            boxes.append(ref)
        session_ref = Dataset()
        session_ref.ReferencedSOPClassUID, session_ref.ReferencedSOPInstanceUID = FILM_SESSION, session
        answer.ReferencedFilmSessionSequence = Sequence([session_ref])
        answer.ReferencedImageBoxSequence = Sequence(boxes)
        self.films.append({
            "uid": uid, "session": session, "attributes": answer, "color": color, "printed": False,
            "boxes": [{"uid": str(ref.ReferencedSOPInstanceUID), "position": None, "array": None, "attributes": None}
                      for ref in boxes],
        })
        if self.warn_on_create_film_box:
            return _status(0xB605, "MinDensity or MaxDensity outside the printer's range"), answer
        return 0x0000, answer

    def _n_set(self, event):
        req, mods = event.request, event.modification_list
        cls, uid = str(req.RequestedSOPClassUID), str(req.RequestedSOPInstanceUID)
        with self._lock:
            self.sets += 1
            if self.fail_on_set is not None and self.sets == self.fail_on_set:
                return _status(0xC000, f"injected failure on N-SET {self.sets}"), None
            if cls == FILM_SESSION and uid in self.sessions:
                self.sessions[uid].update(mods)
                return 0x0000, mods
            if cls == FILM_BOX and (film := self.film(uid)) is not None:
                film["attributes"].update(mods)
                return 0x0000, mods
            found = [(f, n, b) for f in self.films for n, b in enumerate(f["boxes"], 1) if b["uid"] == uid]
            if cls not in (COLOR_IMAGE_BOX, GRAYSCALE_IMAGE_BOX) or not found:
                return _status(0x0112, "no such instance"), None
            film, number, box = found[0]
            color = cls == COLOR_IMAGE_BOX
            keyword = "BasicColorImageSequence" if color else "BasicGrayscaleImageSequence"
            if (COLOR_IMAGE_BOX if film["color"] else GRAYSCALE_IMAGE_BOX) != cls:
                return _status(0x0119, "image box class is not the film's"), None
            if int(mods.get("ImageBoxPosition", 0) or 0) != number:
                return _status(0x0106, f"ImageBoxPosition {mods.get('ImageBoxPosition')} is not {number}"), None
            items = mods.get(keyword) or []
            if len(items) != 1:
                return _status(0x0120, f"{keyword} missing"), None
            pixels = pixels_of(items[0], color)
            if isinstance(pixels, str):
                return _status(0x0106, pixels), None
            box.update(position=number, array=pixels, attributes=mods)
            return 0x0000, None

    def _n_action(self, event):
        req = event.request
        cls, uid = str(req.RequestedSOPClassUID), str(req.RequestedSOPInstanceUID)
        if req.ActionTypeID != 1:
            return _status(0x0123, "only action 1 (print)"), None
        with self._lock:
            if cls == FILM_BOX and (film := self.film(uid)) is not None:
                films = [film]
            elif cls == FILM_SESSION and uid in self.sessions:
                films = [f for f in self.films if f["session"] == uid]
                if not films:
                    return _status(0xC600, "the film session has no film box"), None
            else:
                return _status(0x0112, "no such instance"), None
            for film in films:
                film["printed"] = True
            empty = all(b["array"] is None for f in films for b in f["boxes"])
        if self.send_event_reports:   # sent before the N-ACTION's answer: pynetdicom's SCU serves it meanwhile
            self._report(event)
        return (_status(0xB603, "empty page") if empty else 0x0000), None

    def _report(self, event) -> None:
        kind = {"NORMAL": 1, "WARNING": 2, "FAILURE": 3}.get(self.status, 1)
        info = None
        if kind != 1:
            info = Dataset()
            info.PrinterStatusInfo, info.PrinterName = self.status_info, self.printer_name
        answer, _ = event.assoc.send_n_event_report(info, kind, PRINTER, PRINTER_INSTANCE,
                                                    meta_uid=event.context.abstract_syntax)
        self.events_sent.append((kind, int(answer.get("Status", -1)) if answer else -1))

    def _n_delete(self, event):
        req = event.request
        cls, uid = str(req.RequestedSOPClassUID), str(req.RequestedSOPInstanceUID)
        with self._lock:
            known = (cls == FILM_SESSION and uid in self.sessions) or (cls == FILM_BOX and self.film(uid) is not None) \
                or (cls == PRESENTATION_LUT and uid in self.presentation_luts)
            if not known or (cls, uid) in self.deleted:
                return _status(0x0112, "no such instance")
            self.deleted.append((cls, uid))
            return 0x0000
