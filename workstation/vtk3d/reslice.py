"""MPR planes cut by VTK's vtkImageReslice through the index-space image of `volume_image`.

One affine does the geometry: ResliceAxes = patient_to_index @ (plane pixel -> patient), so a
sheared volume (gantry tilt) and oblique planes are the same matrix and no voxel is resampled or
copied beforehand. Values come back as float32 modality values with NaN outside the volume
(beyond its outermost voxel centres; no edge value is stretched): the renderer already shows NaN
black (FrameRenderer.of_values), and no real value can be mistaken for it, as the volume's minimum
could (-1024 is air inside the patient too). A thick slab's samples outside the volume are left
out of their pixel's maximum, minimum or mean; a pixel with none inside is NaN.

Each thread reslices through its own vtkImageData and vtkImageReslice over the one shared buffer:
two pipeline updates from two threads are not safe on shared VTK objects, reading one array is.
VTK releases the GIL while it reslices, and on threads Python did not start (Qt's thread pools)
that release loses the thread's state and aborts the process (seen in the viewer): a call from
such a thread is handed to a Python thread of the reslicer's own.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from vtkmodules.util.numpy_support import numpy_to_vtk, vtk_to_numpy
from vtkmodules.vtkCommonCore import VTK_FLOAT
from vtkmodules.vtkCommonDataModel import vtkImageData
from vtkmodules.vtkCommonMath import vtkMatrix4x4
from vtkmodules.vtkImagingCore import vtkImageReslice

from workstation.core.dicom.geometry import ImagePlane
from workstation.core.pixels.mpr import PlaneSpec, Slab, plane_geometry, scroll_step

from .image import VolumeImage

INTERPOLATIONS = ("nearest", "linear", "cubic")


def _aligned(axes: np.ndarray) -> bool:
    """The plane's axes run along the index axes (each one along a single index axis): VTK's
    optimised path applies."""
    return all(np.count_nonzero(np.abs(axes[:3, j]) > 1e-9 * np.abs(axes[:3, j]).max()) == 1 for j in range(3))


class Reslicer:
    """Cuts planes through one volume; safe to call from several threads at once (a filter each)."""

    def __init__(self, volume_image: VolumeImage) -> None:
        self.volume_image = volume_image
        self._local = threading.local()
        self._python_thread: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    def _filter(self) -> vtkImageReslice:
        reslice = getattr(self._local, "reslice", None)
        if reslice is None:
            array = self.volume_image.volume.array
            slices, rows, columns = array.shape
            image = vtkImageData()          # this thread's own view of the shared buffer (no copy)
            image.SetDimensions(columns, rows, slices)
            image.SetOrigin(0.0, 0.0, 0.0)
            image.SetSpacing(1.0, 1.0, 1.0)
            scalars = numpy_to_vtk(array.reshape(-1), deep=False)
            image.GetPointData().SetScalars(scalars)
            reslice = vtkImageReslice()
            reslice.SetInputData(image)
            reslice.SetOutputScalarType(VTK_FLOAT)
            reslice.SetOutputDimensionality(2)
            reslice.SetOutputOrigin(0.0, 0.0, 0.0)   # left unset, VTK derives them from the input
            reslice.SetOutputSpacing(1.0, 1.0, 1.0)
            reslice.SetBackgroundLevel(float("nan"))
            reslice.SetBorder(False)                 # outside the voxel centres is outside: no edge stretched
            reslice.SetSlabSliceSpacingFraction(1.0)
            self._local.reslice, self._local.keep = reslice, (image, scalars, array)
        return reslice

    def reslice(self, spec: PlaneSpec, slab: Slab | None = None,
                interpolation: str = "linear") -> tuple[np.ndarray, ImagePlane]:
        """The plane's modality values (float32, rows x columns, NaN outside the volume) and where its
        pixels lie (`plane_geometry`). A slab samples `Slab.samples` planes about the volume's spacing
        along the normal apart, centred on the plane."""
        if isinstance(threading.current_thread(), threading._DummyThread):   # a thread Python did not start
            with self._lock:
                if self._python_thread is None:
                    self._python_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="reslice")
            return self._python_thread.submit(self._reslice, spec, slab, interpolation).result()
        return self._reslice(spec, slab, interpolation)

    def close(self) -> None:
        """Let the reslicer's own thread go (if calls from foreign threads started one)."""
        if self._python_thread is not None:
            self._python_thread.shutdown(wait=True)

    def _reslice(self, spec: PlaneSpec, slab: Slab | None, interpolation: str) -> tuple[np.ndarray, ImagePlane]:
        if interpolation not in INTERPOLATIONS:
            raise ValueError(f"unknown interpolation {interpolation!r}: use nearest, linear or cubic")
        volume = self.volume_image.volume
        plane = plane_geometry(volume, spec)
        count, spacing = slab.samples(scroll_step(volume, spec)) if slab is not None else (1, 0.0)
        to_patient = np.eye(4)
        to_patient[:3, 0] = plane.row_direction * plane.pixel_spacing[1]
        to_patient[:3, 1] = plane.column_direction * plane.pixel_spacing[0]
        to_patient[:3, 2] = spec.normal * (spacing if count > 1 else 1.0)
        to_patient[:3, 3] = plane.position
        axes = self.volume_image.patient_to_index @ to_patient
        matrix = vtkMatrix4x4()
        matrix.DeepCopy(axes.reshape(-1).tolist())
        reslice = self._filter()
        reslice.SetResliceAxes(matrix)
        reslice.SetOutputExtent(0, plane.columns - 1, 0, plane.rows - 1, 0, 0)
        {"nearest": reslice.SetInterpolationModeToNearestNeighbor, "linear": reslice.SetInterpolationModeToLinear,
         "cubic": reslice.SetInterpolationModeToCubic}[interpolation]()
        if count > 1 and _aligned(axes):
            return self._stacked(reslice, axes, count, slab.mode, plane), plane
        reslice.SetSlabNumberOfSlices(count)
        # VTK's optimised path for axis-aligned axes takes a slab's samples elsewhere than the axes say
        # when the plane is off the voxel grid (a coronal MIP off a voxel centre was 240 HU from the
        # maximum of the same planes), so an oblique slab goes through the general path
        reslice.SetOptimization(count == 1)
        if slab is not None:
            {"mip": reslice.SetSlabModeToMax, "minip": reslice.SetSlabModeToMin,
             "avg": reslice.SetSlabModeToMean}[slab.mode]()
            reslice.SetSlabTrapezoidIntegration(slab.mode == "avg")
        reslice.Update()
        output = reslice.GetOutput()
        values = vtk_to_numpy(output.GetPointData().GetScalars()).reshape(plane.rows, plane.columns)
        output.GetPointData().Initialize()      # the array is the caller's now (no copy); VTK makes the next
        return values, plane

    def _stacked(self, reslice: vtkImageReslice, axes: np.ndarray, count: int, mode: str, plane) -> np.ndarray:
        """An axis-aligned slab as its thin planes, each through VTK's optimised path (1-2 ms, where the
        general path's slab took 45-95 ms), reduced as they come: samples outside are left out, avg
        weighs the end planes half. It goes in bands of rows, so beyond the result only a band's
        samples are held (the general path holds none: a whole plane more per worker was 3-6 % of
        the volume with three workers)."""
        reslice.SetSlabNumberOfSlices(1)
        reslice.SetOptimization(True)
        rows, columns = plane.rows, plane.columns
        out = np.full((rows, columns), np.nan if mode != "avg" else 0.0, np.float32)
        weight = np.zeros((rows, columns), np.float32) if mode == "avg" else None
        band = max(32, -(-rows // 3))
        matrices = []
        for n in range(count):
            shifted = axes.copy()
            shifted[:3, 3] = axes[:3, 3] + axes[:3, 2] * (n - (count - 1) / 2)   # along the normal
            matrix = vtkMatrix4x4()
            matrix.DeepCopy(shifted.reshape(-1).tolist())
            matrices.append(matrix)
        for top in range(0, rows, band):
            bottom = min(rows, top + band)
            reslice.SetOutputExtent(0, columns - 1, top, bottom - 1, 0, 0)
            part = out[top:bottom]
            for n, matrix in enumerate(matrices):
                reslice.SetResliceAxes(matrix)
                reslice.Update()
                thin = vtk_to_numpy(reslice.GetOutput().GetPointData().GetScalars()).reshape(bottom - top, columns)
                if mode == "avg":                # in place: no temporary arrays of the band's size
                    inside = np.isfinite(thin)
                    np.copyto(thin, 0.0, where=~inside)
                    end = n in (0, count - 1)
                    if end:
                        thin *= 0.5
                    part += thin
                    np.add(weight[top:bottom], 0.5 if end else 1.0, out=weight[top:bottom], where=inside)
                else:
                    (np.fmax if mode == "mip" else np.fmin)(part, thin, out=part)
        reslice.GetOutput().GetPointData().Initialize()   # VTK's band buffer goes
        if mode == "avg":
            with np.errstate(invalid="ignore", divide="ignore"):
                out /= weight                    # 0/0: no sample inside, NaN as outside
        return out
