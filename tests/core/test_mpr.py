"""MPR planes against an oracle: the sorted slices read with pydicom and resliced trilinearly with
numpy from their own ImagePositionPatient, ImageOrientationPatient and PixelSpacing (not through the
project's Volume or mpr code). Plane geometry is checked without VTK; reslicing imports it inside
the tests that need it."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pydicom
import pytest

from workstation.core.pixels import mpr
from workstation.core.pixels.mpr import PlaneSpec, Slab
from workstation.core.pixels.volume import assemble_volume

pytestmark = pytest.mark.samples

PHILIPS = "dcm_qa_ct/In/Philips/S21570/S2020"
GE = "dcm_qa_ct/In/GE"
MR = "dcm_qa_deident/In"


# ----------------------------------------------------------------------------------------- the oracle


@dataclass
class Stack:
    """Slices as the files give them, sorted along their normal."""

    values: np.ndarray          # (n, rows, columns) float32 modality values
    ipp: np.ndarray             # (n, 3)
    row: np.ndarray             # along a row (first three of IOP)
    column: np.ndarray
    normal: np.ndarray
    spacing: tuple[float, float]   # between rows, between columns (PixelSpacing)

    @property
    def along(self) -> np.ndarray:
        return self.ipp @ self.normal


def read_stack(paths) -> Stack:
    dss = [pydicom.dcmread(p) for p in paths]
    iop = np.array([float(v) for v in dss[0].ImageOrientationPatient])
    row, column = iop[:3], iop[3:]
    normal = np.cross(row, column)
    normal /= np.linalg.norm(normal)
    dss.sort(key=lambda d: float(np.dot([float(v) for v in d.ImagePositionPatient], normal)))
    values = np.stack([d.pixel_array.astype(np.float32) * float(getattr(d, "RescaleSlope", 1))
                       + float(getattr(d, "RescaleIntercept", 0)) for d in dss])
    ipp = np.array([[float(v) for v in d.ImagePositionPatient] for d in dss])
    spacing = tuple(float(v) for v in dss[0].PixelSpacing)
    return Stack(values, ipp, row, column, normal, spacing)


def _bilinear(stack: Stack, k: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Slice k's values at points lying in its plane; NaN outside it."""
    local = points - stack.ipp[k]
    i = local @ stack.column / stack.spacing[0]
    j = local @ stack.row / stack.spacing[1]
    _, rows, columns = stack.values.shape
    eps = 1e-4
    inside = (i >= -eps) & (i <= rows - 1 + eps) & (j >= -eps) & (j <= columns - 1 + eps)
    i0 = np.clip(np.floor(i), 0, rows - 2).astype(int)
    j0 = np.clip(np.floor(j), 0, columns - 2).astype(int)
    fi, fj = np.clip(i - i0, 0, 1), np.clip(j - j0, 0, 1)
    v = stack.values
    out = ((v[k, i0, j0] * (1 - fj) + v[k, i0, j0 + 1] * fj) * (1 - fi)
           + (v[k, i0 + 1, j0] * (1 - fj) + v[k, i0 + 1, j0 + 1] * fj) * fi)
    return np.where(inside, out, np.nan)


def oracle(stack: Stack, points: np.ndarray) -> np.ndarray:
    """Trilinear values at LPS points (..., 3), NaN outside. Between two neighbouring slices a point is
    interpolated along the line joining the same pixel of both (their own positions: the way the
    table moved, sheared or not, however far apart) and bilinearly within each slice."""
    shape = points.shape[:-1]
    p = points.reshape(-1, 3)
    s = stack.along
    d = p @ stack.normal
    k = np.clip(np.searchsorted(s, d, side="right") - 1, 0, len(s) - 2)
    gap = s[k + 1] - s[k]
    w = (d - s[k]) / gap
    step = (stack.ipp[k + 1] - stack.ipp[k]) / gap[:, None]        # per mm along the normal
    below = _bilinear(stack, k, p - (d - s[k])[:, None] * step)
    above = _bilinear(stack, k + 1, p + (s[k + 1] - d)[:, None] * step)
    out = below * (1 - w) + above * w
    outside = (d < s[0] - 1e-4) | (d > s[-1] + 1e-4)
    return np.where(outside, np.nan, out).reshape(shape)


def pixel_centres(plane) -> np.ndarray:
    """(rows, columns, 3) LPS centres of an ImagePlane's pixels, from its own vectors."""
    i = np.arange(plane.rows)[:, None, None] * plane.pixel_spacing[0]
    j = np.arange(plane.columns)[None, :, None] * plane.pixel_spacing[1]
    return plane.position + j * plane.row_direction + i * plane.column_direction


# ----------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def philips_paths(samples):
    return sorted((samples / PHILIPS).iterdir())


@pytest.fixture(scope="module")
def philips(philips_paths):
    return assemble_volume(philips_paths)


@pytest.fixture(scope="module")
def philips_stack(philips_paths):
    return read_stack(philips_paths)


@pytest.fixture(scope="module")
def ge_paths(samples):
    return sorted((samples / GE).glob("*.dcm"))


@pytest.fixture(scope="module")
def mr_paths(samples):
    return sorted((samples / MR).glob("*.dcm"))


def reslicer(volume):
    from workstation.vtk3d.image import volume_image
    from workstation.vtk3d.reslice import Reslicer

    return Reslicer(volume_image(volume))


VTK_NOISE = 0.05
"""VTK interpolates in single precision: a few hundredths of a modality unit (HU) at most."""


def assert_matches(values, expected, atol=VTK_NOISE):
    """Same samples outside (NaN) and inside, the inside within `atol` modality units."""
    np.testing.assert_array_equal(np.isnan(values), np.isnan(expected))
    inside = ~np.isnan(expected)
    assert inside.mean() > 0.3
    np.testing.assert_allclose(values[inside], expected[inside], atol=atol, rtol=0)


# ----------------------------------------------------------------------------------------- geometry


def test_planes_are_shown_as_radiologists_read_them(philips):
    centre = mpr.volume_centre(philips)
    axial, coronal, sagittal = mpr.orthogonal_planes(centre)
    for spec, row, column, normal in (
        (axial, (1, 0, 0), (0, 1, 0), (0, 0, 1)),         # from the feet: patient's right on the left
        (coronal, (1, 0, 0), (0, 0, -1), (0, 1, 0)),      # from the front: head up
        (sagittal, (0, 1, 0), (0, 0, -1), (1, 0, 0)),     # from the patient's left: anterior on the left
    ):
        np.testing.assert_array_equal(spec.row_direction, row)
        np.testing.assert_array_equal(spec.column_direction, column)
        np.testing.assert_array_equal(spec.normal, normal)
    assert (axial.position, coronal.position, sagittal.position) == pytest.approx((centre[2], centre[1], centre[0]))
    assert coronal.at(12.5).position == pytest.approx(12.5) and coronal.at(12.5).point[1] == pytest.approx(12.5)
    from workstation.core.dicom.geometry import orientation_labels

    labels = orientation_labels(mpr.plane_geometry(philips, sagittal))
    assert (labels["left"], labels["right"], labels["top"], labels["bottom"]) == ("A", "P", "H", "F")


def test_a_plane_covers_the_volume_with_its_finest_square_pixels(philips):
    centre = mpr.volume_centre(philips)
    axial = mpr.plane_geometry(philips, PlaneSpec.through("axial", centre))
    np.testing.assert_allclose(axial.position, [philips.origin[0], philips.origin[1], centre[2]])
    assert (axial.rows, axial.columns, axial.pixel_spacing) == (512, 512, (0.451171875, 0.451171875))
    coronal = mpr.plane_geometry(philips, PlaneSpec.through("coronal", centre))
    assert coronal.columns == 512 and coronal.rows == int(139 / 0.451171875) + 1     # 139 mm head to foot
    assert coronal.position[2] == pytest.approx(philips.origin[2] + 139)            # the top row is the top slice
    spec = PlaneSpec.through("axial", centre)
    assert mpr.scroll_step(philips, spec) == pytest.approx(1.0)
    np.testing.assert_allclose(mpr.scroll_positions(philips, spec), philips.origin[2] + np.arange(140), atol=1e-9)
    assert mpr.scroll_step(philips, PlaneSpec.through("coronal", centre)) == pytest.approx(0.451171875)


def test_obliques_turn_about_patient_axes_or_the_planes_own(philips):
    centre = mpr.volume_centre(philips)
    coronal = PlaneSpec.through("coronal", centre)
    tipped = coronal.rotated("x", 90)           # about the patient's left-right axis: coronal -> axial-like
    np.testing.assert_allclose(tipped.column_direction, [0, 1, 0], atol=1e-12)
    np.testing.assert_allclose(tipped.normal, [0, 0, 1], atol=1e-12)
    assert coronal.rotated("row", 90) == tipped                 # the coronal's row is +x: the same turn
    # double oblique: the second turn follows the first when about the plane's own axis, not when fixed
    own = coronal.rotated("row", 30).rotated("column", 20)
    fixed = coronal.rotated("row", 30).rotated("z", 20)
    np.testing.assert_allclose(own.row_direction @ own.column_direction, 0, atol=1e-12)
    assert np.degrees(np.arccos(own.normal @ [0, 1, 0])) == pytest.approx(np.degrees(np.arccos(
        np.cos(np.radians(30)) * np.cos(np.radians(20)))))
    assert not np.allclose(own.normal, fixed.normal)
    np.testing.assert_allclose(own.point, centre)               # turned about an axis through its point
    assert mpr.parse_oblique("row:30") == ("row", 30.0) and mpr.parse_oblique("Z:-12.5") == ("z", -12.5)
    for bad in ("30", "q:30", "x:many", "x:nan"):
        with pytest.raises(ValueError, match="oblique"):
            mpr.parse_oblique(bad)
    assert mpr.parse_slab("mip:10") == Slab("mip", 10.0)
    for bad in ("max:10", "mip", "avg:-1"):
        with pytest.raises(ValueError, match="slab"):
            mpr.parse_slab(bad)


def test_the_volume_spacing_along_a_direction(samples, mr_paths):
    v = assemble_volume(mr_paths)                      # sagittal slices 1.2 mm apart along -x, 1.0547 mm pixels
    assert v.spacing_along([1, 0, 0]) == pytest.approx(1.2) and v.spacing_along([0, 0, 1]) == pytest.approx(1.0547)
    assert mpr.scroll_step(v, PlaneSpec.through("axial", mpr.volume_centre(v))) == pytest.approx(1.0547)


# ----------------------------------------------------------------------------------------- reslicing


@pytest.mark.parametrize("k", [0, 57, 139])
def test_an_axial_plane_at_a_slice_is_that_slice(philips, philips_stack, k):
    spec = PlaneSpec.through("axial", mpr.volume_centre(philips)).at(float(philips_stack.ipp[k][2]))
    values, plane = reslicer(philips).reslice(spec)
    assert values.dtype == np.float32
    np.testing.assert_array_equal(values, philips_stack.values[k])
    np.testing.assert_allclose(plane.position, philips_stack.ipp[k], atol=1e-9)


def test_a_sagittal_plane_at_a_sagittal_mr_slice_is_that_slice(mr_paths):
    stack = read_stack(mr_paths)
    v = assemble_volume(mr_paths)
    r = reslicer(v)
    for k in (0, 100, 195):
        at = v.index_to_patient(k, 0, 0)          # the files' positions are even to 0.0004 mm: the volume's
        np.testing.assert_allclose(at, stack.ipp[k], atol=1e-3)
        values, plane = r.reslice(PlaneSpec.through("sagittal", at))
        np.testing.assert_array_equal(values, stack.values[k])
        np.testing.assert_allclose(plane.position, at, atol=1e-9)


@pytest.mark.parametrize("orientation", ["coronal", "sagittal"])
def test_coronal_and_sagittal_planes_equal_the_oracle(philips, philips_stack, orientation):
    point = mpr.volume_centre(philips) + [7.3, -11.1, 5.35]      # between voxels every way
    values, plane = reslicer(philips).reslice(PlaneSpec.through(orientation, point))
    assert_matches(values, oracle(philips_stack, pixel_centres(plane)))


def test_a_double_oblique_plane_equals_the_oracle(philips, philips_stack):
    spec = PlaneSpec.through("coronal", mpr.volume_centre(philips)).rotated("row", 25).rotated("column", -35)
    values, plane = reslicer(philips).reslice(spec)
    assert np.isnan(values).any()                     # the corners of an oblique plane are outside
    assert_matches(values, oracle(philips_stack, pixel_centres(plane)))


@pytest.mark.parametrize("orientation", ["axial", "coronal"])
def test_planes_of_the_sagittal_mr_equal_the_oracle(mr_paths, orientation):
    stack, v = read_stack(mr_paths), assemble_volume(mr_paths)
    spec = PlaneSpec.through(orientation, mpr.volume_centre(v) + [3.3, 2.1, -4.4]).rotated("z", 10)
    values, plane = reslicer(v).reslice(spec)
    # the files' positions are even only to 0.0004 mm, the volume's are even: that far, at the steepest
    # change between neighbouring slices, is what a value may move by
    even = stack.ipp[0] + np.outer(np.arange(len(stack.ipp)), (stack.ipp[-1] - stack.ipp[0]) / (len(stack.ipp) - 1))
    jitter = float(np.linalg.norm(stack.ipp - even, axis=1).max())
    steepest = float(np.abs(np.diff(stack.values, axis=0)).max()) / float(np.diff(stack.along).min())
    assert 0 < jitter < 1e-3
    assert_matches(values, oracle(stack, pixel_centres(plane)), atol=VTK_NOISE + jitter * steepest)


def test_the_tilted_series_coronal_plane_is_not_sheared(ge_paths):
    """The GE head, 18.5° gantry tilt, 4 mm then 7 mm apart: its coronal plane equals the oracle,
    which interpolates between the actual slice planes, where the volume's even grid passes through
    the slices (the 4 mm part). Across the 7 mm part the volume was interpolated onto the 4 mm grid
    first and the reslice interpolates again: there it equals the oracle run on that grid (made here
    from the files, the grid as documented: the 4 mm part's spacing through its slices, values
    rounded to whole HU, a grid slice within the spacing tolerance of a file being that file), and
    stays near the one-step oracle, while a sheared reading is far off."""
    stack, v = read_stack(ge_paths), assemble_volume(ge_paths)
    spec = PlaneSpec.through("coronal", mpr.volume_centre(v) + [0, 9.7, 0])
    values, plane = reslicer(v).reslice(spec)
    points = pixel_centres(plane)
    expected = oracle(stack, points)
    np.testing.assert_array_equal(np.isnan(values), np.isnan(expected))
    inside = ~np.isnan(expected)
    assert inside.mean() > 0.3
    along = points @ stack.normal
    s = stack.along
    fine = inside & (along <= s[13] + 1e-6)                                   # the 4 mm part
    assert fine.sum() > 20000
    np.testing.assert_allclose(values[fine], expected[fine], atol=VTK_NOISE, rtol=0)

    gap = (s[13] - s[0]) / 13
    grid = s[0] + gap * np.arange(int(np.floor((s[-1] - s[0]) / gap + 0.01)) + 1)
    k = np.clip(np.searchsorted(s, grid, side="right") - 1, 0, len(s) - 2)
    w = (grid - s[k]) / (s[k + 1] - s[k])
    tolerance = max(0.01, 0.01 * float(np.median(np.diff(s))))          # within it, a grid slice is the slice
    w[(grid - s[k]) <= tolerance] = 0
    w[(s[k + 1] - grid) <= tolerance] = 1
    w = w[:, None, None]
    resampled = np.rint(stack.values[k] * (1 - w) + stack.values[k + 1] * w)    # same row and column
    per_mm = (stack.ipp[-1] - stack.ipp[0]) / (s[-1] - s[0])
    on_grid = Stack(resampled.astype(np.float32), stack.ipp[0] + np.outer(grid - s[0], per_mm),
                    stack.row, stack.column, stack.normal, stack.spacing)
    twice = oracle(on_grid, points)
    both = inside & ~np.isnan(twice)
    assert both.sum() > 0.95 * inside.sum()
    difference = np.abs(values[both] - twice[both])
    assert difference.max() <= VTK_NOISE
    once = np.abs(values[inside & ~fine] - expected[inside & ~fine])
    assert np.median(once) <= 1.0

    # what a sheared volume shows instead: the slices stacked straight along their normal
    straight = Stack(stack.values, stack.ipp[0] + np.outer(s - s[0], stack.normal),
                     stack.row, stack.column, stack.normal, stack.spacing)
    sheared = oracle(straight, points)
    both = inside & ~np.isnan(sheared)
    assert np.median(np.abs(values[both] - sheared[both])) > 10


def test_a_distance_between_two_voxel_centres_measured_in_a_coronal_plane(philips_paths, philips_stack):
    """Two voxels marked in the volume, found in the coronal plane through them (the centroid of what
    they add), measured with the plane's own geometry: the distance the files give, within 0.1 mm."""
    v = assemble_volume(philips_paths)
    (k1, i, j1), (k2, j2) = (17, 201, 88), (121, 430)
    first = philips_stack.ipp[k1] + j1 * philips_stack.spacing[1] * philips_stack.row \
        + i * philips_stack.spacing[0] * philips_stack.column
    second = philips_stack.ipp[k2] + j2 * philips_stack.spacing[1] * philips_stack.row \
        + i * philips_stack.spacing[0] * philips_stack.column
    spec = PlaneSpec.through("coronal", first)
    before, _ = reslicer(v).reslice(spec)
    v.array[k1, i, j1] += 20000
    v.array[k2, i, j2] += 20000
    after, plane = reslicer(v).reslice(spec)
    added = after - before
    found = []
    for point in (first, second):
        row, column, off = plane.patient_to_pixel(point)
        assert abs(off) < 1e-9
        r0, c0 = int(round(row)), int(round(column))
        window = added[r0 - 4:r0 + 5, c0 - 4:c0 + 5]
        rows, columns = np.mgrid[r0 - 4:r0 + 5, c0 - 4:c0 + 5]
        found.append(plane.pixel_to_patient((window * rows).sum() / window.sum(), (window * columns).sum() / window.sum()))
    assert float(np.linalg.norm(found[0] - found[1])) == pytest.approx(float(np.linalg.norm(first - second)), abs=0.1)
    assert float(np.linalg.norm(first - second)) > 150


@pytest.mark.parametrize("mode, reduce", [("mip", np.nanmax), ("minip", np.nanmin)])
def test_a_slab_is_numpys_maximum_or_minimum_over_the_same_samples(philips, philips_stack, mode, reduce):
    centre = mpr.volume_centre(philips)
    r = reslicer(philips)
    axial = PlaneSpec.through("axial", centre).at(float(philips_stack.ipp[70][2]))
    values, _ = r.reslice(axial, Slab(mode, 10))
    np.testing.assert_array_equal(values, reduce(philips_stack.values[65:76], axis=0))   # 11 slices, 10 mm
    oblique = PlaneSpec.through("coronal", centre + [0, 20.2, 0]).rotated("x", 20)
    values, plane = r.reslice(oblique, Slab(mode, 10))
    # samples one voxel step apart along the normal (index change per mm on the files' own axes),
    # spanning the 10 mm from end to end
    n = oblique.normal
    per_mm = [n @ philips_stack.row / philips_stack.spacing[1], n @ philips_stack.column / philips_stack.spacing[0],
              n @ philips_stack.normal / float(np.diff(philips_stack.along).mean())]
    count = round(10 * float(np.linalg.norm(per_mm))) + 1
    centres = pixel_centres(plane)
    samples = np.stack([oracle(philips_stack, centres + offset * n) for offset in np.linspace(-5, 5, count)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)      # pixels with no sample inside stay NaN
        expected = reduce(samples, axis=0)
    assert_matches(values, expected)


@pytest.mark.parametrize("orientation", ["axial", "coronal", "sagittal"])
def test_a_slab_off_the_voxel_grid_is_the_maximum_of_the_same_planes(philips, orientation):
    """Off the voxel centres (the volume's centre, between slices and pixels) a MIP is the maximum of the
    plain planes at its samples' offsets: VTK's axis-aligned fast path once took them elsewhere."""
    r = reslicer(philips)
    spec = PlaneSpec.through(orientation, mpr.volume_centre(philips) + [0.13, 0.17, 0.31])
    slab = Slab("mip", 4)
    values, _ = r.reslice(spec, slab)
    planes = np.array([r.reslice(spec.moved(o))[0] for o in slab.offsets(mpr.scroll_step(philips, spec))])
    inside = np.all(np.isfinite(planes), axis=0)
    np.testing.assert_allclose(values[inside], planes.max(axis=0)[inside], atol=VTK_NOISE)


def test_an_average_slab_is_the_trapezoid_mean_of_its_samples(philips, philips_stack):
    axial = PlaneSpec.through("axial", mpr.volume_centre(philips)).at(float(philips_stack.ipp[70][2]))
    values, _ = reslicer(philips).reslice(axial, Slab("avg", 4))
    weights = np.array([0.5, 1, 1, 1, 0.5])
    np.testing.assert_allclose(values, np.tensordot(weights / weights.sum(), philips_stack.values[68:73], 1),
                               atol=VTK_NOISE)


def test_planes_on_several_threads_at_once_over_the_one_buffer(philips):
    """A reslicer is called from three workers at once (each gets its own VTK filter) and gives what it
    gives alone; every filter reads the volume's own buffer, none a copy."""
    from concurrent.futures import ThreadPoolExecutor

    from vtkmodules.util.numpy_support import vtk_to_numpy

    from workstation.vtk3d.image import volume_image
    from workstation.vtk3d.reslice import Reslicer

    vi = volume_image(philips)
    address = philips.array.ctypes.data
    assert vtk_to_numpy(vi.image.GetPointData().GetScalars()).ctypes.data == address
    r = Reslicer(vi)
    centre = mpr.volume_centre(philips)
    specs = [PlaneSpec.through(o, centre + [d, d, d]).rotated("z", d) for o in mpr.ORIENTATIONS for d in (0.0, 3.0, 6.0)]
    alone = [r.reslice(s)[0] for s in specs]

    def on_a_worker(spec):
        values, _ = r.reslice(spec)
        buffer = vtk_to_numpy(r._filter().GetInput().GetPointData().GetScalars())
        return values, buffer.ctypes.data

    with ThreadPoolExecutor(3) as pool:
        together = list(pool.map(on_a_worker, specs * 4))
    for a, (b, buffer) in zip(alone * 4, together, strict=True):
        np.testing.assert_array_equal(a, b)
        assert buffer == address


def test_nearest_neighbour_takes_the_nearest_voxel(philips, philips_stack):
    values, plane = reslicer(philips).reslice(PlaneSpec.through("coronal", mpr.volume_centre(philips) + [0, 0.1, 0]),
                                              interpolation="nearest")
    points = pixel_centres(plane)
    k = np.rint(points[..., 2] - philips_stack.ipp[0][2]).astype(int)                  # slices 1 mm apart
    i = np.rint((points[..., 1] - philips_stack.ipp[0][1]) / philips_stack.spacing[0]).astype(int)
    j = np.rint((points[..., 0] - philips_stack.ipp[0][0]) / philips_stack.spacing[1]).astype(int)
    np.testing.assert_array_equal(values, philips_stack.values[k, i, j])


def test_a_plane_through_nothing_is_all_outside(philips):
    spec = PlaneSpec.through("axial", mpr.volume_centre(philips)).at(float(philips.origin[2]) - 50)
    values, _ = reslicer(philips).reslice(spec)
    assert np.isnan(values).all()
    with pytest.raises(ValueError, match="interpolation"):
        reslicer(philips).reslice(spec, interpolation="sinc")
