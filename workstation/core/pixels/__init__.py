"""Qt-free pixel pipeline: decode, Modality LUT, VOI, presentation, and volumes."""

from .errors import PixelDataError, VolumeError
from .image import ImageSource
from .render import FrameRenderer, render
from .voi import VoiLut, Window

__all__ = [
    "FrameRenderer",
    "ImageSource",
    "PixelDataError",
    "VoiLut",
    "VolumeError",
    "Window",
    "render",
]
