"""Print jobs' plans without a printer: images as the viewer shows them (inverted, turned, flipped),
a profile's defaults within what it takes, and true size sent unmagnified."""

from __future__ import annotations

import numpy as np
import pytest

from workstation.core.film_composer import item_of
from workstation.core.model.display_set import FrameRef
from workstation.core.model.printer import Printer
from workstation.core.pixels.voi import Window
from workstation.core.printing import FilmOptions, PrintItem, planned_films

GE = "dcm_qa_ct/In/GE"


@pytest.fixture
def slice_path(samples) -> str:
    return str(sorted((samples / GE).glob("*.dcm"))[5])


def printer(**values) -> Printer:
    return Printer("film", "FILM", "127.0.0.1", 104, dpi=100, **values)


ONE = FilmOptions(display_format="STANDARD\\1,1")


def box(path: str, **item) -> np.ndarray:
    (plan,) = planned_films(printer(), [PrintItem(path, 0, Window(40, 400), **item)], ONE)
    return plan.render().images[0]


def close(a: np.ndarray, b: np.ndarray) -> None:
    """Equal but for the resampling's rounding of halves (turned or inverted before, not after)."""
    assert a.shape == b.shape and np.abs(a.astype(int) - b.astype(int)).max() <= 1


def test_an_image_prints_as_the_viewer_shows_it(slice_path):
    plain = box(slice_path)
    close(box(slice_path, invert=True), 255 - plain)
    close(box(slice_path, rotation=2), plain[::-1, ::-1])
    close(box(slice_path, rotation=1), np.rot90(plain, -1))
    close(box(slice_path, flip_horizontal=True), plain[:, ::-1])
    # a vertical flip on screen: a half turn and a horizontal flip
    ref = FrameRef(slice_path, 0, "1.2.3")
    flipped = item_of(ref, Window(40, 400), flip_vertical=True)
    assert (flipped.rotation, flipped.flip_horizontal) == (2, True)
    (plan,) = planned_films(printer(), [flipped], FilmOptions(display_format="STANDARD\\1,1"))
    close(plan.render().images[0], plain[::-1, :])


def test_a_profiles_defaults_stay_within_what_it_takes():
    p = printer(formats=("STANDARD\\4,5", "STANDARD\\3,4"), film_sizes=("8INX10IN",))
    assert (p.display_format, p.film_size) == ("STANDARD\\4,5", "8INX10IN")


def test_true_size_films_are_not_magnified_by_the_printer(slice_path):
    items = [PrintItem(slice_path, 0, Window(40, 400))]
    (plan,) = planned_films(printer(), items, FilmOptions(display_format="STANDARD\\1,1", true_size=True))
    assert plan.render().magnification == "NONE"
    (plan,) = planned_films(printer(), items, FilmOptions(display_format="STANDARD\\1,1"))
    assert plan.render().magnification == "CUBIC"
