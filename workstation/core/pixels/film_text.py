"""Text and a scale ruler burnt into an image for film (Qt-free, drawn with Pillow): white letters with a
dark outline, readable on any grey, in the image's left corners, and along the right edge a vertical
ruler of a round length in mm with ticks every tenth, its label, and the printed size factor
(patient mm per film mm, "1:1.32")."""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

FONT_PATH = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")   # fonts-dejavu-core (scripts/setup.sh)
RULER_LENGTHS_MM = (1, 2, 5, 10, 20, 50, 100)
MIN_TEXT_PX = 9
_TEXT_SHARE = 0.45    # a corner's text takes at most this share of the image's width


@lru_cache(maxsize=32)
def font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """DejaVu Sans at `size` pixels, else Pillow's own font (sized when Pillow has FreeType)."""
    try:
        return ImageFont.truetype(str(FONT_PATH), size)
    except OSError:
        try:
            return ImageFont.load_default(size)
        except TypeError:   # Pillow before 10.1: one bitmap size
            return ImageFont.load_default()


def text_size(height: int) -> int:
    """The letters' height in pixels for an image `height` pixels high: about a fortieth, at least 9."""
    return max(MIN_TEXT_PX, round(height / 40))


def ruler_length_mm(mm_per_pixel: float, height: int) -> int | None:
    """The longest round length (RULER_LENGTHS_MM) at most a fifth of the image's height, None when
    even the shortest is longer."""
    fitting = [mm for mm in RULER_LENGTHS_MM if round(mm / mm_per_pixel) <= height / 5]
    return fitting[-1] if fitting else None


def size_factor(patient_mm_per_pixel: float, film_mm_per_pixel: float) -> str:
    """Patient mm per film mm as "1:1.32"."""
    return f"1:{patient_mm_per_pixel / film_mm_per_pixel:.2f}"


def burn_in(image: np.ndarray, lines_top_left: Sequence[str], lines_bottom_left: Sequence[str],
            ruler_mm: tuple[float, float] | None, *, ruler_note: str = "") -> np.ndarray:
    """A copy of an 8-bit grey (H, W) or RGB (H, W, 3) image with the lines written in its top and
    bottom left corners and, when `ruler_mm` is (the printed image's mm per pixel in the patient,
    vertically; the film's mm per pixel), a ruler along the right edge with its length ("50 mm")
    above it and the size factor ("1:1.32") below, then `ruler_note` (e.g. "at detector")."""
    if image.dtype != np.uint8 or image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] != 3):
        raise ValueError(f"burn_in takes 8-bit grey or RGB images, not {image.dtype} {image.shape}")
    height, width = image.shape[:2]
    picture = Image.fromarray(np.ascontiguousarray(image), "L" if image.ndim == 2 else "RGB")
    draw = ImageDraw.Draw(picture)
    white, dark = (255, 0) if image.ndim == 2 else ((255, 255, 255), (0, 0, 0))
    lines = [str(t) for t in (*lines_top_left, *lines_bottom_left) if t]
    size = text_size(height)
    widest = max((font(size).getlength(t) for t in lines), default=0.0)
    if widest > _TEXT_SHARE * width:
        size = max(MIN_TEXT_PX, int(size * _TEXT_SHARE * width / widest))
    face = font(size)
    stroke = max(1, round(size / 10))
    margin = max(2, size // 2)
    step = round(size * 1.25) + 2 * stroke

    def put(text: str, x: float, y: float, anchor: str = "la") -> None:
        draw.text((x, y), text, font=face, fill=white, stroke_width=stroke, stroke_fill=dark, anchor=anchor)

    top = [_fitted(face, str(t), _TEXT_SHARE * width) for t in lines_top_left if t]
    bottom = [_fitted(face, str(t), _TEXT_SHARE * width) for t in lines_bottom_left if t]
    for n, text in enumerate(top):
        put(text, margin, margin + stroke + n * step)
    for n, text in enumerate(bottom):
        put(text, margin, height - margin - stroke - (len(bottom) - 1 - n) * step, "ld")
    if ruler_mm is not None:
        patient_mm, film_mm = ruler_mm
        right = width - margin
        length_mm = ruler_length_mm(patient_mm, height)
        bar_top = bar_bottom = height // 2
        if length_mm is not None:
            length = max(1, round(length_mm / patient_mm))
            bar_top = (height - length) // 2
            bar_bottom = bar_top + length            # the bar's rows: bar_top .. bar_bottom - 1
            _ruler(draw, right, bar_top, length, size, white, dark)
            put(f"{length_mm} mm", right, bar_top - stroke - size // 2, "rd")
        below = [size_factor(patient_mm, film_mm)] + ([ruler_note] if ruler_note else [])
        for n, text in enumerate(below):
            put(text, right, bar_bottom + stroke + size // 2 + n * step, "ra")
    return np.array(picture)


def _fitted(face, text: str, room: float) -> str:
    """The text, shortened with an ellipsis until it takes at most `room` pixels."""
    if face.getlength(text) <= room:
        return text
    while len(text) > 1 and face.getlength(text + "…") > room:
        text = text[:-1]
    return text + "…"


def _ruler(draw: ImageDraw.ImageDraw, right: int, top: int, length: int, size: int, white, dark) -> None:
    """A white vertical bar `length` pixels long ending at column right - 1, with ticks every tenth to
    its left (longer at the ends and the middle), all outlined in dark."""
    bar = max(2, round(size / 8))
    tick = max(1, bar // 2)
    outline = max(1, bar // 2)
    x0 = right - bar
    shapes = [(x0, top, right - 1, top + length - 1)]
    for i in range(11):
        y = top + round(i * (length - 1) / 10)
        reach = size if i in (0, 5, 10) else size // 2
        y0 = min(max(top, y - tick // 2), top + length - tick)
        shapes.append((x0 - reach, y0, x0 - 1, y0 + tick - 1))
    for x_a, y_a, x_b, y_b in shapes:
        draw.rectangle((x_a - outline, y_a - outline, x_b + outline, y_b + outline), fill=dark)
    for shape in shapes:
        draw.rectangle(shape, fill=white)
