"""Deflated Explicit VR Little Endian data sets (PS3.5 A.5), inflated with a bound.

A few kilobytes of deflate can declare gigabytes (a 1 MB file inflated to one 1 GiB element took a
receiver to 2.1 GB), and pydicom inflates whatever it is given in one call. Everything that reads a
deflated data set, receiving and import alike, goes through `inflate`: it inflates in chunks, stops
at `inflate_limit` of the deflated size, and refuses at once an element that declares more.
"""

from __future__ import annotations

import io
import zlib

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filereader import read_dataset
from pydicom.uid import DeflatedExplicitVRLittleEndian

INFLATE_FLOOR = 64 << 20
"""Any deflated data set may inflate to this: real ones reach 60 times their size (pydicom's
image_dfl.dcm, 4.3 KB to 263 KB), and a few tens of MB held for a moment harm nothing."""
INFLATE_RATIO = 64
"""Past the floor, at most this many times the deflated size: data a real instance would carry
(pixels, text, waveforms) does not deflate much better, while a crafted one reaches 1000."""
INFLATE_CEILING = 1 << 30
"""Never more, whatever the size: the inflated data set is held whole in memory to be parsed, and no
real instance is sent deflated at that size (deflate is for the small non-image objects)."""
_CHUNK = 1 << 20
_LONG_VRS = frozenset({b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"})
_SHORT_VRS = frozenset({b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FD", b"FL", b"IS", b"LO", b"LT",
                        b"PN", b"SH", b"SL", b"SS", b"ST", b"TM", b"UI", b"UL", b"US"})
VRS = _LONG_VRS | _SHORT_VRS
"""Every VR as Explicit VR encodings write it."""
_UNDEFINED = 0xFFFFFFFF


class InflateError(ValueError):
    """A deflated data set refused, with the reason in words: it would inflate past the bound, or is not deflate."""


def inflate_limit(deflated_size: int) -> int:
    """The most bytes a deflated data set of `deflated_size` bytes may inflate to."""
    return min(INFLATE_CEILING, max(INFLATE_FLOOR, INFLATE_RATIO * deflated_size))


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def _walk(data: bytearray, pos: int | None, limit: int) -> int | None:
    """Step over the complete element headers from `pos`, checking each declared length against `limit`.

    Sequences and items are stepped into, so nested elements are checked too; the walk ends (None) at
    the first undefined length of a value (encapsulated pixel data, an UN sequence) or an unknown VR,
    where only the total bound still applies.
    """
    while pos is not None and pos + 8 <= len(data):
        group = int.from_bytes(data[pos:pos + 2], "little")
        if group == 0xFFFE:   # an item or a delimiter: its contents, if any, are elements
            pos += 8
            continue
        vr = bytes(data[pos + 4:pos + 6])
        if vr in _SHORT_VRS:
            header, length = 8, int.from_bytes(data[pos + 6:pos + 8], "little")
        elif vr in _LONG_VRS:
            if pos + 12 > len(data):
                return pos
            header, length = 12, int.from_bytes(data[pos + 8:pos + 12], "little")
            if vr == b"SQ":
                pos += header
                continue
            if length == _UNDEFINED:
                return None
        else:
            return None
        if pos + header + length > limit:
            element = f"({group:04X},{int.from_bytes(data[pos + 2:pos + 4], 'little'):04X})"
            raise InflateError(f"element {element} of the deflated data set declares {length} bytes: it would end past "
                               f"the {_mb(limit)} the data set may inflate to")
        pos += header + length
    return pos


def inflate(deflated: bytes | memoryview, limit: int | None = None, head: int | None = None) -> bytes:
    """The data set a raw deflate stream holds, inflated in chunks; with `head`, only its first `head` bytes.

    Raises InflateError in words once it would pass `limit` (default: `inflate_limit` of its size) or
    an element declares more, or when the stream is not deflate or ends early.
    """
    limit = inflate_limit(len(deflated)) if limit is None else limit
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    out = bytearray()
    walked: int | None = 0
    pending = deflated
    try:
        while True:
            chunk = inflater.decompress(pending, _CHUNK)
            pending = inflater.unconsumed_tail
            out += chunk
            if len(out) > limit:
                raise InflateError(f"the deflated data set ({_mb(len(deflated))}) inflates past {_mb(limit)}, "
                                   "more than a real instance of its size could")
            walked = _walk(out, walked, limit)
            if head is not None and len(out) >= head:
                return bytes(out[:head])
            if inflater.eof or not (chunk or pending):
                break
    except zlib.error as exc:
        raise InflateError(f"the deflated data set cannot be inflated: {exc}") from None
    if not inflater.eof and head is None:
        raise InflateError("truncated: the deflated data set ends before its deflate stream does")
    return bytes(out)


def deflated_meta(data: bytes) -> tuple[Dataset, int] | None:
    """(File Meta, where the data set starts) of a file, with or without preamble, whose File Meta says
    it is deflated; None for any other file."""
    start = 132 if data[128:132] == b"DICM" else 0
    if int.from_bytes(data[start:start + 2], "little") != 0x0002:
        return None
    fp = io.BytesIO(data)
    fp.seek(start)
    try:
        meta = read_dataset(fp, False, True, stop_when=lambda tag, vr, length: tag.group != 2)
    except Exception:
        return None
    if str(meta.get("TransferSyntaxUID", "")).rstrip("\x00 ") != DeflatedExplicitVRLittleEndian:
        return None
    return meta, fp.tell()


def read_deflated(data: bytes, defer_size: int) -> Dataset | None:
    """A file whose File Meta says Deflated Explicit VR Little Endian, read as pydicom's dcmread would
    but inflated with the bound; None for any other file. Values longer than `defer_size` are left
    unread. Raises InflateError, or pydicom's errors for a data set it cannot read."""
    found = deflated_meta(data)
    if found is None:
        return None
    meta, start = found
    ds = read_dataset(io.BytesIO(inflate(memoryview(data)[start:])), False, True, defer_size=defer_size)
    ds.file_meta = FileMetaDataset(meta)
    ds.set_original_encoding(False, True, ds._character_set)
    return ds
