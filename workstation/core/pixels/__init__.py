"""Qt-free pixel pipeline: decode, Modality LUT, VOI, presentation, geometry and volumes."""

from .errors import PixelDataError
from .geometry import ImagePlane, orientation_labels, pixel_spacing
from .image import ImageSource
from .render import FrameRenderer, render
from .voi import VoiLut, Window

__all__ = [
    "FrameRenderer",
    "ImagePlane",
    "ImageSource",
    "PixelDataError",
    "VoiLut",
    "Window",
    "orientation_labels",
    "pixel_spacing",
    "render",
]
