"""Stored values -> Modality LUT -> VOI -> Presentation LUT -> 8-bit display buffer (PS3.14 / PS3.3 C.11).

The whole greyscale chain is folded into one uint8 table indexed by (stored value - frame minimum),
so re-windowing costs one small table build plus one ``numpy.take``.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from workstation.core.dicom.geometry import SpacingInfo, patient_orientation

from .image import ImageSource, ModalityTransform
from .overlays import Overlay
from .shutters import Shutter, shutter_mask
from .voi import VoiLut, Window, full_range_window, window_to_bits, window_to_uint8

MAX_TABLE = 1 << 16
"""Largest stored-value span mapped through a table; wider (32-bit, float) frames are windowed directly."""


class FrameRenderer:
    """Keeps one frame's modality values and re-windows it fast: a mouse drag only re-runs the VOI step.

    It keeps only what rendering needs: an index into a small table per window (the stored frame it
    was built from is not kept), its overlay planes, its display shutter's mask, and what it read of
    the header, on the decoding worker, so that painting reads no dataset.
    """

    def __init__(self, source: ImageSource, frame: int = 0, keywords: Iterable[str] = ()) -> None:
        self.source = source
        self.frame = frame
        self.number_of_frames = source.number_of_frames
        self.shape = (source.rows, source.columns)
        self.attributes = {k: source.value(k) for k in keywords}   # what corner texts ask of the header
        self.plane = source.plane(frame)   # read here, on the decoding worker: painting reads no dataset
        self.patient_orientation = None if self.plane is not None else patient_orientation(source.dataset)
        self.spacing: SpacingInfo | None = source.spacing(frame)
        """What the pixel spacing means (patient, detector, ultrasound regions, unknown) and its caution."""
        self.overlays: list[Overlay] = source.overlays(frame)
        """The overlay planes of this frame, for the viewer to paint as a layer (not burnt in)."""
        self.shutter: Shutter | None = source.shutter(frame)
        """The display shutter `render()` applies (outside it: its grey, black without one), or None."""
        self.is_color = source.is_color
        self.invert = source.invert
        self.unit = modality_unit(source.value) if not source.is_color else ""
        self._stored_values: np.ndarray | None = None
        self._rgb: np.ndarray | None = None
        self._index: np.ndarray | None = None
        self._first = 0                         # the stored value index 0 stands for
        self._transform: ModalityTransform | None = None
        self._values: np.ndarray | None = None
        self._shuttered: np.ndarray | None = None   # True outside the shutter
        self.voi_luts: list[VoiLut] = []
        # A single frame is decoded for this renderer alone and its buffer becomes the index; a frame of
        # a multi-frame file comes from (and stays in) the source's LRU.
        owned = source.number_of_frames == 1
        stored = source.decode_frame(frame) if owned else source.stored_frame(frame)
        if self.shutter is not None:
            self._shuttered = ~shutter_mask(stored.shape[:2], self.shutter)
        if self.is_color:
            self._rgb = np.ascontiguousarray(stored)
            self.value_range = (0.0, 255.0)
            self.file_windows: list[Window] = []
            self.default_window = Window(127.5, 256.0, "LINEAR", "colour")
            return
        transform = source.modality_transform(frame)
        if stored.dtype.kind in "iub" and stored.size:
            smin, smax = int(stored.min()), int(stored.max())
        else:
            smin, smax = 0, MAX_TABLE
        if stored.dtype.kind in "iub" and smax - smin < MAX_TABLE:
            kind = np.uint8 if smax - smin < 256 else np.uint16
            if owned and stored.dtype.itemsize == np.dtype(kind).itemsize and stored.flags.c_contiguous:
                index = stored.view(kind)   # stored - smin in place: same bytes, same positions
            else:
                index = np.empty(stored.shape, dtype=kind)
            np.subtract(stored, smin, out=index, casting="unsafe")
            del stored
            self._index, self._first, self._transform = index, smin, transform
            self._span = smax - smin + 1
            inputs = self._inputs
            vmin, vmax = float(inputs.min()), float(inputs.max())
        else:
            self._values = transform.apply(stored).astype(np.float64)
            self._stored_values = stored
            vmin, vmax = (
                (float(np.nanmin(self._values)), float(np.nanmax(self._values)))
                if stored.size
                else (0.0, 0.0)
            )
        self.value_range = (vmin, vmax)
        self.file_windows = source.windows(frame)
        self.voi_luts = [] if self.file_windows else source.voi_lut_sequence(frame)
        self.default_window = self.file_windows[0] if self.file_windows else full_range_window(vmin, vmax)

    @classmethod
    def of_values(cls, values: np.ndarray, plane, *, unit: str = "", windows: list[Window] | None = None,
                  attributes: dict | None = None, spacing: SpacingInfo | None = None) -> FrameRenderer:
        """A renderer over modality values that come from no file (an MPR plane): the same windowing,
        probe and statistics as a decoded frame's; NaN marks samples outside the volume (shown black)."""
        self = cls.__new__(cls)
        self.source = None
        self.frame, self.number_of_frames = 0, 1
        self.shape = values.shape[:2]
        self.attributes = dict(attributes or {})
        self.plane = plane
        self.patient_orientation = None
        self.spacing = spacing
        self.overlays, self.shutter = [], None
        self.is_color, self.invert = False, False
        self.unit = unit
        self._stored_values = None
        self._rgb = self._index = self._transform = self._shuttered = None
        self._first = 0
        values = np.array(values, dtype=np.float32)   # its own copy: NaNs are filled in below
        outside = ~np.isfinite(values)
        finite = values[~outside]
        self.value_range = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
        self._shuttered = outside if outside.any() else None   # outside the volume: black, as outside a shutter
        if self._shuttered is not None:
            values[outside] = self.value_range[0]              # windowed without NaN; painted black anyway
        self._values = values
        self.voi_luts = []
        self.file_windows = list(windows or [])
        self.default_window = self.file_windows[0] if self.file_windows else full_range_window(*self.value_range)
        return self

    @property
    def _inputs(self) -> np.ndarray:
        """The modality value of each index entry, made for each table (a few microseconds) rather than kept."""
        return self._transform.apply_values(np.arange(self._first, self._first + self._span))

    @property
    def nbytes(self) -> int:
        """Bytes of the arrays this renderer keeps (not its source's: a multi-frame source's LRU is its own)."""
        arrays = [self._rgb, self._index, self._values, self._shuttered] + [lut.data for lut in self.voi_luts]
        arrays += [overlay.bitmap for overlay in self.overlays]
        return sum(a.nbytes for a in arrays if a is not None)

    @property
    def windowed(self) -> bool:
        """True when a window shapes the picture: not for colour, nor for a frame shown through its VOI LUT."""
        return not self.is_color and not self.voi_luts   # voi_luts is empty when the file has windows

    def render(self, window: Window | None = None) -> np.ndarray:
        """uint8 (H, W) grey or (H, W, 3) RGB, C-contiguous; None means the file's default VOI. Pixels
        outside the display shutter take its grey (a P-value, so after any inversion)."""
        out = self._render(window)
        if self._shuttered is not None:
            out[self._shuttered] = self.shutter.grey if self.shutter is not None else 0
        return out

    def render_bits(self, window: Window | None = None, bits: int = 12) -> np.ndarray:
        """A grey frame as `bits`-bit P-values (uint16, 0..2^bits-1), for printers that take 12 bits:
        the same VOI as `render` without its rounding to 8 bits (a VOI LUT Sequence's output is scaled
        from its 8-bit rendering). Colour frames raise ValueError."""
        if self._rgb is not None:
            raise ValueError("a colour image has no grey P-values")
        top = (1 << bits) - 1
        if window is None and self.voi_luts:
            out = (self._apply_lut(self.voi_luts[0]).astype(np.uint32) * top // 255).astype(np.uint16)
        else:
            window = window or self.default_window
            if self._index is not None:
                out = np.take(window_to_bits(self._inputs, window, bits, self.invert), self._index)
            else:
                out = window_to_bits(self._values, window, bits, self.invert)
        if self._shuttered is not None:
            grey = self.shutter.grey if self.shutter is not None else 0
            out[self._shuttered] = grey * top // 255
        return out

    def _render(self, window: Window | None) -> np.ndarray:
        if self._rgb is not None:
            return self._rgb.copy()
        if window is None and self.voi_luts:
            return self._apply_lut(self.voi_luts[0])
        window = window or self.default_window
        if self._index is not None:
            table = window_to_uint8(self._inputs, window, self.invert)
            return np.take(table, self._index)
        return window_to_uint8(self._values, window, self.invert)

    def auto_window(self, low: float = 0.5, high: float = 99.5) -> Window | None:
        """A window over the frame's histogram: from the `low` to the `high` percentile of its modality
        values (outliers and padding left out); None for colour."""
        if self._rgb is not None:
            return None
        if self._index is not None:
            counts = np.bincount(self._index.ravel(), minlength=len(self._inputs))
            cumulative = np.cumsum(counts) / max(1, counts.sum())
            lo = float(self._inputs[int(np.searchsorted(cumulative, low / 100))])
            hi = float(self._inputs[min(len(self._inputs) - 1, int(np.searchsorted(cumulative, high / 100)))])
        else:
            finite = self._values[np.isfinite(self._values)]
            if not finite.size:
                return None
            lo, hi = (float(v) for v in np.percentile(finite, [low, high]))
        width = max(hi - lo, 1.0 if self._index is not None else 1e-6)
        return Window((lo + hi) / 2, width, "LINEAR", "auto")

    def stored_value(self, column: int, row: int):
        """The stored pixel value (colour: the RGB triple) at a pixel; None where no file stored one (MPR)."""
        if self._rgb is not None:
            return tuple(int(v) for v in self._rgb[row, column])
        if self._index is not None:
            return int(self._index[row, column]) + self._first
        if self._stored_values is None:
            return None
        return self._stored_values[row, column].item()

    def modality_value(self, column: int, row: int) -> float | None:
        """The modality value (HU for CT) at a pixel; None for colour."""
        if self._rgb is not None:
            return None
        if self._index is not None:
            return float(self._inputs[self._index[row, column]])
        if self.source is None and self._shuttered is not None and self._shuttered[row, column]:
            return None   # outside the volume an MPR plane has no value
        return float(self._values[row, column])

    def modality_values(self, mask: np.ndarray | None = None) -> np.ndarray:
        """Modality values (float64) of the whole frame, or of the pixels where `mask` is True (flat)."""
        if self._rgb is not None:
            raise ValueError("a colour image has no modality values")
        if self._index is not None:
            index = self._index if mask is None else self._index[mask]
            return self._inputs[index]
        if self.source is None and self._shuttered is not None:   # an MPR plane: only samples inside the volume
            inside = ~self._shuttered if mask is None else mask & ~self._shuttered
            return self._values[inside].astype(np.float64)
        return self._values if mask is None else self._values[mask]

    def _apply_lut(self, lut: VoiLut) -> np.ndarray:
        if self._index is not None:
            table = lut.to_uint8(self._inputs)
            if self.invert:
                table = 255 - table
            return np.take(table, self._index)
        out = lut.to_uint8(self._values)
        return 255 - out if self.invert else out


def modality_unit(value) -> str:
    """The unit of modality values: Rescale Type where it names one (not US, unspecified), HU for CT,
    the PET Units, else "" (MR and most others are in arbitrary units). `value(keyword)` reads the header."""
    rescale_type = str(value("RescaleType") or "").strip().upper()
    if rescale_type and rescale_type != "US":
        return rescale_type
    modality = str(value("Modality") or "").strip().upper()
    if modality == "CT":
        return "HU"
    if modality == "PT":
        return str(value("Units") or "").strip().upper()
    return ""


def render(source: ImageSource, frame: int = 0, window: Window | None = None) -> np.ndarray:
    """The 8-bit display buffer; window None: first file window, else VOI LUT Sequence, else full range."""
    return FrameRenderer(source, frame).render(window)


def thumbnail(source: ImageSource, size: int, frame: int | None = None) -> np.ndarray:
    """A frame (the middle one by default) rendered with its own window, subsampled to about `size`
    pixels a side."""
    frame = max(1, source.number_of_frames) // 2 if frame is None else frame
    buffer = render(source, frame)
    step = max(1, -(-max(buffer.shape[:2]) // size))
    return np.ascontiguousarray(buffer[::step, ::step])
