"""Images for film: a frame through the display pipeline (window/level, rotation, flip) resampled to
the pixels an image box holds at the printer's resolution, and a film's layout in pixels. What is
sent to the printer and what the preview shows are these same arrays."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from workstation.core.dicom.text import format_date
from workstation.core.model.printer import PrintSetupError, box_rects, film_size_mm

from .film_text import burn_in
from .render import FrameRenderer
from .voi import Window

MM_PER_INCH = 25.4


@dataclass(frozen=True)
class FilmLayout:
    """A film's size in printer pixels and its image boxes as pixel rectangles (left, top, width,
    height), in Image Box Position order."""

    width: int
    height: int
    boxes: tuple[tuple[int, int, int, int], ...]
    dpi: float

    @classmethod
    def of(cls, film_size: str, orientation: str, display_format: str, dpi: float) -> FilmLayout:
        w_mm, h_mm = film_size_mm(film_size, orientation)
        width, height = round(w_mm / MM_PER_INCH * dpi), round(h_mm / MM_PER_INCH * dpi)
        boxes = []
        for left, top, w, h in box_rects(display_format):
            x0, y0 = round(left * width), round(top * height)
            x1, y1 = round((left + w) * width), round((top + h) * height)
            boxes.append((x0, y0, x1 - x0, y1 - y0))
        return cls(width, height, tuple(boxes), dpi)

    @property
    def mm_per_pixel(self) -> float:
        return MM_PER_INCH / self.dpi


def fitted_size(rows: int, columns: int, box_width: int, box_height: int, aspect: float = 1.0) -> tuple[int, int]:
    """(rows, columns) of an image of rows x columns pixels (`aspect`: a pixel's height over its width)
    made as large as fits in the box, its shape kept."""
    height_units = rows * aspect
    scale = min(box_width / columns, box_height / height_units)
    return max(1, int(height_units * scale)), max(1, int(columns * scale))


def resample(image: np.ndarray, rows: int, columns: int) -> np.ndarray:
    """Bilinear resampling of a grey (rows, columns) or RGB (rows, columns, 3) image of uint8 (or
    uint16 P-values), pixel centres to pixel centres; a shrink first averages blocks so no detail
    aliases. The result has the input's type."""
    src = image.astype(np.float32)
    factor = min(src.shape[0] // rows, src.shape[1] // columns)
    if factor >= 2:   # an integer box filter down to at most twice the target, then bilinear
        h, w = (src.shape[0] // factor) * factor, (src.shape[1] // factor) * factor
        src = src[:h, :w].reshape(h // factor, factor, w // factor, factor, *src.shape[2:]).mean(axis=(1, 3))
    y = (np.arange(rows, dtype=np.float32) + 0.5) * src.shape[0] / rows - 0.5
    x = (np.arange(columns, dtype=np.float32) + 0.5) * src.shape[1] / columns - 0.5
    y = np.clip(y, 0, src.shape[0] - 1)
    x = np.clip(x, 0, src.shape[1] - 1)
    y0 = np.minimum(y.astype(np.int64), src.shape[0] - 2 if src.shape[0] > 1 else 0)
    x0 = np.minimum(x.astype(np.int64), src.shape[1] - 2 if src.shape[1] > 1 else 0)
    y1 = np.minimum(y0 + 1, src.shape[0] - 1)
    x1 = np.minimum(x0 + 1, src.shape[1] - 1)
    fy = (y - y0)[:, None]
    fx = (x - x0)[None, :]
    if src.ndim == 3:
        fy, fx = fy[..., None], fx[..., None]
    top = src[y0][:, x0] * (1 - fx) + src[y0][:, x1] * fx
    bottom = src[y1][:, x0] * (1 - fx) + src[y1][:, x1] * fx
    most = 255 if image.dtype == np.uint8 else int(np.iinfo(image.dtype).max)
    return np.clip(np.rint(top * (1 - fy) + bottom * fy), 0, most).astype(image.dtype)


def oriented(image: np.ndarray, rotation: int = 0, flip_horizontal: bool = False) -> np.ndarray:
    """The image as the viewer shows it: turned by `rotation` quarter turns clockwise, then mirrored."""
    out = np.rot90(image, -(rotation % 4))
    if flip_horizontal:
        out = out[:, ::-1]
    return np.ascontiguousarray(out)


def box_image(renderer: FrameRenderer, box: tuple[int, int], window: Window | None = None, rotation: int = 0,
              flip_horizontal: bool = False, color: bool = False, *, annotate: bool = False,
              true_size: bool = False, film_mm_per_pixel: float | None = None, bits: int = 8,
              invert: bool = False) -> np.ndarray:
    """What an image box of (width, height) printer pixels receives: the frame rendered with the
    window (None: the file's own), turned and flipped as shown, as large as fits with its shape kept
    (pixel spacing's aspect included); grey 8-bit, or RGB when `color` (grey images as RGB too).

    `true_size`: one mm in the patient is one mm on film (`film_mm_per_pixel`: the film's mm per
    printer pixel), refused in words when the image has no pixel spacing or would not fit the box.
    `annotate`: the patient, study date, series and image numbers burnt in, and a ruler in mm with
    the printed size factor when the spacing is in the patient (or at the detector, said so) and
    `film_mm_per_pixel` is given. `bits` 12: grey P-values 0..4095 (uint16) for a 12-bit printer."""
    deep = bits > 8 and not color and not renderer.is_color
    display = renderer.render_bits(window, bits) if deep else renderer.render(window)
    if invert:   # as the viewer shows it inverted
        display = (((1 << bits) - 1) if deep else 255) - display
    aspect = 1.0
    info = renderer.spacing
    spaced = info is not None and bool(info.row_mm and info.column_mm and info.row_mm > 0 and info.column_mm > 0)
    if spaced:
        aspect = float(info.row_mm) / float(info.column_mm)
    display = oriented(display, rotation, flip_horizontal)
    if rotation % 2:
        aspect = 1.0 / aspect
    if color and display.ndim == 2:
        display = np.repeat(display[..., None], 3, axis=2)
    elif not color and display.ndim == 3:   # a colour image on a grey printer: its luminance
        display = np.rint(display @ np.array([0.299, 0.587, 0.114])).astype(np.uint8)
    # (vertical, horizontal) mm in the patient between the shown image's pixels
    pitch = None if not spaced else (float(info.row_mm), float(info.column_mm))[::-1 if rotation % 2 else 1]
    if true_size:
        rows, columns = _true_size(renderer, display.shape[:2], pitch, box, film_mm_per_pixel)
    else:
        rows, columns = fitted_size(display.shape[0], display.shape[1], box[0], box[1], aspect)
    image = resample(display, rows, columns)
    if annotate:
        ruler = note = None
        if pitch is not None and film_mm_per_pixel and info.kind in ("patient", "detector"):
            ruler = (pitch[0] * display.shape[0] / rows, film_mm_per_pixel)
            note = "at detector" if info.kind == "detector" else ""
        top, bottom = _corner_texts(renderer)
        if deep:   # drawn on an 8-bit copy; the pixels the text and ruler changed take its values
            shallow = (image >> (bits - 8)).astype(np.uint8)
            burnt = burn_in(shallow, top, bottom, ruler, ruler_note=note or "")
            changed = burnt != shallow
            image = image.copy()
            image[changed] = (burnt[changed].astype(np.uint32) * ((1 << bits) - 1) // 255).astype(np.uint16)
        else:
            image = burn_in(image, top, bottom, ruler, ruler_note=note or "")
    if bits > 8 and not color and not deep:   # a colour source on a 12-bit grey printer: its luminance
        image = (image.astype(np.uint32) * ((1 << bits) - 1) // 255).astype(np.uint16)
    return image


def _true_size(renderer: FrameRenderer, shape: tuple[int, int], pitch: tuple[float, float] | None,
               box: tuple[int, int], film_mm_per_pixel: float | None) -> tuple[int, int]:
    """(rows, columns) in printer pixels of the shown image at 1:1, refused in words when it cannot be."""
    source = getattr(renderer, "source", None)
    name = source.path.name if source is not None and source.path is not None else "the image"
    if not film_mm_per_pixel or film_mm_per_pixel <= 0:
        raise PrintSetupError("true size needs the film's resolution (mm per printer pixel)")
    if pitch is None:
        raise PrintSetupError(f"true size needs the pixel spacing: {name} has none")
    if renderer.spacing.kind == "ultrasound":
        raise PrintSetupError(f"true size needs one pixel spacing for the whole image: {name} has it only "
                              "in its ultrasound regions")
    height_mm, width_mm = shape[0] * pitch[0], shape[1] * pitch[1]
    rows, columns = max(1, round(height_mm / film_mm_per_pixel)), max(1, round(width_mm / film_mm_per_pixel))
    if columns > box[0] or rows > box[1]:
        raise PrintSetupError(
            f"at true size the image is {width_mm:.0f} x {height_mm:.0f} mm and the box "
            f"{box[0] * film_mm_per_pixel:.0f} x {box[1] * film_mm_per_pixel:.0f} mm: "
            "choose a larger film or fewer boxes")
    return rows, columns


def _corner_texts(renderer: FrameRenderer) -> tuple[list[str], list[str]]:
    """The lines burnt into the top left (patient name, patient ID, study date) and bottom left
    ("Se 2 Im 14") corners, from the header; what is absent is left out."""
    source = getattr(renderer, "source", None)
    attributes = getattr(renderer, "attributes", None) or {}

    def value(keyword: str) -> str:
        found = source.value(keyword) if source is not None else attributes.get(keyword)
        if isinstance(found, (list, tuple)):
            found = found[0] if found else None
        if isinstance(found, float) and found.is_integer():
            found = int(found)
        return "" if found is None else str(found).strip()

    top = [_name_words(value("PatientName")), value("PatientID"), format_date(value("StudyDate"))]
    series, instance = value("SeriesNumber"), value("InstanceNumber")
    numbers = " ".join(part for part in (f"Se {series}" if series else "", f"Im {instance}" if instance else "")
                       if part)
    return [t for t in top if t], [numbers] if numbers else []


def _name_words(value: str) -> str:
    """A DICOM person name (its alphabetic group, Family^Given^Middle^Prefix^Suffix) as "FAMILY, Given
    Middle"; prefix and suffix around it."""
    parts = [" ".join(p.split()) for p in (value or "").split("=")[0].split("^")]
    parts += [""] * (5 - len(parts))
    family, given, middle, prefix, suffix = parts[:5]
    first = " ".join(p for p in (given, middle) if p)
    name = f"{family}, {first}" if family and first else family or first
    return " ".join(p for p in (prefix, name, suffix) if p)
