"""Printing to DCMTK's dcmprscp, the real film printer of the tests: what it stored (Stored Print and
Hardcopy Grayscale Image objects in its database folder) has the display format, film size,
orientation, the boxes at their positions, and each box holds exactly the pixels the display pipeline
rendered for that image with that window. A selection larger than a film goes on several films, in
order; refusals and a printer that is down are said in one line naming the film, and leave nothing
open on the printer."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest

from tests.peers import free_port
from workstation.core.model.printer import Printer
from workstation.core.net.print_scu import PrintError, printer_status
from workstation.core.pixels.film import FilmLayout, fitted_size
from workstation.core.pixels.image import ImageSource
from workstation.core.pixels.render import render
from workstation.core.pixels.voi import Window
from workstation.core.printing import FilmOptions, items_of, planned_films, print_job

pytestmark = pytest.mark.peers
GE = "dcm_qa_ct/In/GE"
OWN = "WORKSTATION"


@pytest.fixture
def ge(samples) -> list[Path]:
    return sorted((samples / GE).glob("*.dcm"), key=lambda p: int(p.stem))


def printer_for(scp, **values) -> Printer:
    return Printer("film", scp.aet, "127.0.0.1", scp.port, **values)


def stored_films(scp) -> list[tuple[pydicom.Dataset, dict[int, np.ndarray]]]:
    """Each printed film's box attributes and its boxes' pixels by Image Box Position, in print order."""
    images = {}
    for path in scp.stored_images():
        ds = pydicom.dcmread(path)
        images[ds.SOPInstanceUID] = ds.pixel_array
    out = []
    for path in sorted(scp.stored_prints(), key=lambda p: p.stat().st_mtime_ns):
        sp = pydicom.dcmread(path)
        boxes = {int(b.ImageBoxPosition): images[b.ReferencedImageSequence[0].ReferencedSOPInstanceUID]
                 for b in sp.ImageBoxContentSequence}
        out.append((sp.FilmBoxContentSequence[0], boxes))
    return out


def blocks(image: np.ndarray, n: int = 16) -> np.ndarray:
    """n x n means over equal parts of the image, whatever its size."""
    rows = np.linspace(0, image.shape[0], n + 1).astype(int)
    columns = np.linspace(0, image.shape[1], n + 1).astype(int)
    return np.array([[image[rows[i]:rows[i + 1], columns[j]:columns[j + 1]].mean() for j in range(n)]
                     for i in range(n)])


def test_a_2x2_film_holds_exactly_what_the_pipeline_rendered(print_scp, ge):
    """At 512/7 dpi a 14x14 in film's 2x2 boxes are 512 px square: the CT slices go at their own size,
    so each box must be the display pipeline's output for that window, pixel for pixel."""
    printer = printer_for(print_scp, dpi=512 / 7, film_sizes=("14INX14IN",), film_size="14INX14IN")
    window = Window(40.0, 400.0)
    status = printer_status(printer, OWN)
    assert status.status == "NORMAL"
    report = print_job(printer, OWN, items_of(map(str, ge[:4]), window), FilmOptions(display_format="STANDARD\\2,2"))
    assert (report.films, report.images, report.status) == (1, 4, "printed")
    ((film, boxes),) = stored_films(print_scp)
    assert (film.ImageDisplayFormat, film.FilmSizeID, film.FilmOrientation) == ("STANDARD\\2,2", "14INX14IN", "PORTRAIT")
    assert sorted(boxes) == [1, 2, 3, 4]
    for position, path in enumerate(ge[:4], 1):
        expected = render(ImageSource.open(path), 0, window)
        assert boxes[position].shape == (512, 512)
        np.testing.assert_array_equal(boxes[position], expected)


def test_a_4x5_film_and_a_selection_larger_than_one_film(print_scp, ge):
    """28 slices on 4x5 films of 14x17 in at 300 dpi: two films, the second with 8 boxes, in order; each
    box as large as fits its box (1066 x 1016 px), the slice's shape kept."""
    printer = printer_for(print_scp)
    window = Window(40.0, 400.0)
    report = print_job(printer, OWN, items_of(map(str, ge), window), FilmOptions(display_format="STANDARD\\4,5"))
    assert (report.films, report.images) == (2, 28)
    films = stored_films(print_scp)
    assert [len(boxes) for _, boxes in films] == [20, 8]
    assert all(f.ImageDisplayFormat == "STANDARD\\4,5" and f.FilmSizeID == "14INX17IN" for f, _ in films)
    layout = FilmLayout.of("14INX17IN", "PORTRAIT", "STANDARD\\4,5", 300)
    side = fitted_size(512, 512, layout.boxes[0][2], layout.boxes[0][3])
    for n, path in enumerate(ge):
        film, position = divmod(n, 20)
        got = films[film][1][position + 1]
        assert got.shape == side
        native = render(ImageSource.open(path), 0, window)
        # resampled, not another image: the mean grey and a coarse picture agree with the slice's own
        assert abs(got.mean() - native.mean()) < 2.0
        assert np.corrcoef(blocks(got).ravel(), blocks(native).ravel())[0, 1] > 0.99


def test_the_smallest_format_that_fits_is_chosen(print_scp, ge):
    printer = printer_for(print_scp)
    plans = planned_films(printer, items_of(map(str, ge[:5])), FilmOptions(auto=True))
    assert [p.display_format for p in plans] == ["STANDARD\\2,3"] and plans[0].count == 5


def test_refusals_are_said_naming_the_film_and_leave_no_session_open(print_scp, ge):
    items = items_of(map(str, ge[:2]))
    # a display format dcmprscp does not take: it answers 0x0106
    with pytest.raises(PrintError, match=r"film 1 of 1 \(STANDARD\\6,6.*0x0106: it refused a value"):
        print_job(printer_for(print_scp, formats=("STANDARD\\6,6",)), OWN, items, FilmOptions(display_format="STANDARD\\6,6"))
    # a film size it does not take (our profile says it does)
    with pytest.raises(PrintError, match="film 1 of 1 .*A4.*0x0106"):
        print_job(printer_for(print_scp, film_sizes=("A4",), film_size="A4"), OWN, items)
    assert stored_films(print_scp) == []
    # the printer serves one association at a time and still prints: nothing was left open
    report = print_job(printer_for(print_scp), OWN, items)
    assert report.films == 1 and len(stored_films(print_scp)) == 1


def test_a_printer_that_is_down_is_said_in_one_line(ge):
    printer = Printer("film", "PRINTSCP", "127.0.0.1", free_port(), connect_timeout=2)
    with pytest.raises(Exception) as caught:
        print_job(printer, OWN, items_of(map(str, ge[:1])))
    message = str(caught.value)
    assert "refused the connection" in message and "\n" not in message


def ws(home: Path, *args: str, code: int = 0) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "workstation", "--home", str(home), *args], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == code, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    return done


def test_the_command_line(print_scp, ge, tmp_path):
    home = tmp_path / "home"
    ws(home, "printer", "add", "film", "--aet", print_scp.aet, "--host", "127.0.0.1", "--port", str(print_scp.port))
    (listed,) = json.loads(ws(home, "printer", "list", "--json").stdout)
    assert (listed["name"], listed["aet"], listed["port"], listed["color"]) == ("film", print_scp.aet, print_scp.port, False)
    assert json.loads(ws(home, "printer", "status", "film", "--json").stdout)["status"] == "NORMAL"
    done = ws(home, "print", "film", *map(str, ge[:6]), "--format", "STANDARD\\2,2", "--window", "40", "400", "--json")
    assert {k: json.loads(done.stdout)[k] for k in ("films", "images", "status")} == {"films": 2, "images": 6,
                                                                                     "status": "printed"}
    refused = ws(home, "print", "film", str(ge[0]), "--format", "STANDARD\\6,6", code=2)
    (line,) = refused.stderr.strip().splitlines()
    assert line.startswith("error: film 1 of 1") and "0x0106" in line
    ws(home, "import", str(ge[0].parent))
    series = json.loads(ws(home, "list", "--level", "series", "--json").stdout)[0]["SeriesInstanceUID"]
    done = ws(home, "print", "film", "--series", series, "--format", "auto", "--json")
    assert json.loads(done.stdout)["images"] == 28
    ws(home, "printer", "rm", "film")
    assert json.loads(ws(home, "printer", "list", "--json").stdout) == []
    assert "no printer named 'film'" in ws(home, "print", "film", str(ge[0]), code=2).stderr


# --- a colour printer, and failures dcmprscp cannot make (tests/print_peer.py) ---------------------------


def fake(**values):
    from tests.peers import running
    from tests.print_peer import FakePrinter

    return running(FakePrinter(**values))


def test_a_colour_job_reaches_the_colour_printer_as_rgb(samples):
    color_file = samples / "nema_wg04/RLE/US1_RLE"          # 640 x 480 RGB ultrasound
    grey = sorted((samples / GE).glob("*.dcm"))[0]
    with fake(color=True) as peer:
        printer = Printer("colour", peer.aet, "127.0.0.1", peer.port, color=True, film_sizes=("14INX17IN",))
        report = print_job(printer, OWN, items_of([str(color_file), str(grey)]), FilmOptions(display_format="STANDARD\\1,2"))
        assert (report.films, report.images) == (1, 2) and peer.open_sessions == []
        (film,) = peer.films
        assert film["color"] and film["printed"]
        sent = [b["array"] for b in film["boxes"]]
        assert sent[0].ndim == 3 and sent[0].shape[2] == 3
        plans = planned_films(printer, items_of([str(color_file), str(grey)]), FilmOptions(display_format="STANDARD\\1,2"))
        expected = plans[0].render().images        # what the preview shows is what was sent
        np.testing.assert_array_equal(sent[0], expected[0])
        np.testing.assert_array_equal(sent[1], expected[1])
        assert np.array_equal(sent[1][..., 0], sent[1][..., 2])      # a grey image on colour film stays grey


def test_a_failure_in_the_middle_names_film_and_box_and_leaves_nothing_open(ge):
    with fake(color=False, fail_on_set=7) as peer:
        printer = Printer("grey", peer.aet, "127.0.0.1", peer.port)
        with pytest.raises(PrintError) as caught:
            print_job(printer, OWN, items_of(map(str, ge[:8])), FilmOptions(display_format="STANDARD\\2,2"))
        assert str(caught.value).startswith("film 2 of 2, box 3: printer grey answered status 0xC000")
        assert caught.value.report.films == 1                      # the first film was printed
        assert [f["printed"] for f in peer.films] == [True, False]
        assert peer.open_sessions == [] and len(peer.deleted) == 4   # both film boxes, the session, the LUT


def test_warnings_and_printer_events_are_reported_and_the_job_goes_on(ge):
    with fake(color=False, warn_on_create_film_box=True, send_event_reports=True, status="WARNING",
              status_info="FILM TRANSP ERR") as peer:
        printer = Printer("grey", peer.aet, "127.0.0.1", peer.port)
        events = []
        report = print_job(printer, OWN, items_of(map(str, ge[:2])), on_event=events.append)
        assert report.films == 1 and report.status == "printed with warnings"
        assert any("WARNING (FILM TRANSP ERR)" in w for w in report.warnings)
        assert any("0xB605" in w and "density" in w for w in report.warnings)
        assert events == report.events == ["printer WARNING: FILM TRANSP ERR"]
    with fake(color=False, status="FAILURE", status_info="NO FILM") as peer:
        with pytest.raises(PrintError, match=r"reports FAILURE \(NO FILM\): nothing was sent"):
            print_job(Printer("grey", peer.aet, "127.0.0.1", peer.port), OWN, items_of(map(str, ge[:1])))
        assert peer.sessions == {}


def test_twelve_bit_grey_with_a_presentation_lut_and_the_profiles_film_box_attributes(print_scp, ge):
    """dcmprscp takes 12 bits (Supports12Bit) and Presentation LUTs: the boxes are the pipeline's
    12-bit P-values exactly, and the film box carries the profile's border and empty densities."""
    printer = printer_for(print_scp, dpi=512 / 7, film_sizes=("14INX14IN",), film_size="14INX14IN", bits=12,
                          border_density="WHITE", empty_density="BLACK", resolution_id="HIGH", smoothing="NONE")
    window = Window(40.0, 400.0)
    report = print_job(printer, OWN, items_of(map(str, ge[:2]), window), FilmOptions(display_format="STANDARD\\2,2"))
    assert report.warnings == [] and report.images == 2
    ((film, boxes),) = stored_films(print_scp)
    assert film.BorderDensity == "WHITE"
    stored = [pydicom.dcmread(p) for p in print_scp.stored_images()]
    assert {(ds.BitsStored, ds.BitsAllocated) for ds in stored} == {(12, 16)}
    for position, path in enumerate(ge[:2], 1):
        from workstation.core.pixels.render import FrameRenderer

        expected = FrameRenderer(ImageSource.open(path)).render_bits(window, 12)
        np.testing.assert_array_equal(boxes[position], expected)
        # the same values as the 8-bit pipeline, 16 times finer
        assert np.abs(expected.astype(int) / 4095 * 255 - render(ImageSource.open(path), 0, window)).max() <= 0.51
    sp = pydicom.dcmread(print_scp.stored_prints()[0])
    assert sp.PresentationLUTContentSequence[0].PresentationLUTShape == "IDENTITY"
