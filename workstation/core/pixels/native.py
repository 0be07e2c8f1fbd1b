"""Native (uncompressed, little-endian) pixel bytes as stored values (PS3.5 8.1.1): the one place that
knows the dtype Bits Allocated and Pixel Representation give, and that bits above Bits Stored are not
part of the value (masked when unsigned, the sign extended from bit Bits Stored - 1 when signed).

The frame loader (`ImageSource`), the volume slice reader and the decoded-frame path all go through
these functions, reading straight into a buffer the caller owns where it can.
"""

from __future__ import annotations

import os

import numpy as np

from .errors import PixelDataError


def stored_dtype(bits_allocated: int, pixel_representation: int) -> np.dtype | None:
    """The little-endian integer dtype of one stored sample, None when it takes no whole bytes (1-bit)."""
    if bits_allocated not in (8, 16, 32, 64):
        return None
    return np.dtype(f"<{'i' if pixel_representation == 1 else 'u'}{bits_allocated // 8}")


def keep_stored_bits(values: np.ndarray, bits_stored: int, signed: bool) -> np.ndarray:
    """Only the Bits Stored low bits of each sample, in place (the unused high bits may hold overlays or
    garbage): masked for unsigned samples, sign-extended from bit Bits Stored - 1 for signed ones.
    `values` keeps its dtype; signed and unsigned views of the same bytes are both fine."""
    bits = values.dtype.itemsize * 8
    if values.dtype.kind not in "iu" or bits_stored >= bits:
        return values
    if not values.flags.writeable:
        values = values.copy()
    shift = bits - bits_stored
    if signed:
        view = values.view(values.dtype.str.replace("u", "i"))
        np.left_shift(view, shift, out=view)
        np.right_shift(view, shift, out=view)   # arithmetic: copies the sign bit down
    else:
        view = values.view(values.dtype.str.replace("i", "u"))
        np.bitwise_and(view, view.dtype.type((1 << bits_stored) - 1), out=view)
    return values


def read_native(fd: int, offset: int, out: np.ndarray) -> None:
    """Fill `out` (C-contiguous) with the file's bytes from `offset`; PixelDataError if the file ends first."""
    view = memoryview(out).cast("B")
    got = 0
    while got < len(view):
        n = os.preadv(fd, [view[got:]], offset + got)
        if not n:
            raise PixelDataError("the file ends inside its pixel data")
        got += n


def read_stored(fd: int, offset: int, count: int, bits_allocated: int, bits_stored: int,
                pixel_representation: int, out: np.ndarray | None = None) -> np.ndarray:
    """`count` stored samples read from native little-endian bytes at `offset` of the file, Bits Stored
    applied; into `out` when given (its dtype must be the samples'). 1-bit data is not handled here."""
    dtype = stored_dtype(bits_allocated, pixel_representation)
    if dtype is None:
        raise PixelDataError(f"Bits Allocated {bits_allocated} is not read as whole bytes")
    if out is None:
        out = np.empty(count, dtype=dtype)
    elif out.dtype != dtype or out.size != count:
        raise ValueError(f"buffer of {out.size} {out.dtype} for {count} {dtype}")
    read_native(fd, offset, out)
    return keep_stored_bits(out, bits_stored, pixel_representation == 1)


def as_stored_values(decoded: np.ndarray, bits_stored: int, signed: bool) -> np.ndarray:
    """A decoder's integer samples as stored values: the signedness Pixel Representation gives (a view
    of the same bytes) and only Bits Stored bits, when Bits Stored leaves some of the sample unused."""
    if decoded.dtype.kind not in "iu" or bits_stored >= decoded.dtype.itemsize * 8:
        return decoded
    kind = "i" if signed else "u"
    if decoded.dtype.kind != kind:
        decoded = decoded.view(decoded.dtype.str[:-2] + kind + decoded.dtype.str[-1])
    return keep_stored_bits(decoded, bits_stored, signed)
