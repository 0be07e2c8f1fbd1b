"""Print jobs: images (files or cached instances, each with its window, rotation and flip) laid out
on as many films as they need, each box's pixels rendered by the display pipeline at the printer's
resolution, then sent through the Print SCU (core/net/print_scu.py). A film is rendered when it is
sent and let go after, so a long series never holds every film in memory. The composer's preview
and the job draw the same `planned_films`."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from workstation.core.model.printer import Printer, PrintSetupError, box_count, display_format, film_size_mm
from workstation.core.net.print_scu import Film, PrintReport, Session, print_films
from workstation.core.pixels.film import FilmLayout, box_image
from workstation.core.pixels.image import ImageSource, PixelDataError
from workstation.core.pixels.render import FrameRenderer
from workstation.core.pixels.voi import Window
from workstation.core.tasks import CancelToken


@dataclass(frozen=True)
class PrintItem:
    """One image to print: a frame of a file, as the viewer shows it."""
    path: str
    frame: int = 0
    window: Window | None = None     # None: the file's own
    rotation: int = 0                # quarter turns clockwise
    flip_horizontal: bool = False
    label: str = ""                  # how the composer lists it ("Se 2 Im 14, brain")
    invert: bool = False             # shown inverted (the viewer's I)


@dataclass(frozen=True)
class FilmOptions:
    display_format: str = ""         # "": the printer's default, or with `auto` the smallest that fits
    film_size: str = ""
    orientation: str = ""
    magnification: str = ""
    copies: int = 0                  # 0: the printer's default
    medium: str = ""
    destination: str = ""
    label: str = ""
    auto: bool = False
    annotate: bool = False           # patient, date, series and image numbers, a ruler in mm burnt in
    true_size: bool = False          # 1 mm on film = 1 mm in the patient, refused in words when it cannot be


@dataclass
class PlannedFilm:
    """A film's boxes (a PrintItem or None each) and its geometry; `render()` makes its Film."""
    printer: Printer
    layout: FilmLayout
    display_format: str
    film_size: str
    orientation: str
    magnification: str
    items: list[PrintItem | None]
    _film: Film | None = field(default=None, repr=False)
    annotate: bool = False
    true_size: bool = False

    @property
    def count(self) -> int:
        return sum(1 for i in self.items if i is not None)

    def render(self) -> Film:
        images = [None if item is None else render_item(item, self.layout.boxes[n], self.printer.color,
                                                        annotate=self.annotate, true_size=self.true_size,
                                                        film_mm_per_pixel=self.layout.mm_per_pixel,
                                                        bits=self.printer.bits)
                  for n, item in enumerate(self.items)]
        p = self.printer
        # at true size the images are sent at the printer's own pixels and must not be magnified
        magnification = "NONE" if self.true_size else self.magnification
        return Film(self.display_format, self.film_size, self.orientation, images, magnification=magnification,
                    border_density=p.border_density, empty_density=p.empty_density, trim=p.trim,
                    resolution=p.resolution_id, configuration=p.configuration, smoothing=p.smoothing)


def film_page(plan: PlannedFilm, film: Film | None = None, empty: int = 0) -> np.ndarray:
    """The whole film as the printer lays it out: each box's image centred in its box on `empty`
    (0: black, as EmptyImageDensity BLACK), at the printer's resolution; grey (H, W) or RGB (H, W, 3).
    The composer's preview and Print to file are this page; the printer gets the same boxes."""
    film = film or plan.render()
    layout = plan.layout
    shape = (layout.height, layout.width, 3) if plan.printer.color else (layout.height, layout.width)
    page = np.full(shape, empty, np.uint8)
    for (x, y, w, h), image in zip(layout.boxes, film.images, strict=False):
        if image is None:
            continue
        rows, columns = image.shape[:2]
        top, left = y + (h - rows) // 2, x + (w - columns) // 2
        if image.dtype != np.uint8:   # 12-bit P-values: the page shows their top 8 bits
            image = (image >> (plan.printer.bits - 8)).astype(np.uint8)
        page[top:top + rows, left:left + columns] = image
    return page


def simulate_density(page: np.ndarray, min_density: float = 0.2, max_density: float = 3.0) -> np.ndarray:
    """A film page as a screen shows a film on a light box: P-value 255 at the film's lowest density,
    0 at its highest, so the darkest black is 10^-(max-min) of the white (on screen, sRGB encoded);
    a printer maps P-values perceptually (the standard display function), so the values scale linearly."""
    black = 255.0 * (10.0 ** -(max_density - min_density)) ** (1 / 2.2)
    return np.rint(black + page.astype(np.float32) * (255.0 - black) / 255.0).astype(np.uint8)


def render_item(item: PrintItem, box: tuple[int, int, int, int], color: bool, *, annotate: bool = False,
                true_size: bool = False, film_mm_per_pixel: float | None = None, bits: int = 8) -> np.ndarray:
    """One box's pixels: the frame through the display pipeline, fitted to the box."""
    try:
        source = ImageSource.open(item.path)
    except PixelDataError as exc:
        raise PrintSetupError(f"{Path(item.path).name} cannot be printed: {exc}") from None
    renderer = FrameRenderer(source, item.frame)
    return box_image(renderer, (box[2], box[3]), item.window, item.rotation, item.flip_horizontal, color,
                     annotate=annotate, true_size=true_size, film_mm_per_pixel=film_mm_per_pixel, bits=bits,
                     invert=item.invert)


def planned_films(printer: Printer, items: Sequence[PrintItem], options: FilmOptions = FilmOptions()) -> list[PlannedFilm]:
    """The films `items` need, in order; a selection that does not fit one film goes on several."""
    if not items:
        raise PrintSetupError("nothing to print: no images were given")
    size = (options.film_size or printer.film_size).upper()
    orientation = (options.orientation or printer.orientation).upper()
    film_size_mm(size, orientation)
    if size not in printer.film_sizes:
        raise PrintSetupError(f"printer {printer.name} does not take {size} film (it takes {', '.join(printer.film_sizes)})")
    if options.display_format:
        chosen = display_format(options.display_format)
    elif options.auto:
        chosen = printer.smallest_format(len(items))
    else:
        chosen = printer.display_format
    per_film = box_count(chosen)
    layout = FilmLayout.of(size, orientation, chosen, printer.dpi)
    films = []
    for start in range(0, len(items), per_film):
        chunk: list[PrintItem | None] = list(items[start:start + per_film])
        chunk += [None] * (per_film - len(chunk))
        films.append(PlannedFilm(printer, layout, chosen, size, orientation,
                                 options.magnification or printer.magnification, chunk,
                                 annotate=options.annotate, true_size=options.true_size))
    return films


class _Rendered(Sequence):
    """Films rendered one at a time as the SCU reaches them (the previous one is let go)."""

    def __init__(self, plans: list[PlannedFilm]) -> None:
        self.plans = plans

    def __len__(self) -> int:
        return len(self.plans)

    def __getitem__(self, index):
        return self.plans[index].render()

    def __iter__(self):
        return (plan.render() for plan in self.plans)


def print_job(printer: Printer, own_aet: str, items: Sequence[PrintItem], options: FilmOptions = FilmOptions(),
              progress: Callable[[int, int, str], None] | None = None, cancel: CancelToken | None = None,
              on_event: Callable[[str], None] | None = None) -> PrintReport:
    plans = planned_films(printer, items, options)
    session = Session(copies=options.copies or printer.copies, medium=options.medium or printer.medium,
                      destination=options.destination or printer.destination, label=options.label)
    return print_films(printer, own_aet, _Rendered(plans), session, progress, cancel, on_event,
                       total=sum(plan.count for plan in plans))


def items_of(paths: Iterable[str], window: Window | None = None) -> list[PrintItem]:
    """Every frame of the files, in order."""
    out = []
    for path in paths:
        try:
            frames = ImageSource.open(path).number_of_frames
        except PixelDataError as exc:
            raise PrintSetupError(f"{Path(path).name} cannot be printed: {exc}") from None
        out += [PrintItem(str(path), f, window) for f in range(frames)]
    return out
