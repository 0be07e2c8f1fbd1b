"""Annotations burnt into images for film and true-size printing: text in the left corners and a ruler
along the right edge leave the rest of the image as the plain box has it; the ruler is as long as its
label says at the printed scale; at true size a CT slice is on film as large as in the patient, and
an image without pixel spacing or too large for its box is refused in words."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest

from workstation.core.model.printer import Printer, PrintSetupError
from workstation.core.pixels import film
from workstation.core.pixels.film import FilmLayout, box_image
from workstation.core.pixels.film_text import burn_in, size_factor, text_size
from workstation.core.pixels.image import ImageSource
from workstation.core.pixels.render import FrameRenderer
from workstation.core.printing import FilmOptions, items_of, planned_films

GE = "dcm_qa_ct/In/GE"
ROUND_MM = (1, 2, 5, 10, 20, 50, 100)


@pytest.fixture
def ge(samples) -> list[Path]:
    return sorted((samples / GE).glob("*.dcm"), key=lambda p: int(p.stem))


def renderer_of(path) -> FrameRenderer:
    return FrameRenderer(ImageSource.open(path), 0)


def layout(display_format: str, film_size: str = "14INX17IN") -> FilmLayout:
    return FilmLayout.of(film_size, "PORTRAIT", display_format, 300)


def box_of(plan: FilmLayout, n: int = 0) -> tuple[int, int]:
    return plan.boxes[n][2], plan.boxes[n][3]


def patient_mm(path) -> tuple[float, float, int, int]:
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    return float(ds.PixelSpacing[0]), float(ds.PixelSpacing[1]), int(ds.Rows), int(ds.Columns)


def changed(plain: np.ndarray, annotated: np.ndarray) -> np.ndarray:
    diff = plain != annotated
    return diff.any(axis=2) if diff.ndim == 3 else diff


def bright_runs(image: np.ndarray, columns: range) -> int:
    """The longest vertical run of white (255, every channel) in the columns."""
    white = (image == 255).all(axis=2) if image.ndim == 3 else image == 255
    best = 0
    for x in columns:
        run = 0
        for on in white[:, x]:
            run = run + 1 if on else 0
            best = max(best, run)
    return best


@pytest.mark.parametrize(("color", "rotation"), [(False, 0), (True, 1)])
def test_an_annotated_box_differs_only_in_its_corners_and_along_the_ruler(ge, color, rotation):
    plan = layout("STANDARD\\4,5")
    r = renderer_of(ge[3])
    plain = box_image(r, box_of(plan), None, rotation, False, color)
    annotated = box_image(r, box_of(plan), None, rotation, False, color, annotate=True,
                          film_mm_per_pixel=plan.mm_per_pixel)
    assert annotated.shape == plain.shape and annotated.dtype == np.uint8
    h, w = plain.shape[:2]
    diff = changed(plain, annotated)
    # the middle of the image is untouched, pixel for pixel
    np.testing.assert_array_equal(annotated[h // 4:3 * h // 4, w // 4:3 * w // 4],
                                  plain[h // 4:3 * h // 4, w // 4:3 * w // 4])
    top_left, bottom_left = diff[:h // 4, :w // 2], diff[3 * h // 4:, :w // 2]
    ruler = diff[h // 4:3 * h // 4, 3 * w // 4:]
    assert top_left.any() and bottom_left.any() and ruler.any()
    allowed = np.zeros_like(diff)
    allowed[:h // 4, :w // 2] = allowed[3 * h // 4:, :w // 2] = allowed[h // 4:3 * h // 4, 3 * w // 4:] = True
    assert not (diff & ~allowed).any()
    # the plain path is what it always was (box_image without the new arguments)
    np.testing.assert_array_equal(plain, box_image(r, box_of(plan), None, rotation, False, color, annotate=False))


@pytest.mark.parametrize("display_format", ["STANDARD\\4,5", "STANDARD\\2,2", "STANDARD\\3,4"])
def test_the_ruler_is_as_long_as_its_label_at_the_printed_scale(ge, display_format):
    plan = layout(display_format)
    row_mm, _, rows, _ = patient_mm(ge[0])
    annotated = box_image(renderer_of(ge[0]), box_of(plan), annotate=True, film_mm_per_pixel=plan.mm_per_pixel)
    h, w = annotated.shape
    mm_per_pixel = rows * row_mm / h               # in the patient, per printed pixel
    label = max(mm for mm in ROUND_MM if mm / mm_per_pixel <= h / 5 + 0.5)
    measured = bright_runs(annotated, range(w - w // 20, w))
    assert abs(measured - label / mm_per_pixel) <= 1, (measured, label, mm_per_pixel)
    assert measured <= h / 5 + 1


def test_what_is_burnt_in_and_the_size_factor(ge, tmp_path, monkeypatch):
    ds = pydicom.dcmread(ge[0])
    ds.PatientName, ds.StudyDate, ds.SeriesNumber, ds.InstanceNumber = "DOE^JOHN^A", "20150206", 7, 14
    ds.save_as(tmp_path / "named.dcm")
    seen = []
    real = film.burn_in

    def recorder(image, top, bottom, ruler, **kw):
        seen.append((top, bottom, ruler, kw))
        return real(image, top, bottom, ruler, **kw)

    monkeypatch.setattr(film, "burn_in", recorder)
    plan = layout("STANDARD\\4,5")
    image = box_image(renderer_of(tmp_path / "named.dcm"), box_of(plan), annotate=True,
                      film_mm_per_pixel=plan.mm_per_pixel)
    ((top, bottom, ruler, kw),) = seen
    assert top == ["DOE, JOHN A", str(ds.PatientID), "2015-02-06"]
    assert bottom == ["Se 7 Im 14"]
    row_mm, _, rows, _ = patient_mm(ge[0])
    assert ruler == pytest.approx((rows * row_mm / image.shape[0], plan.mm_per_pixel))
    assert size_factor(*ruler) == f"1:{rows * row_mm / (image.shape[0] * 25.4 / 300):.2f}"
    assert kw == {"ruler_note": ""}
    # without the film's resolution there is no ruler, the texts still are
    seen.clear()
    box_image(renderer_of(tmp_path / "named.dcm"), box_of(plan), annotate=True)
    assert seen[0][2] is None and seen[0][0][0] == "DOE, JOHN A"


def test_burn_in_takes_grey_and_rgb_and_returns_a_new_array():
    for shape in ((400, 300), (400, 300, 3)):
        image = np.full(shape, 128, np.uint8)
        out = burn_in(image, ["DOE, JOHN", "12345"], ["Se 2 Im 1"], (0.5, 0.1))
        assert out.shape == image.shape and out.dtype == np.uint8 and out is not image
        assert (image == 128).all()                      # the input is left as it was
        assert (out == 255).any() and (out == 0).any()   # white letters, dark outline
        assert size_factor(0.5, 0.1) == "1:5.00"
    # letters about a fortieth of the height, at least 9 px
    assert text_size(2000) == 50 and text_size(100) == 9
    tall = burn_in(np.full((1600, 1600), 128, np.uint8), ["HHHH"], [], None)
    short = burn_in(np.full((400, 400), 128, np.uint8), ["HHHH"], [], None)
    extent = [np.ptp(np.flatnonzero((x != 128).any(axis=1))) for x in (tall, short)]
    assert 3 < extent[0] / extent[1] < 5
    with pytest.raises(ValueError):
        burn_in(np.zeros((10, 10), np.uint16), [], [], None)


def test_true_size_on_a_14x17_film(ge):
    plan = layout("STANDARD\\1,1")
    row_mm, column_mm, rows, columns = patient_mm(ge[0])
    image = box_image(renderer_of(ge[0]), box_of(plan), true_size=True, film_mm_per_pixel=plan.mm_per_pixel)
    pixel = 25.4 / 300
    assert abs(image.shape[0] * pixel - rows * row_mm) <= pixel
    assert abs(image.shape[1] * pixel - columns * column_mm) <= pixel
    # the same through a planned film, annotated: the factor is 1:1.00
    printer = Printer("film", "PRINTSCP", "127.0.0.1", 104)
    (planned,) = planned_films(printer, items_of([str(ge[0])]), FilmOptions(
        display_format="STANDARD\\1,1", film_size="14INX17IN", annotate=True, true_size=True))
    assert planned.annotate and planned.true_size
    (printed,) = planned.render().images
    assert printed.shape == image.shape
    assert size_factor(rows * row_mm / printed.shape[0], plan.mm_per_pixel) == "1:1.00"
    assert (printed != image).any()   # annotated


def test_true_size_refused_for_a_box_too_small(ge):
    plan = layout("STANDARD\\4,5")
    with pytest.raises(PrintSetupError, match=r"^at true size the image is 250 x 250 mm and the box 89 x 86 mm: "
                                               r"choose a larger film or fewer boxes$"):
        box_image(renderer_of(ge[0]), box_of(plan), true_size=True, film_mm_per_pixel=plan.mm_per_pixel)
    printer = Printer("film", "PRINTSCP", "127.0.0.1", 104)
    (planned, *_) = planned_films(printer, items_of([str(ge[0])]),
                                  FilmOptions(display_format="STANDARD\\4,5", true_size=True))
    with pytest.raises(PrintSetupError, match="choose a larger film or fewer boxes"):
        planned.render()


def test_true_size_refused_without_pixel_spacing(ge, samples, tmp_path, monkeypatch):
    ds = pydicom.dcmread(ge[0])
    del ds.PixelSpacing
    ds.save_as(tmp_path / "CT.dcm")
    plan = layout("STANDARD\\1,1")
    with pytest.raises(PrintSetupError, match=r"^true size needs the pixel spacing: CT\.dcm has none$"):
        box_image(renderer_of(tmp_path / "CT.dcm"), box_of(plan), true_size=True, film_mm_per_pixel=plan.mm_per_pixel)
    capture = samples / "pydicom_testfiles/pydicom/image_dfl.dcm"   # a secondary capture, no spacing
    if capture.exists():
        assert "PixelSpacing" not in pydicom.dcmread(capture, stop_before_pixels=True)
        with pytest.raises(PrintSetupError, match=r"true size needs the pixel spacing: image_dfl\.dcm has none"):
            box_image(renderer_of(capture), box_of(plan), true_size=True, film_mm_per_pixel=plan.mm_per_pixel)
    # annotated without spacing: the texts, no ruler
    seen = []
    monkeypatch.setattr(film, "burn_in", lambda image, top, bottom, ruler, **kw: seen.append(ruler) or image)
    box_image(renderer_of(tmp_path / "CT.dcm"), box_of(plan), annotate=True, film_mm_per_pixel=plan.mm_per_pixel)
    assert seen == [None]


def test_the_print_verb_takes_annotate_and_true_size():
    from workstation.cli import build_parser

    args = build_parser().parse_args(["print", "film", "a.dcm", "--annotate", "--true-size"])
    assert args.annotate and args.true_size
    args = build_parser().parse_args(["print", "film", "a.dcm"])
    assert not args.annotate and not args.true_size
