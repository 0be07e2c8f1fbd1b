"""The pynetdicom print peer (tests/print_peer.py) driven by a minimal pynetdicom print SCU."""

from __future__ import annotations

import numpy as np
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import generate_uid
from pynetdicom import AE, evt

from tests.peers import running
from tests.print_peer import (
    COLOR_IMAGE_BOX,
    COLOR_META,
    FILM_BOX,
    FILM_SESSION,
    GRAYSCALE_IMAGE_BOX,
    GRAYSCALE_META,
    PRINTER,
    PRINTER_INSTANCE,
    FakePrinter,
    boxes_of,
)


@pytest.fixture
def printer(request):
    with running(FakePrinter(**getattr(request, "param", {}))) as peer:
        yield peer


def connect(peer: FakePrinter, metas=(COLOR_META,), handlers=None):
    ae = AE(ae_title="WSTEST")
    ae.acse_timeout = ae.network_timeout = ae.dimse_timeout = 10
    for meta in metas:
        ae.add_requested_context(meta)
    assoc = ae.associate("127.0.0.1", peer.port, ae_title=peer.aet, evt_handlers=handlers or [])
    assert assoc.is_established
    return assoc


def session(assoc, meta=COLOR_META) -> str:
    uid = generate_uid()
    ds = Dataset()
    ds.NumberOfCopies, ds.MediumType = "1", "PAPER"
    status, _ = assoc.send_n_create(ds, FILM_SESSION, uid, meta_uid=meta)
    assert status.Status == 0x0000
    return uid


def film_box(assoc, session_uid: str, meta=COLOR_META, display="STANDARD\\2,2", size="14INX17IN"):
    uid = generate_uid()
    ds = Dataset()
    ds.ImageDisplayFormat, ds.FilmSizeID, ds.FilmOrientation = display, size, "PORTRAIT"
    ref = Dataset()
    ref.ReferencedSOPClassUID, ref.ReferencedSOPInstanceUID = FILM_SESSION, session_uid
    ds.ReferencedFilmSessionSequence = Sequence([ref])
    status, attrs = assoc.send_n_create(ds, FILM_BOX, uid, meta_uid=meta)
    return uid, status, attrs


def image_item(position: int, image: np.ndarray, planar: int = 0) -> Dataset:
    pixels = Dataset()
    pixels.Rows, pixels.Columns = image.shape[:2]
    if image.ndim == 3:
        pixels.SamplesPerPixel, pixels.PhotometricInterpretation, pixels.PlanarConfiguration = 3, "RGB", planar
        data = image.transpose(2, 0, 1) if planar else image
    else:
        pixels.SamplesPerPixel, pixels.PhotometricInterpretation = 1, "MONOCHROME2"
        data = image
    bits = image.dtype.itemsize * 8
    pixels.BitsAllocated, pixels.BitsStored, pixels.HighBit, pixels.PixelRepresentation = bits, \
        12 if bits == 16 else 8, 11 if bits == 16 else 7, 0
    raw = np.ascontiguousarray(data).astype("<u2" if bits == 16 else np.uint8).tobytes()
    pixels.PixelData = raw + b"\0" * (len(raw) % 2)
    item = Dataset()
    item.ImageBoxPosition = position
    setattr(item, "BasicColorImageSequence" if image.ndim == 3 else "BasicGrayscaleImageSequence",
            Sequence([pixels]))
    return item


def test_display_formats():
    assert boxes_of("STANDARD\\2,2") == 4 and boxes_of("STANDARD\\6,6") == 36 and boxes_of("STANDARD\\1,1") == 1
    assert boxes_of("ROW\\2,3,1") == 6 and boxes_of("COL\\1") == 1
    assert boxes_of("STANDARD\\7,1") is None and boxes_of("STANDARD\\0,2") is None and boxes_of("SLIDE") is None


def test_a_colour_job_is_recorded_exactly(printer):
    rng = np.random.default_rng(7)
    images = [rng.integers(0, 256, (5 + n, 7, 3), dtype=np.uint8) for n in range(4)]
    assoc = connect(printer)
    try:
        status, attrs = assoc.send_n_get([0x21100010, 0x21100020, 0x21100030, 0x00080070, 0x00081090],
                                         PRINTER, PRINTER_INSTANCE, meta_uid=COLOR_META)
        assert status.Status == 0x0000
        assert (attrs.PrinterStatus, attrs.PrinterStatusInfo, attrs.PrinterName) == ("NORMAL", "NORMAL", "FAKEPRINTER")
        assert attrs.Manufacturer and attrs.ManufacturerModelName
        session_uid = session(assoc)
        box_uid, status, attrs = film_box(assoc, session_uid)
        assert status.Status == 0x0000
        boxes = list(attrs.ReferencedImageBoxSequence)
        assert [b.ReferencedSOPClassUID for b in boxes] == [COLOR_IMAGE_BOX] * 4
        assert attrs.ReferencedFilmSessionSequence[0].ReferencedSOPInstanceUID == session_uid
        for position, (image, box) in enumerate(zip(images, boxes, strict=True), 1):
            item = image_item(position, image, planar=1 if position == 3 else 0)
            status, _ = assoc.send_n_set(item, box.ReferencedSOPClassUID, box.ReferencedSOPInstanceUID,
                                         meta_uid=COLOR_META)
            assert status.Status == 0x0000, position
        status, _ = assoc.send_n_action(None, 1, FILM_BOX, box_uid, meta_uid=COLOR_META)
        assert status.Status == 0x0000
        assert printer.open_sessions == [session_uid]
        assert assoc.send_n_delete(FILM_BOX, box_uid, meta_uid=COLOR_META).Status == 0x0000
        assert assoc.send_n_delete(FILM_SESSION, session_uid, meta_uid=COLOR_META).Status == 0x0000
    finally:
        assoc.release()
    assert list(printer.sessions) == [session_uid] and printer.sessions[session_uid].MediumType == "PAPER"
    (film,) = printer.films
    assert film["uid"] == box_uid and film["session"] == session_uid and film["printed"] and film["color"]
    assert film["attributes"].ImageDisplayFormat == "STANDARD\\2,2" and film["attributes"].FilmSizeID == "14INX17IN"
    assert [b["position"] for b in film["boxes"]] == [1, 2, 3, 4]
    for image, box in zip(images, film["boxes"], strict=True):
        assert box["array"].dtype == np.uint8 and np.array_equal(box["array"], image)
    assert printer.deleted == [(FILM_BOX, box_uid), (FILM_SESSION, session_uid)]
    assert printer.open_sessions == []


def test_grey_12_bit_job_on_a_grey_only_printer():
    with running(FakePrinter(color=False)) as peer:
        ae = AE(ae_title="WSTEST")
        ae.add_requested_context(COLOR_META)
        ae.add_requested_context(GRAYSCALE_META)
        assoc = ae.associate("127.0.0.1", peer.port, ae_title=peer.aet)
        assert assoc.is_established
        try:
            results = {c.abstract_syntax: c.result for c in assoc.accepted_contexts + assoc.rejected_contexts}
            assert results[GRAYSCALE_META] == 0 and results[COLOR_META] != 0
            image = np.arange(12, dtype=np.uint16).reshape(3, 4) * 341
            session_uid = session(assoc, GRAYSCALE_META)
            box_uid, status, attrs = film_box(assoc, session_uid, GRAYSCALE_META, "STANDARD\\1,1")
            (box,) = attrs.ReferencedImageBoxSequence
            assert status.Status == 0x0000 and box.ReferencedSOPClassUID == GRAYSCALE_IMAGE_BOX
            status, _ = assoc.send_n_set(image_item(1, image), GRAYSCALE_IMAGE_BOX, box.ReferencedSOPInstanceUID,
                                         meta_uid=GRAYSCALE_META)
            assert status.Status == 0x0000
            assert assoc.send_n_action(None, 1, FILM_SESSION, session_uid, meta_uid=GRAYSCALE_META)[0].Status == 0
        finally:
            assoc.release()
        (film,) = peer.films
        assert film["printed"] and not film["color"] and np.array_equal(film["boxes"][0]["array"], image)
        assert peer.open_sessions == [session_uid]   # never deleted: the tests of our SCU assert this is empty


def test_colour_refused_by_a_grey_only_printer():
    with running(FakePrinter(color=False)) as peer:
        ae = AE(ae_title="WSTEST")
        ae.add_requested_context(COLOR_META)
        assoc = ae.associate("127.0.0.1", peer.port, ae_title=peer.aet)
        assert not assoc.is_established   # no context accepted: rejected or aborted
        assert peer.sessions == {}


@pytest.mark.parametrize("field,value", [("size", "35MMX35MM"), ("display", "STANDARD\\7,7"), ("display", "SLIDE")])
def test_values_outside_the_lists_get_0106(printer, field, value):
    assoc = connect(printer)
    try:
        session_uid = session(assoc)
        _, status, _ = film_box(assoc, session_uid, **{field: value})
        assert status.Status == 0x0106 and value.replace("\\", "/") in status.ErrorComment
    finally:
        assoc.release()
    assert printer.films == []


def test_short_pixel_data_gets_0106(printer):
    assoc = connect(printer)
    try:
        _, _, attrs = film_box(assoc, session(assoc), display="STANDARD\\1,1")
        box = attrs.ReferencedImageBoxSequence[0]
        item = image_item(1, np.zeros((4, 4, 3), np.uint8))
        item.BasicColorImageSequence[0].PixelData = bytes(46)
        status, _ = assoc.send_n_set(item, COLOR_IMAGE_BOX, box.ReferencedSOPInstanceUID, meta_uid=COLOR_META)
        assert status.Status == 0x0106 and "46 bytes" in status.ErrorComment
    finally:
        assoc.release()
    assert printer.films[0]["boxes"][0]["array"] is None


@pytest.mark.parametrize("printer", [{"fail_on_set": 2}], indirect=True)
def test_fail_on_set(printer):
    assoc = connect(printer)
    try:
        _, _, attrs = film_box(assoc, session(assoc), display="ROW\\1,2")
        codes = []
        for position, box in enumerate(attrs.ReferencedImageBoxSequence, 1):
            status, _ = assoc.send_n_set(image_item(position, np.full((2, 2, 3), position, np.uint8)),
                                         COLOR_IMAGE_BOX, box.ReferencedSOPInstanceUID, meta_uid=COLOR_META)
            codes.append(status.Status)
            if status.Status == 0xC000:
                assert "N-SET 2" in status.ErrorComment
    finally:
        assoc.release()
    assert codes == [0x0000, 0xC000, 0x0000]
    assert [b["position"] for b in printer.films[0]["boxes"]] == [1, None, 3]


@pytest.mark.parametrize("printer", [{"warn_on_create_film_box": True, "send_event_reports": True}], indirect=True)
def test_warning_on_film_box_and_event_report(printer):
    events = []

    def on_event(event):
        events.append((event.request.AffectedSOPClassUID, event.request.EventTypeID))
        return 0x0000, None

    assoc = connect(printer, handlers=[(evt.EVT_N_EVENT_REPORT, on_event)])
    try:
        box_uid, status, attrs = film_box(assoc, session(assoc), display="STANDARD\\1,1")
        assert status.Status == 0xB605 and len(attrs.ReferencedImageBoxSequence) == 1
        box = attrs.ReferencedImageBoxSequence[0]
        status, _ = assoc.send_n_set(image_item(1, np.ones((2, 2, 3), np.uint8)), COLOR_IMAGE_BOX,
                                     box.ReferencedSOPInstanceUID, meta_uid=COLOR_META)
        assert status.Status == 0x0000
        assert assoc.send_n_action(None, 1, FILM_BOX, box_uid, meta_uid=COLOR_META)[0].Status == 0x0000
    finally:
        assoc.release()
    assert events == [(PRINTER, 1)] and printer.events_sent == [(1, 0x0000)]
    assert printer.films[0]["printed"]
