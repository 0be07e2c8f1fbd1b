"""Print to file, for a clinic without a film printer: the films a print job would send (`planned_films`),
each page as `film_page` lays it out at the printer's resolution, written as a PDF (one page per film,
the page's size the film's in its orientation, so the images are not resampled again when printed at
100 %) or as one PNG per film (the dpi in its pHYs). A grey film is an 8-bit grey page, a colour one
RGB. Pages are rendered one film at a time, so a long series never holds more than one film; every
file is written to a temporary file beside it and then renamed, so a failed or cancelled job leaves
no half-written file. What a user can meet (a folder that is not there, a full disk, no permission)
is a PrintSetupError naming the path.

The PDF is written here rather than by Pillow's PDF plugin because that one stores grey and RGB pages
as JPEG: a film's pixels must reach the paper as rendered, so the pages are Flate (zlib) compressed,
which is lossless."""

from __future__ import annotations

import errno
import os
import secrets
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

import numpy as np

from workstation.core.model.printer import PrintSetupError, film_size_mm
from workstation.core.printing import PlannedFilm, film_page
from workstation.core.tasks import CancelToken

MM_PER_INCH = 25.4
POINTS_PER_INCH = 72.0


def page_size_points(plan: PlannedFilm) -> tuple[float, float]:
    """The film's (width, height) in PDF points (1/72 in), in its orientation: 14INX17IN -> (1008, 1224)."""
    w_mm, h_mm = film_size_mm(plan.film_size, plan.orientation)
    return (round(w_mm / MM_PER_INCH * POINTS_PER_INCH, 3), round(h_mm / MM_PER_INCH * POINTS_PER_INCH, 3))


def write_pdf(plans: list[PlannedFilm], path: str | os.PathLike, progress: Callable[[int, int, str], None] | None = None,
              cancel: CancelToken | None = None) -> int:
    """The films as one PDF at `path`, a page per film; returns the pages written. Cancelled (from
    `cancel`) or failed, nothing is left at `path` (a file already there stays as it was)."""
    if not plans:
        raise PrintSetupError("nothing to print: no films were given")
    path = Path(path)
    with _atomic(path) as out:
        pdf = _PdfWriter(out)
        for n, plan in enumerate(plans):
            if progress is not None:
                progress(n, len(plans), f"film {n + 1} of {len(plans)}")
            if cancel is not None:
                cancel.raise_if_cancelled()
            pdf.page(film_page(plan), page_size_points(plan))
        if cancel is not None:
            cancel.raise_if_cancelled()
        pdf.close()
    if progress is not None:
        progress(len(plans), len(plans), f"{path.name} written")
    return len(plans)


def png_paths(count: int, folder_or_stem: str | os.PathLike) -> list[Path]:
    """Where `write_pngs` puts `count` pages: stem-1.png, stem-2.png, ... (a '.png' on the stem is
    dropped; an existing folder gets film-1.png, film-2.png, ... inside it)."""
    stem = Path(folder_or_stem)
    if stem.is_dir():
        stem = stem / "film"
    elif stem.suffix.lower() == ".png":
        stem = stem.with_suffix("")
    return [stem.with_name(f"{stem.name}-{n}.png") for n in range(1, count + 1)]


def write_pngs(plans: list[PlannedFilm], folder_or_stem: str | os.PathLike,
               progress: Callable[[int, int, str], None] | None = None, cancel: CancelToken | None = None) -> list[Path]:
    """One PNG per film (see `png_paths`), the printer's dpi in its pHYs; returns the paths written.
    Each page is written whole or not at all; a failure or cancel stops at that page."""
    from PIL import Image

    if not plans:
        raise PrintSetupError("nothing to print: no films were given")
    paths = png_paths(len(plans), folder_or_stem)
    for n, (plan, path) in enumerate(zip(plans, paths, strict=True)):
        if progress is not None:
            progress(n, len(plans), f"film {n + 1} of {len(plans)}")
        if cancel is not None:
            cancel.raise_if_cancelled()
        image = Image.fromarray(film_page(plan))
        dpi = float(plan.layout.dpi)
        with _atomic(path) as out:
            image.save(out, "PNG", dpi=(dpi, dpi))
        del image
    if progress is not None:
        progress(len(plans), len(plans), f"{len(paths)} page{'s' if len(paths) != 1 else ''} written")
    return paths


def _reason(exc: OSError, path: Path) -> str:
    if exc.errno == errno.ENOSPC or exc.errno == errno.EDQUOT:
        return "the disk is full"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return f"the folder {path.parent} is not writable (permission denied)"
    if exc.errno == errno.EROFS:
        return "the disk is read-only"
    if exc.errno == errno.ENOENT:
        return f"the folder {path.parent} does not exist"
    if exc.errno == errno.EISDIR:
        return "it is a folder"
    return exc.strerror or str(exc)


@contextmanager
def _atomic(path: Path) -> Iterator[BinaryIO]:
    """A binary file that becomes `path` when the block ends well: written beside it, synced, renamed."""
    folder = path.parent
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist"
        raise PrintSetupError(f"cannot write {path}: the folder {folder} {what}")
    if path.is_dir():
        raise PrintSetupError(f"cannot write {path}: it is a folder")
    try:
        temp = str(folder / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.part")
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    except OSError as exc:
        raise PrintSetupError(f"cannot write {path}: {_reason(exc, path)}") from None
    try:
        with os.fdopen(fd, "wb") as out:
            yield out
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, path)
    except OSError as exc:
        _remove(temp)
        raise PrintSetupError(f"cannot write {path}: {_reason(exc, path)}") from None
    except BaseException:
        _remove(temp)
        raise


def _remove(temp: str) -> None:
    try:
        os.unlink(temp)
    except OSError:
        pass


def _number(value: float) -> str:
    text = f"{value:.3f}".rstrip("0").rstrip(".")
    return text or "0"


class _PdfWriter:
    """Just enough PDF 1.4: a catalog, the page tree and, per page, one Flate-compressed 8-bit image
    (DeviceGray or DeviceRGB) drawn over the whole page. Pages are written as they come; the page tree
    (object 2) and the cross-reference table come last."""

    def __init__(self, out: BinaryIO) -> None:
        self.out = out
        self.offsets: dict[int, int] = {}
        self.pages: list[int] = []
        self.next_number = 3
        self._write(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
        self._object(1, b"<< /Type /Catalog /Pages 2 0 R >>")

    def _write(self, data: bytes) -> None:
        self.out.write(data)

    def _tell(self) -> int:
        return self.out.tell()

    def _object(self, number: int, body: bytes, stream: bytes | None = None) -> None:
        self.offsets[number] = self._tell()
        self._write(f"{number} 0 obj\n".encode() + body)
        if stream is not None:
            self._write(b"\nstream\n")
            self._write(stream)
            self._write(b"\nendstream")
        self._write(b"\nendobj\n")

    def page(self, pixels: np.ndarray, size_points: tuple[float, float]) -> None:
        height, width = pixels.shape[:2]
        space = "DeviceRGB" if pixels.ndim == 3 else "DeviceGray"
        page, content, image = self.next_number, self.next_number + 1, self.next_number + 2
        self.next_number += 3
        data = zlib.compress(np.ascontiguousarray(pixels, np.uint8).tobytes(), 6)
        self._object(image, (f"<< /Type /XObject /Subtype /Image /Width {width} /Height {height} /ColorSpace /{space} "
                             f"/BitsPerComponent 8 /Filter /FlateDecode /Length {len(data)} >>").encode(), data)
        del data
        w, h = (_number(v) for v in size_points)
        draw = f"q {w} 0 0 {h} 0 0 cm /Im0 Do Q".encode()
        self._object(content, f"<< /Length {len(draw)} >>".encode(), draw)
        procset = "/ImageC" if pixels.ndim == 3 else "/ImageB"
        self._object(page, (f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 {w} {h}] /Contents {content} 0 R "
                            f"/Resources << /ProcSet [/PDF {procset}] /XObject << /Im0 {image} 0 R >> >> >>").encode())
        self.pages.append(page)

    def close(self) -> None:
        kids = " ".join(f"{n} 0 R" for n in self.pages)
        self._object(2, f"<< /Type /Pages /Kids [{kids}] /Count {len(self.pages)} >>".encode())
        info = self.next_number
        self._object(info, b"<< /Producer (workstation) >>")
        xref = self._tell()
        size = info + 1
        lines = [f"xref\n0 {size}\n", "0000000000 65535 f \n"]
        lines += [f"{self.offsets[n]:010d} 00000 n \n" for n in range(1, size)]
        lines.append(f"trailer\n<< /Size {size} /Root 1 0 R /Info {info} 0 R >>\nstartxref\n{xref}\n%%EOF\n")
        self._write("".join(lines).encode())
