"""Volume rendering of a `VolumeImage` offscreen: VTK's CPU ray caster (vtkFixedPointVolumeRayCast
Mapper, every core) into an offscreen window (EGL when there is no display), read back as RGB for
the Qt widget to paint. The volume sits in patient space (LPS mm) through its index -> patient
matrix, so the camera's directions are the patient's and a sheared (tilted) stack renders unsheared.

The CPU caster is chosen over VTK's GPU ray caster because here OpenGL is Mesa's software
rasteriser: on a 512x512x300 CT the GPU caster took 1.3-1.8 s a frame, the CPU caster 0.05-0.07 s
after its first (which computes the gradients shading needs). While the user drags, `render(fast=
True)` casts one ray per 2x2 pixels with twice the step; the final frame is full quality. The
first shaded frame computes the gradients (about 2.6 s for 512x512x300 on two cores), so the view
asks for an unshaded preview first.

`RenderThread` owns a scene on a Python thread of its own (its OpenGL context lives there), so the
GUI never waits for a frame: the newest request replaces one not yet started.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
import vtkmodules.vtkRenderingOpenGL2  # noqa: F401 - the OpenGL implementations of the render classes
import vtkmodules.vtkRenderingVolumeOpenGL2  # noqa: F401 - the ray caster's display helper
from vtkmodules.util.numpy_support import vtk_to_numpy
from vtkmodules.vtkCommonCore import vtkUnsignedCharArray
from vtkmodules.vtkCommonDataModel import vtkPiecewiseFunction
from vtkmodules.vtkCommonMath import vtkMatrix4x4
from vtkmodules.vtkRenderingCore import (
    vtkColorTransferFunction,
    vtkRenderer,
    vtkVolume,
    vtkVolumeProperty,
)
from vtkmodules.vtkRenderingVolume import vtkFixedPointVolumeRayCastMapper

from workstation.core.pixels.volume_presets import VolumePreset
from workstation.core.viewer.camera3d import Camera3D

from .image import VolumeImage

log = logging.getLogger(__name__)


def _window():
    """An offscreen render window: EGL needs no display (tests, servers, Qt's offscreen platform)."""
    try:
        from vtkmodules.vtkRenderingOpenGL2 import vtkEGLRenderWindow

        window = vtkEGLRenderWindow()
    except ImportError:   # a VTK built without EGL
        from vtkmodules.vtkRenderingCore import vtkRenderWindow

        window = vtkRenderWindow()
    window.SetOffScreenRendering(1)
    window.SetMultiSamples(0)
    return window


def _matrix(m: np.ndarray) -> vtkMatrix4x4:
    out = vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            out.SetElement(r, c, float(m[r, c]))
    return out


@dataclass(frozen=True)
class ClipBox:
    """The part of the volume rendered, as fractions 0..1 of its index extent (columns, rows, slices).
    The view draws its outline itself (VTK's outline actor beside the ray caster tinted the volume)."""
    low: tuple[float, float, float] = (0.0, 0.0, 0.0)
    high: tuple[float, float, float] = (1.0, 1.0, 1.0)

    def corners(self, image: VolumeImage) -> np.ndarray:
        """(8, 3): the box's corners in LPS mm."""
        columns, rows, slices = image.image.GetDimensions()
        top = np.array([columns - 1, rows - 1, slices - 1], float)
        low, high = np.array(self.low) * top, np.array(self.high) * top
        index = np.array([[x, y, z, 1.0] for z in (low[2], high[2]) for y in (low[1], high[1]) for x in (low[0], high[0])])
        return (index @ image.index_to_patient.T)[:, :3]

    def clamped(self) -> ClipBox:
        low = tuple(min(max(v, 0.0), 1.0) for v in self.low)
        high = tuple(min(max(v, lo), 1.0) for v, lo in zip(self.high, low, strict=True))
        return ClipBox(low, high)


@dataclass(frozen=True)
class SceneState:
    """Everything a frame depends on, so the GUI can hand a copy to the render thread."""
    camera: Camera3D
    preset: VolumePreset                 # absolute (relative presets fitted first)
    mip: bool = False
    clip: ClipBox = field(default_factory=ClipBox)
    size: tuple[int, int] = (512, 512)   # width, height in pixels
    fast: bool = False                   # a frame while dragging: one ray per 2x2 pixels
    shade: bool = True                   # False: the preview before the gradients are computed


class VolumeScene:
    """One volume in VTK's CPU ray caster, offscreen; `render(state)` gives RGB pixels. Use it on one
    thread only (its OpenGL context's)."""

    def __init__(self, image: VolumeImage) -> None:
        self.image = image
        self.mapper = vtkFixedPointVolumeRayCastMapper()
        self.mapper.SetInputData(image.image)
        self.mapper.SetAutoAdjustSampleDistances(0)
        self.mapper.SetNumberOfThreads(max(1, os.cpu_count() or 1))
        self.mapper.SetCroppingRegionFlagsToSubVolume()
        self.spacing = float(min(image.volume.spacing))      # the ray step in mm
        self.property = vtkVolumeProperty()
        self.property.SetInterpolationTypeToLinear()
        self.property.SetScalarOpacityUnitDistance(self.spacing)
        self.volume = vtkVolume()
        self.volume.SetMapper(self.mapper)
        self.volume.SetProperty(self.property)
        self.volume.SetUserMatrix(_matrix(image.index_to_patient))
        self.renderer = vtkRenderer()
        self.renderer.SetBackground(0.0, 0.0, 0.0)
        self.renderer.AddVolume(self.volume)
        self.renderer.GetActiveCamera().ParallelProjectionOn()
        self.window = _window()
        self.window.AddRenderer(self.renderer)
        self._preset: VolumePreset | None = None
        self._clip: ClipBox | None = None
        self.radius = float(np.linalg.norm(np.ptp(image.volume.corners(), axis=0)) / 2) + 1.0

    def _set_preset(self, preset: VolumePreset) -> None:
        if preset.relative:
            raise ValueError("a relative preset must be fitted to the volume's range first")
        if preset == self._preset:
            return
        color = vtkColorTransferFunction()
        for value, r, g, b in preset.color:
            color.AddRGBPoint(value, r, g, b)
        opacity = vtkPiecewiseFunction()
        for value, a in preset.opacity:
            opacity.AddPoint(value, a)
        self.property.SetColor(color)
        self.property.SetScalarOpacity(opacity)
        if preset.shading is not None:
            self.property.SetAmbient(preset.shading.ambient)
            self.property.SetDiffuse(preset.shading.diffuse)
            self.property.SetSpecular(preset.shading.specular)
            self.property.SetSpecularPower(preset.shading.power)
        self._preset = preset

    def _set_clip(self, clip: ClipBox) -> None:
        clip = clip.clamped()
        if clip == self._clip:
            return
        whole = clip == ClipBox()
        columns, rows, slices = self.image.image.GetDimensions()
        top = (columns - 1, rows - 1, slices - 1)
        bounds = []
        for axis in range(3):
            bounds += [clip.low[axis] * top[axis], clip.high[axis] * top[axis]]
        self.mapper.SetCropping(not whole)
        self.mapper.SetCroppingRegionPlanes(*bounds)
        self._clip = clip

    def _set_camera(self, camera: Camera3D) -> None:
        vtk_camera = self.renderer.GetActiveCamera()
        focal = np.asarray(camera.focal_point, dtype=np.float64)
        vtk_camera.SetFocalPoint(*focal)
        vtk_camera.SetPosition(*(focal - np.asarray(camera.direction) * self.radius * 4))
        vtk_camera.SetViewUp(*camera.view_up)
        vtk_camera.SetParallelScale(camera.half_height)

    def render(self, state: SceneState) -> np.ndarray:
        """The frame as RGB, (height, width, 3) uint8, top row first."""
        self._set_preset(state.preset)
        self._set_clip(state.clip)
        if state.mip:
            self.mapper.SetBlendModeToMaximumIntensity()
        else:
            self.mapper.SetBlendModeToComposite()
        self.property.SetShade(bool(state.shade and not state.mip and state.preset.shading is not None))
        self._set_camera(state.camera)
        width, height = (max(int(v), 16) for v in state.size)
        if tuple(self.window.GetSize()) != (width, height):
            self.window.SetSize(width, height)
        step = 2.0 if state.fast else 1.0
        self.mapper.SetImageSampleDistance(step)
        self.mapper.SetSampleDistance(self.spacing * step)
        self.renderer.ResetCameraClippingRange()
        self.window.Render()
        data = vtkUnsignedCharArray()
        self.window.GetPixelData(0, 0, width - 1, height - 1, 0, data, 0)
        pixels = vtk_to_numpy(data).reshape(height, width, 3)
        return np.ascontiguousarray(pixels[::-1])

    def close(self) -> None:
        self.renderer.RemoveAllViewProps()
        self.window.Finalize()


class RenderThread:
    """A scene on a Python thread of its own. `request(state)` asks for a frame (replacing a request
    not yet started); `on_frame(pixels, state, seconds)` is called on that thread with each frame,
    `on_error(message)` if the scene cannot start or render (no OpenGL, out of memory)."""

    def __init__(self, image: VolumeImage, on_frame: Callable[[np.ndarray, SceneState, float], None],
                 on_error: Callable[[str], None] | None = None) -> None:
        self.image = image
        self.on_frame = on_frame
        self.on_error = on_error or (lambda message: None)
        self._pending: SceneState | None = None
        self._stop = False
        self._wake = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="volume-render", daemon=True)
        self._thread.start()

    def request(self, state: SceneState) -> None:
        with self._wake:
            self._pending = state
            self._wake.notify()

    def _next(self) -> SceneState | None:
        with self._wake:
            while self._pending is None and not self._stop:
                self._wake.wait()
            state, self._pending = self._pending, None
            return None if self._stop else state

    def _run(self) -> None:
        import time

        try:
            scene = VolumeScene(self.image)
        except Exception as exc:   # noqa: BLE001 - reported in words; MPR goes on without 3D
            log.exception("the 3D scene could not start")
            self.on_error(f"The 3D view could not start: {exc}")
            return
        try:
            while (state := self._next()) is not None:
                start = time.perf_counter()
                try:
                    pixels = scene.render(state)
                except Exception as exc:   # noqa: BLE001
                    log.exception("a 3D frame failed")
                    self.on_error(f"The 3D view could not render: {exc}")
                    continue
                try:
                    self.on_frame(pixels, state, time.perf_counter() - start)
                except RuntimeError:   # the view that asked is gone (a Qt object deleted): nobody to render for
                    log.debug("the 3D view went while a frame rendered")
                    break
        finally:
            scene.close()

    def close(self, timeout: float = 10.0) -> None:
        with self._wake:
            self._stop = True
            self._wake.notify()
        self._thread.join(timeout)


def preview(state: SceneState) -> SceneState:
    """The first frame's quick version: unshaded, one ray per 2x2 pixels."""
    return replace(state, fast=True, shade=False)
