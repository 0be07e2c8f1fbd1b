"""The viewer's Qt-free models on real series: measurements, ROI statistics, linked scrolling by
position, reference lines, the 3D cursor, key images, the viewport's frame bookkeeping and corners."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest

from workstation.core.cache import Cache
from workstation.core.dicom.geometry import ImagePlane
from workstation.core.loading import StudySets, read_study
from workstation.core.model.display_set import DisplaySet, FrameRef
from workstation.core.model.records import Series, Study
from workstation.core.pixels.image import ImageSource
from workstation.core.pixels.render import FrameRenderer
from workstation.core.viewer.annotations import AnnotationStore, measure, new_annotation, roi_mask
from workstation.core.viewer.overlay import all_keywords
from workstation.core.viewer.session import ReadingSession
from workstation.core.viewer.sync import nearest_frame, reference_line
from workstation.core.viewer.view import ViewState
from workstation.core.viewer.viewport import ViewportModel

AXIAL = "dcm_qa_ct/In/Philips/S21570/S2020"


@pytest.fixture
def cache(tmp_path):
    with Cache(tmp_path / "home") as c:
        yield c


def renderer_of(ref: FrameRef) -> FrameRenderer:
    return FrameRenderer(ImageSource.open(ref.path), ref.frame, all_keywords())


def load(cache, path) -> StudySets:
    cache.import_paths([path])
    first = next(p for p in sorted(path.rglob("*") if path.is_dir() else [path]) if p.is_file())
    return read_study(cache, pydicom.dcmread(first, stop_before_pixels=True).StudyInstanceUID)


# --- measurements -----------------------------------------------------------------------------


def test_a_length_is_in_millimetres_from_the_pixel_spacing(samples, tmp_path):
    src = pydicom.dcmread(sorted((samples / AXIAL).iterdir())[10])
    src.PixelSpacing = [0.5, 0.5]             # a derived copy with a round spacing
    path = tmp_path / "half.dcm"
    src.save_as(path)
    renderer = FrameRenderer(ImageSource.open(path))
    spacing = renderer.plane.pixel_spacing
    a = new_annotation("length", [(100, 200), (200, 200)], study_uid="s", series_uid="se", sop_uid="x", frame=0,
                       plane=renderer.plane)
    m = measure(a, spacing)
    assert m.value == pytest.approx(50.0) and m.unit == "mm" and m.lines == ("50.0 mm",)
    diagonal = a.with_points([(0, 0), (60, 80)], renderer.plane)
    assert measure(diagonal, spacing).value == pytest.approx(50.0)          # 100 px along a diagonal
    # the patient points are 50 mm apart too, as MPR will see them
    p, q = np.array(a.patient_points)
    assert np.linalg.norm(q - p) == pytest.approx(50.0)
    assert measure(a, None).lines == ("100.0 px",)                          # no spacing: pixels, said so


def test_roi_statistics_equal_numpy_over_the_same_pixels_in_hounsfield_units(samples):
    path = sorted((samples / AXIAL).iterdir())[70]
    renderer = FrameRenderer(ImageSource.open(path))
    ds = pydicom.dcmread(path)
    hu = ds.pixel_array.astype(float) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    rows, cols = np.mgrid[0:512, 0:512]
    for kind, points, inside in (
        ("rectangle", [(200.4, 180.2), (260.7, 300.9)],
         (cols >= 200.4) & (cols <= 260.7) & (rows >= 180.2) & (rows <= 300.9)),
        ("ellipse", [(150, 150), (350, 300)],
         ((cols - 250) / 100) ** 2 + ((rows - 225) / 75) ** 2 <= 1),
        ("freehand", [(256, 100.5), (411.5, 256), (256, 411.5), (100.5, 256)],   # no centre on an edge
         np.abs(cols - 256) + np.abs(rows - 256) < 155.5),
    ):
        a = new_annotation(kind, points, study_uid="s", series_uid="se", sop_uid="x", frame=0, plane=renderer.plane)
        m = measure(a, renderer.plane.pixel_spacing, renderer, renderer.unit)
        values = hu[inside]
        assert m.stats.pixels == values.size, kind
        assert m.stats.mean == pytest.approx(values.mean()), kind
        assert m.stats.std == pytest.approx(values.std()), kind
        assert (m.stats.min, m.stats.max) == (values.min(), values.max()), kind
        assert renderer.unit == "HU" and "HU" in m.lines[1]
    assert roi_mask("rectangle", [(1, 1), (2, 2)], (5, 5)).sum() == 4


def test_angle_and_cobb_angle():
    base = dict(study_uid="s", series_uid="se", sop_uid="x", frame=0, plane=None)
    right = new_annotation("angle", [(10, 0), (0, 0), (0, 10)], **base)
    assert measure(right, (1.0, 1.0)).value == pytest.approx(90.0)
    # with rows twice as far apart as columns the same pixels make a different angle in the patient
    assert measure(new_annotation("angle", [(10, 0), (0, 0), (10, 10)], **base), (2.0, 1.0)).value == \
        pytest.approx(np.degrees(np.arctan(2.0)))
    cobb = new_annotation("cobb", [(0, 0), (10, 0), (0, 20), (10, 30)], **base)
    assert measure(cobb, (1.0, 1.0)).value == pytest.approx(45.0)


def test_annotations_undo_redo_and_survive_as_documents():
    store = AnnotationStore()
    a = new_annotation("length", [(0, 0), (3, 4)], study_uid="s", series_uid="se", sop_uid="x", frame=2, plane=None)
    store.add(a)
    moved = a.moved(1, 1, None)
    store.replace(moved)
    assert store.for_frame("x", 2) == [moved]
    assert store.undo() and store.for_frame("x", 2) == [a]
    assert store.undo() and store.for_frame("x", 2) == []
    assert store.redo() and store.redo() and store.for_frame("x", 2) == [moved]
    store.remove(a.uid)
    assert store.for_study("s") == [] and store.undo() and store.for_study("s") == [moved]
    again = AnnotationStore()
    again.load("s", store.documents("s"))
    assert again.for_frame("x", 2) == [moved] and "s" in store.dirty


# --- linked scrolling, reference lines, 3D cursor ---------------------------------------------


def stack(planes: list[ImagePlane], uid: str, thickness: float, study: str = "st", frame_of_reference: str = "F"):
    frames = tuple(FrameRef(f"/{uid}/{i}", 0, f"{uid}.{i}", p, i + 1, thickness) for i, p in enumerate(planes))
    return DisplaySet(Series(uid, study, "CT"), Study(study), frames, orientation="axial",
                      FrameOfReferenceUID=frame_of_reference)


def axial_planes(z0: float, step: float, n: int, spacing=0.5):
    return [ImagePlane(np.array([-128.0, -128.0, z0 + i * step]), np.array([1.0, 0, 0]), np.array([0, 1.0, 0]),
                       (spacing, spacing), 512, 512) for i in range(n)]


def test_linked_scrolling_goes_by_position_also_between_different_thicknesses():
    thin = stack(axial_planes(0.0, 1.0, 100), "thin", 1.0)         # z 0..99, 1 mm
    thick = stack(axial_planes(0.5, 5.0, 20), "thick", 5.0)        # z 0.5..95.5, 5 mm
    session = ReadingSession()
    session.layout.set_grid(1, 2)
    a, b = session.layout.viewports
    session.show(thin, 0)
    session.show(thick, 1)
    session.layout.activate(0)
    for index in (0, 13, 47, 99):
        a.set_index(index)
        z = thin.frames[index].plane.position[2]
        expected = int(np.argmin([abs(f.plane.position[2] - z) for f in thick.frames]))
        assert b.index == expected, index
    session.layout.activate(1)
    b.set_index(7)                                                   # z 35.5: the thin stack goes to 35 or 36
    assert abs(thin.frames[a.index].plane.position[2] - 35.5) <= 0.5
    # not by index: a stack of another frame of reference does not move without an offset
    other = stack(axial_planes(0.0, 1.0, 100), "other", 1.0, study="st2", frame_of_reference="G")
    session.layout.set_grid(1, 3)
    c = session.show(other, 2)
    c.set_index(50)
    session.layout.activate(0)
    a.set_index(10)
    assert c.index == 50
    # ... and with one, at the offset the user set
    c.set_index(60)
    assert session.link_studies(a, c)
    session.layout.activate(0)
    a.set_index(20)
    assert c.index == 70


def test_a_frame_beyond_the_other_stack_does_not_drag_it_to_its_end():
    short = stack(axial_planes(40.0, 1.0, 10), "short", 1.0)
    frames = short.frames
    assert nearest_frame(frames, np.array([0, 0, 45.2]), np.array([0, 0, 1.0])) == 5
    assert nearest_frame(frames, np.array([0, 0, 80.0]), np.array([0, 0, 1.0])) is None


def test_a_reference_line_lies_where_the_planes_intersect(cache, samples):
    """An axial CT image and the coronal and (slightly oblique) sagittal reformats of the same study."""
    folder = samples / "tcia_covid19_ny_sbu/data-sample/A002304"
    planes = {}
    for name in ("axial", "coronal", "sagittal"):
        planes[name] = FrameRenderer(ImageSource.open(folder / name / sorted(
            p.name for p in (folder / name).iterdir() if p.name.startswith("19001231"))[0])).plane
    source = planes["axial"]
    z = source.position[2]
    target = planes["coronal"]            # rows along +x, columns along -z
    (c0, r0), (c1, r1) = reference_line(source, target)
    row = (z - target.position[2]) / (target.column_direction[2] * target.pixel_spacing[0])
    assert r0 == pytest.approx(row, abs=1e-6) and r1 == pytest.approx(row, abs=1e-6)
    # it spans the part of that row the axial image covers in x
    x_lo = source.position[0] - 0.5 * source.pixel_spacing[1]
    x_hi = source.position[0] + (source.columns - 0.5) * source.pixel_spacing[1]
    cols = sorted((x - target.position[0]) / target.pixel_spacing[1] for x in (x_lo, x_hi))
    assert sorted((c0, c1)) == pytest.approx([max(cols[0], -0.5), min(cols[1], target.columns - 0.5)], abs=1e-6)
    # on the oblique sagittal: every point of the line lies at the axial slice's height, inside both images
    target = planes["sagittal"]
    a, b = reference_line(source, target)
    for t in np.linspace(0, 1, 7):
        c, r = a[0] + t * (b[0] - a[0]), a[1] + t * (b[1] - a[1])
        point = target.pixel_to_patient(r, c)
        assert point[2] == pytest.approx(z, abs=1e-6)
        d = point - source.position
        assert -0.5 - 1e-6 <= d @ source.row_direction / source.pixel_spacing[1] <= source.columns - 0.5 + 1e-6
        assert -0.5 - 1e-6 <= c <= target.columns - 0.5 + 1e-6
    assert reference_line(source, source) is None   # parallel: no line


def test_shift_click_moves_the_other_viewports_to_the_point():
    session = ReadingSession()
    session.layout.set_grid(1, 2)
    a = session.show(stack(axial_planes(0.0, 2.0, 50), "a", 2.0), 0)
    b = session.show(stack(axial_planes(1.0, 3.0, 30), "b", 3.0), 1)
    session.layout.activate(0)
    session.set_cursor(a, np.array([10.0, 20.0, 40.2]))
    assert b.frames[b.index].plane.position[2] == pytest.approx(40.0)
    assert session.cursor_in(b) is not None


# --- the viewport's bookkeeping ---------------------------------------------------------------


def test_a_viewport_takes_only_the_frame_it_is_on_and_its_corners_name_what_is_shown(cache, samples):
    axial = next(d for d in load(cache, samples / AXIAL).display_sets if len(d) == 140)
    viewport = ViewportModel()
    viewport.show(axial)
    first = viewport.wanted()
    viewport.set_index(5)
    assert not viewport.frame_arrived(first, renderer_of(first))         # late: ignored
    assert viewport.renderer is None and viewport.loading
    ref = viewport.wanted()
    assert viewport.frame_arrived(ref, renderer_of(ref))
    corners = viewport.corner_texts(viewport.transform((512, 512)))
    assert "Image 6 / 140" in corners["bottom_left"]
    assert "PLASTIC" in corners["top_left"] and "2015-02-06 " in " ".join(corners["top_left"]) + " "
    assert corners["bottom_right"][0] == "W 80 L 40"
    assert "120 kV  112 mA" in corners["bottom_right"]
    viewport.set_index(6)                          # scrolled, not decoded yet: the corners still name image 6
    corners = viewport.corner_texts()
    assert "Image 6 / 140" in corners["bottom_left"] and "Loading image 7…" in corners["bottom_left"]


def test_the_view_state_of_a_viewport():
    viewport = ViewportModel()
    seen = []
    viewport.changed.connect(seen.append)
    viewport.zoom(2.0)
    viewport.rotate(1)
    viewport.flip(True)
    viewport.toggle_invert()
    assert viewport.view.zoom == 2.0 and viewport.view.rotation == 1 and viewport.view.flip_horizontal
    assert viewport.view.invert and all(a == frozenset({"view"}) for a in seen)
    viewport.reset_view()
    assert viewport.view == ViewState(invert=True)
    viewport.set_view(viewport.view.at_scale(1.0))
    assert viewport.view.scale == 1.0


def test_cine_plays_at_its_frame_rate_and_key_images_filter_the_stack(cache, samples):
    loop = load(cache, samples / "orthanc_tests/Database/Issue16.dcm").display_sets[0]
    viewport = ViewportModel()
    viewport.show(loop)
    assert viewport.cine.fps == pytest.approx(33.33, rel=0.01)              # the file's own rate
    viewport.play(now=100.0)
    viewport.cine_tick(100.0 + 10 / viewport.cine.fps + 1e-6)
    assert viewport.index == 10
    viewport.cine_tick(100.0 + 40 / viewport.cine.fps + 1e-6)
    assert viewport.index == 40 % 34                                         # it loops
    session = ReadingSession()
    shown = session.show(loop)
    for index in (3, 8):
        shown.set_index(index)
        assert session.toggle_key_image(shown) is True
    shown.set_key_filter(session.key_images[loop.StudyInstanceUID])
    assert [f.frame for f in shown.frames] == [3, 8]


def test_a_corner_line_leaves_out_the_parts_whose_fields_are_empty():
    from workstation.core.viewer.overlay import CornerLayout

    layout = CornerLayout({"bottom_right": ("{KVP} kV  {XRayTubeCurrent} mA", "Zoom {zoom}", "Series {SeriesNumber}")})
    assert layout.texts({"KVP": "120"})["bottom_right"] == ["120 kV"]            # no "mA" after nothing
    assert layout.texts({"KVP": "120", "XRayTubeCurrent": "502", "zoom": "80%"})["bottom_right"] == \
        ["120 kV  502 mA", "Zoom 80%"]
    assert layout.texts({})["bottom_right"] == []
