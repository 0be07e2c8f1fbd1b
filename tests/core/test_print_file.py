"""Print to file: the films of a print job as a PDF (a page per film, the page the film's size in
points, each page's image exactly the film page at the printer's resolution, losslessly) and as PNG
pages (the same pixels, the printer's dpi in pHYs); grey stays 8-bit grey, colour is RGB; a failed or
cancelled write leaves nothing; the command line `print file ... --to-pdf|--to-png` with no printer."""

from __future__ import annotations

import errno
import json
import re
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from workstation.core.model.printer import FILM_SIZES_MM, Printer, PrintSetupError
from workstation.core.print_file import png_paths, write_pdf, write_pngs
from workstation.core.printing import FilmOptions, PlannedFilm, film_page, items_of, planned_films
from workstation.core.tasks import Cancelled, CancelToken

GE = "dcm_qa_ct/In/GE"
US_RGB = "nema_wg04/RLE/US1_RLE"


@pytest.fixture
def ge(samples) -> list[Path]:
    return sorted((samples / GE).glob("*.dcm"), key=lambda p: int(p.stem))


@pytest.fixture
def folder(tmp_path) -> Path:
    out = tmp_path / "films"
    out.mkdir()
    return out


def grey_printer(**values) -> Printer:
    return Printer("file", "FILE", "localhost", 104, film_sizes=tuple(FILM_SIZES_MM), **values)


def plans_of(printer: Printer, paths, **options) -> list[PlannedFilm]:
    return planned_films(printer, items_of(map(str, paths)), FilmOptions(**options))


class Pdf:
    """Just enough PDF reading for what our writer makes: objects by number (the cross-reference
    table checked against them), the page tree, each page's MediaBox and its one image."""

    def __init__(self, data: bytes) -> None:
        assert data.startswith(b"%PDF-1.")
        assert data.rstrip().endswith(b"%%EOF")
        self.data = data
        xref = int(re.search(rb"startxref\s+(\d+)\s+%%EOF\s*$", data).group(1))
        assert data[xref:xref + 4] == b"xref"
        header = re.match(rb"xref\s+0 (\d+)\s+", data[xref:])
        size, start = int(header.group(1)), xref + header.end()
        self.offsets = {}
        for number in range(size):
            entry = data[start + 20 * number:start + 20 * number + 20]
            offset, _, kind = entry.split()[:3]
            if kind == b"n":
                self.offsets[number] = int(offset)
                assert data[int(offset):].startswith(f"{number} 0 obj".encode()), f"xref of object {number}"
        root = int(re.search(rb"/Root (\d+) 0 R", data[xref:]).group(1))
        pages = int(re.search(rb"/Pages (\d+) 0 R", self.body(root)).group(1))
        tree = self.body(pages)
        self.kids = [int(n) for n in re.findall(rb"(\d+) 0 R", re.search(rb"/Kids \[([^\]]*)\]", tree).group(1))]
        assert int(re.search(rb"/Count (\d+)", tree).group(1)) == len(self.kids)

    def body(self, number: int) -> bytes:
        start = self.offsets[number]
        return self.data[start:self.data.index(b"endobj", start)]

    def media_box(self, page: int) -> tuple[float, ...]:
        box = re.search(rb"/MediaBox \[([^\]]*)\]", self.body(self.kids[page])).group(1)
        return tuple(float(v) for v in box.split())

    def image(self, page: int) -> tuple[str, np.ndarray]:
        """(colour space, pixels) of the page's image XObject."""
        ref = int(re.search(rb"/XObject << /Im0 (\d+) 0 R", self.body(self.kids[page])).group(1))
        start = self.offsets[ref]
        head = self.data[start:self.data.index(b"stream", start)]
        width, height = (int(re.search(rb"/" + key + rb" (\d+)", head).group(1)) for key in (b"Width", b"Height"))
        space = re.search(rb"/ColorSpace /(\w+)", head).group(1).decode()
        assert b"/Filter /FlateDecode" in head and b"/BitsPerComponent 8" in head
        length = int(re.search(rb"/Length (\d+)", head).group(1))
        begin = self.data.index(b"stream\n", start) + len(b"stream\n")
        assert self.data[begin + length:begin + length + len(b"\nendstream")] == b"\nendstream"
        raw = zlib.decompress(self.data[begin:begin + length])
        shape = (height, width, 3) if space == "DeviceRGB" else (height, width)
        return space, np.frombuffer(raw, np.uint8).reshape(shape)


def png_chunk(path: Path, kind: bytes) -> bytes:
    data = path.read_bytes()
    pos = 8
    while pos < len(data):
        length = int.from_bytes(data[pos:pos + 4], "big")
        if data[pos + 4:pos + 8] == kind:
            return data[pos + 8:pos + 8 + length]
        pos += 12 + length
    raise AssertionError(f"{path.name} has no {kind!r} chunk")


def test_six_images_on_standard_2x2_make_a_two_page_pdf_of_14x17_inch_pages(ge, folder):
    printer = grey_printer(dpi=150)
    plans = plans_of(printer, ge[:6], display_format="STANDARD\\2,2", film_size="14INX17IN")
    out = folder / "films.pdf"
    seen = []
    assert write_pdf(plans, out, progress=lambda done, total, what: seen.append((done, total))) == 2
    pdf = Pdf(out.read_bytes())
    assert len(pdf.kids) == 2
    for page, plan in enumerate(plans):
        assert pdf.media_box(page) == (0, 0, 1008, 1224)       # 14 x 17 in at 72 pt per inch
        space, pixels = pdf.image(page)
        assert space == "DeviceGray"
        assert pixels.shape == (17 * 150, 14 * 150)            # the printer's pixels, not resampled
        np.testing.assert_array_equal(pixels, film_page(plan))
    assert pdf.image(1)[1][1275:].max() == 0                   # the second film's lower boxes are empty
    assert seen[0] == (0, 2) and seen[-1] == (2, 2)
    assert [p.name for p in folder.iterdir()] == ["films.pdf"]   # no temporary file left


def test_a_landscape_a4_page_is_the_film_size_in_its_orientation(ge, tmp_path):
    plans = plans_of(grey_printer(dpi=100), ge[:1], display_format="STANDARD\\1,1", film_size="A4",
                     orientation="LANDSCAPE")
    write_pdf(plans, tmp_path / "a4.pdf")
    pdf = Pdf((tmp_path / "a4.pdf").read_bytes())
    assert pdf.media_box(0) == pytest.approx((0, 0, 297 / 25.4 * 72, 210 / 25.4 * 72), abs=0.001)
    assert pdf.image(0)[1].shape == (827, 1169)                # 210 x 297 mm at 100 dpi, landscape


def test_png_pages_are_the_film_pages_exactly_with_the_printers_dpi(ge, tmp_path):
    printer = grey_printer(dpi=150)
    plans = plans_of(printer, ge[:6], display_format="STANDARD\\2,2")
    paths = write_pngs(plans, tmp_path / "study")
    assert paths == [tmp_path / "study-1.png", tmp_path / "study-2.png"]
    for path, plan in zip(paths, plans, strict=True):
        with Image.open(path) as image:
            assert image.mode == "L"
            assert image.info["dpi"] == pytest.approx((150, 150), abs=0.05)   # pHYs holds whole pixels per metre
            np.testing.assert_array_equal(np.asarray(image), film_page(plan))
        phys = png_chunk(path, b"pHYs")                        # pixels per metre, both axes, unit metre
        assert (int.from_bytes(phys[:4], "big"), int.from_bytes(phys[4:8], "big"), phys[8]) == (5906, 5906, 1)
    assert png_paths(2, tmp_path / "study.png") == paths      # a .png on the stem is not doubled
    assert png_paths(1, tmp_path) == [tmp_path / "film-1.png"]  # a folder gets film-N.png inside it


def test_a_colour_image_on_a_colour_printer_gives_rgb_pages(samples, tmp_path):
    printer = grey_printer(dpi=100, color=True)
    plans = plans_of(printer, [samples / US_RGB], display_format="STANDARD\\1,1", film_size="8INX10IN")
    page = film_page(plans[0])
    assert page.shape == (1000, 800, 3)
    assert np.abs(page[..., 0].astype(int) - page[..., 2]).max() > 0   # really colour, not grey as RGB
    (png,) = write_pngs(plans, tmp_path / "us")
    with Image.open(png) as image:
        assert image.mode == "RGB"
        np.testing.assert_array_equal(np.asarray(image), page)
    write_pdf(plans, tmp_path / "us.pdf")
    space, pixels = Pdf((tmp_path / "us.pdf").read_bytes()).image(0)
    assert space == "DeviceRGB"
    np.testing.assert_array_equal(pixels, page)
    # on a grey printer the same image is an 8-bit grey page
    (grey,) = write_pngs(plans_of(grey_printer(dpi=100), [samples / US_RGB], film_size="8INX10IN"), tmp_path / "g")
    with Image.open(grey) as image:
        assert image.mode == "L"


def test_a_missing_folder_a_full_disk_and_a_cancel_leave_nothing(ge, folder, monkeypatch):
    plans = plans_of(grey_printer(dpi=60), ge[:6], display_format="STANDARD\\2,2")
    missing = folder / "no such folder" / "films.pdf"
    with pytest.raises(PrintSetupError, match=re.escape(str(missing.parent)) + " does not exist"):
        write_pdf(plans, missing)
    with pytest.raises(PrintSetupError, match="does not exist"):
        write_pngs(plans, folder / "no such folder" / "films")

    out = folder / "films.pdf"
    out.write_bytes(b"the previous one")
    token = CancelToken()
    with pytest.raises(Cancelled):
        write_pdf(plans, out, progress=lambda done, total, what: token.cancel() if done == 1 else None,
                  cancel=token)
    assert out.read_bytes() == b"the previous one"

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("workstation.core.print_file.os.fsync", full)
    with pytest.raises(PrintSetupError, match=re.escape(f"cannot write {out}: the disk is full")):
        write_pdf(plans, out)
    assert out.read_bytes() == b"the previous one"
    assert sorted(p.name for p in folder.iterdir()) == ["films.pdf"]


def ws(home: Path, *args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "workstation", "--home", str(home), *args],
                          capture_output=True, text=True, timeout=300)
    assert "Traceback" not in proc.stderr
    return proc


def test_the_command_line_prints_to_a_pdf_or_pngs_without_a_printer(ge, tmp_path):
    home = tmp_path / "ws"
    out = tmp_path / "out.pdf"
    proc = ws(home, "print", "file", *map(str, ge[:6]), "--to-pdf", str(out), "--json")
    assert proc.returncode == 0, proc.stderr
    document = json.loads(proc.stdout)
    assert document == {"films": 2, "images": 6, "status": "written", "path": str(out)}
    pdf = Pdf(out.read_bytes())
    assert [pdf.media_box(n) for n in range(2)] == [(0, 0, 1008, 1224)] * 2
    assert pdf.image(0)[1].shape == (5100, 4200)               # the default profile: 300 dpi

    proc = ws(home, "print", "file", *map(str, ge[:2]), "--to-png", str(tmp_path / "page"), "--film-size", "A4",
              "--format", "STANDARD\\1,2", "--json")
    assert proc.returncode == 0, proc.stderr
    document = json.loads(proc.stdout)
    assert (document["films"], document["images"], document["status"]) == (1, 2, "written")
    assert document["paths"] == [str(tmp_path / "page-1.png")]
    with Image.open(tmp_path / "page-1.png") as image:
        assert (image.mode, image.size) == ("L", (2480, 3508))    # A4 at 300 dpi


def test_the_command_line_says_in_one_line_when_the_folder_is_missing(ge, tmp_path):
    missing = tmp_path / "nowhere"
    proc = ws(tmp_path / "ws", "print", "file", str(ge[0]), "--to-pdf", str(missing / "out.pdf"), "--json")
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and str(missing) in lines[0]

    proc = ws(tmp_path / "ws", "print", "file", str(ge[0]))                # 'file' needs --to-pdf or --to-png
    assert proc.returncode == 2
    assert "--to-pdf" in proc.stderr and proc.stderr.startswith("error: ")
