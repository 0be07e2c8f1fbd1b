"""A file's header without its pixel data, and where its native pixel bytes sit.

Native little-endian Pixel Data normally ends the file. When it does, the header needs parsing only
up to the Image Pixel module (group 0028): the Pixel Data element is then checked byte for byte
where the image's size says it must sit, just before the end, and the private groups between
(often most of a CT header) are never parsed. `read_to_pixel_module` is that fast path; a file it
does not fit is read whole by the caller, with pixel data deferred, and `native_pixel_location`
finds the same offset in it.
"""

from __future__ import annotations

import io
import os
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

from pydicom import config
from pydicom.charset import convert_encodings, default_encoding
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import DataElement, RawDataElement, convert_raw_data_element, empty_value_for_VR
from pydicom.dataset import Dataset
from pydicom.filereader import read_dataset, read_sequence
from pydicom.tag import BaseTag
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pydicom.values import convert_string

from workstation.core.dicom.deflated import VRS, inflate
from workstation.core.dicom.frames import native_size, padded
from workstation.core.dicom.values import integer, text

PREFIX = 64 * 1024
"""Bytes read at first: every header but those with big private groups or embedded icons fits."""
DEFER = 1024
"""Values longer than this are left unread (their offset is kept) by a header read."""
PIXEL_DATA = 0x7FE00010
LAST_HEADER_GROUP = 0x0028
_PIXEL_TAG_LE = b"\xe0\x7f\x10\x00"
_FUNCTIONAL_GROUPS_LE = re.compile(rb"\x52[\x29\x30]\x92")
"""(5200,9229) and (5200,9230) as stored (the group's low byte 00 before the match): where enhanced
objects keep the geometry of their frames."""
_OVERLAYS_LE = re.compile(rb"\x60(?:\x10\x00|\x00\x30)")
"""(60xx,0010) Overlay Rows and (60xx,3000) Overlay Data as stored (the group's low byte, even and at
most 1E, before the match): an overlay plane, in Overlay Data or in the unused bits of Pixel Data, is
read from the whole header."""
_MAX_SKIPPED = 1 << 20
_NATIVE_LE = frozenset({str(ExplicitVRLittleEndian), str(ImplicitVRLittleEndian)})

Read = Callable[[int, int], bytes]
"""read(offset, count): bytes of the file (os.pread on its descriptor)."""


@dataclass
class Header:
    """A file's File Meta and data set, read without pixel data; a native Pixel Data element (when the
    file has one) is a RawDataElement whose `value_tell` is its value's offset in the file."""

    dataset: Dataset
    meta: Dataset
    transfer_syntax: str
    mentioned: frozenset[int] = frozenset()
    """Those of the `watch` tags whose bytes occur in the part of the header left unparsed (at the top
    level or nested, or by chance in a value): a tag not in it is certainly absent."""


@lru_cache(maxsize=64)
def syntax(transfer_syntax: str) -> UID:
    """Transfer syntaxes are few: each UID object (and its validation) is made once."""
    return UID(transfer_syntax)


def reader(fd: int) -> Read:
    return lambda offset, count: os.pread(fd, count, offset)


def read_file_meta(head: bytes) -> tuple[io.BytesIO, Dataset, str] | None:
    """(stream positioned after the File Meta, the File Meta, its transfer syntax), or None without a
    preamble or with a File Meta that cannot be read."""
    if head[128:132] != b"DICM":
        return None
    fp = io.BytesIO(head)
    fp.seek(132)
    try:
        meta = read_dataset(fp, False, True, stop_when=lambda tag, vr, length: tag.group != 2)
    except Exception:
        return None
    return fp, meta, text(meta, "TransferSyntaxUID").rstrip("\x00 ")


@dataclass
class Identity:
    """What a received Part-10 file says of itself: in its File Meta (the C-STORE request's Affected SOP
    Class and Instance UIDs and the context's transfer syntax) and at the start of its data set."""

    transfer_syntax: str
    media_sop_class: str
    media_sop_instance: str
    sop_class: str
    sop_instance: str


_LONG_HEADER_VRS = frozenset({b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"})


def _scan(buf, pos: int, implicit: bool, little: bool, last: int, first: int = 0) -> tuple[dict[int, bytes], int]:
    """The raw values of the elements from `pos` while their tags lie in [first, last], and where the scan
    stopped; it stops early at an undefined length (nothing it looks for comes after one)."""
    order = "little" if little else "big"
    values: dict[int, bytes] = {}
    while pos + 8 <= len(buf):
        tag = int.from_bytes(buf[pos:pos + 2], order) << 16 | int.from_bytes(buf[pos + 2:pos + 4], order)
        if not first <= tag <= last:
            break
        if implicit:
            header, length = 8, int.from_bytes(buf[pos + 4:pos + 8], order)
        elif bytes(buf[pos + 4:pos + 6]) in _LONG_HEADER_VRS:
            header, length = 12, int.from_bytes(buf[pos + 8:pos + 12], order)
        else:
            header, length = 8, int.from_bytes(buf[pos + 6:pos + 8], order)
        if length == 0xFFFFFFFF:
            break
        values[tag] = bytes(buf[pos + header:pos + header + length])
        pos += header + length
    return values, pos


def _text(values: dict[int, bytes], tag: int) -> str:
    return values.get(tag, b"").decode("ascii", "replace").rstrip("\x00 ")


def identity(data: bytes) -> Identity:
    """The identity of a Part-10 file as a receiver made it (preamble, File Meta, data set), read from its
    first bytes without pydicom (a few microseconds).

    Raises ValueError in words when the data set is not in the encoding its transfer syntax says:
    such a file could be stored, but nothing that trusts its File Meta could read it back.
    """
    if data[128:132] != b"DICM":
        raise ValueError("not a Part-10 file")
    meta, start = _scan(data, 132, False, True, 0x0002FFFF, 0x00020000)
    ts = _text(meta, 0x00020010)
    body = memoryview(data)[start:]
    if ts == DeflatedExplicitVRLittleEndian:
        body = memoryview(inflate(body, head=PREFIX))
    try:
        uid = syntax(ts)
        implicit, little = uid.is_implicit_VR, uid.is_little_endian
    except ValueError:
        raise ValueError(f"unknown transfer syntax {ts!r}") from None
    if len(body) < 8:
        raise ValueError("the data set is empty")
    explicit = bytes(body[4:6]) in VRS
    if implicit == explicit:
        found = "Explicit VR" if explicit else "Implicit VR (or is not DICOM)"
        raise ValueError(f"the data set is encoded in {found} but its transfer syntax is {uid.name}")
    head, _ = _scan(body, 0, implicit, little, 0x00080018)
    return Identity(ts, _text(meta, 0x00020002), _text(meta, 0x00020003), _text(head, 0x00080016),
                    _text(head, 0x00080018))


def _after_header_groups(tag, vr, length) -> bool:
    return tag.group > LAST_HEADER_GROUP


_SHORT_HEADER_VRS = frozenset({b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FD", b"FL", b"IS", b"LO", b"LT",
                               b"PN", b"SH", b"SL", b"SS", b"ST", b"TM", b"UI", b"UL", b"US"})
_VR_NAMES = {vr: vr.decode() for vr in _SHORT_HEADER_VRS | _LONG_HEADER_VRS}
_EMPTY = {vr: empty_value_for_VR(name, raw=True) for vr, name in _VR_NAMES.items()}


def _header_groups(head: bytes, pos: int, implicit: bool) -> tuple[Dataset, int] | None:
    """The little-endian data set from `pos` up to group 0028 and where it stopped: the same Dataset of
    RawDataElements as pydicom's read_dataset (stopping there, values over DEFER deferred) makes of
    the same bytes, about four times as fast. None at anything but defined lengths and known VRs, or
    an encoding other than the transfer syntax says (pydicom's read_dataset then reads it);
    undefined-length sequences are read by pydicom's read_sequence, as read_dataset would."""
    n = len(head)
    if pos + 8 > n or (0x40 < head[pos + 4] < 0x5B and 0x40 < head[pos + 5] < 0x5B) == implicit:
        return None
    unpack = struct.unpack_from
    empty_implicit = empty_value_for_VR(None, raw=True)
    encoding: str | list[str] = default_encoding
    elements: dict[BaseTag, RawDataElement] = {}
    while True:
        if pos + 8 > n:
            return None
        group, element, length = unpack("<HHL", head, pos)
        if group > LAST_HEADER_GROUP:
            break
        if implicit:
            vr, start, empty = None, pos + 8, empty_implicit
        else:
            code = head[pos + 4:pos + 6]
            vr = _VR_NAMES.get(code)
            if vr is None:
                return None
            if code in _LONG_HEADER_VRS:
                if pos + 12 > n:
                    return None
                start, length = pos + 12, unpack("<L", head, pos + 8)[0]
            else:
                start, length = pos + 8, length >> 16
            empty = _EMPTY[code]
        tag = BaseTag(group << 16 | element)
        if length == 0xFFFFFFFF:
            # An undefined-length sequence is read by pydicom's read_sequence, as its generator does.
            if vr == "UN" and config.settings.infer_sq_for_un_vr:
                vr = "SQ"
            if vr != "SQ" and not (implicit and _dictionary_vr(tag) == "SQ"):
                return None
            fp = io.BytesIO(head)
            fp.seek(start)
            try:
                sequence = read_sequence(fp, implicit, True, length, encoding)
            except Exception:
                return None
            elements[tag] = DataElement(tag, "SQ", sequence, start, is_undefined_length=True)
            pos = fp.tell()
            if pos > n:
                return None
            continue
        end = start + length
        if end > n or group == 0xFFFE:
            return None
        if length > DEFER and tag != 0x00080005:
            value = None
        else:
            value = head[start:end] if length else empty
            if tag == 0x00080005:
                encoding = convert_encodings(convert_string(value or b"", True))
        elements[tag] = RawDataElement(tag, vr, length, value, start, implicit, True)
        pos = end
    ds = Dataset(elements, parent_encoding=default_encoding)
    charset = elements.get(BaseTag(0x00080005))
    encoding = convert_encodings(convert_raw_data_element(charset).value) if charset is not None else default_encoding
    ds.set_original_encoding(implicit, True, encoding)
    return ds, pos


def _dictionary_vr(tag: int) -> str | None:
    try:
        return dictionary_VR(tag)
    except KeyError:
        return None


def read_to_pixel_module(read: Read, head: bytes, size: int, watch: tuple[int, ...] = ()) -> Header | None:
    """The fast path: File Meta and data set up to group 0028 from `head` (the file's first bytes), then
    native little-endian Pixel Data verified to end the file (of `size` bytes).

    None unless all of that holds and neither functional groups (enhanced objects keep their frames'
    geometry there) nor overlay planes sit in the skipped part: the caller then reads the whole header.
    `watch` names tags beyond group 0028 the caller may need; `Header.mentioned` says which may be there.
    """
    opened = read_file_meta(head)
    if opened is None:
        return None
    fp, meta, ts = opened
    if ts not in _NATIVE_LE:
        return None
    implicit = ts == ImplicitVRLittleEndian
    scanned = _header_groups(head, fp.tell(), implicit)
    if scanned is not None:
        ds, stop = scanned
    else:
        try:
            ds = read_dataset(fp, implicit, True, defer_size=DEFER, stop_when=_after_header_groups)
        except Exception:
            return None
        stop = fp.tell()
    if stop + 8 > len(head) or int.from_bytes(head[stop:stop + 2], "little") <= LAST_HEADER_GROUP:
        return None   # the header ended (no pixel data) or the prefix was too short to tell
    rows, columns, bits = integer(ds, "Rows"), integer(ds, "Columns"), integer(ds, "BitsAllocated")
    if rows is None or columns is None or bits is None:
        return None
    frames = max(1, integer(ds, "NumberOfFrames") or 1)
    length = padded(native_size(rows, columns, integer(ds, "SamplesPerPixel") or 1, bits, frames,
                                text(ds, "PhotometricInterpretation")))
    found = pixel_element_at_end(read, head, stop, size, length, implicit, watch)
    if found is None:
        return None
    ds._dict[PIXEL_DATA], mentioned = found
    return Header(ds, meta, ts, mentioned)


def pixel_element_at_end(read: Read, head: bytes, stop: int, size: int, length: int, implicit: bool,
                         watch: tuple[int, ...] = ()) -> tuple[RawDataElement, frozenset[int]] | None:
    """The Pixel Data element of `length` bytes ending the file, checked byte for byte, and which of the
    `watch` tags occur before it; None without it.

    Everything from `stop` (where the partial parse ended) to that element is looked through for the
    tags of functional groups and overlay planes (None when one is there) and of `watch`.
    """
    header = 8 if implicit else 12
    start = size - length - header
    if start < stop or start - stop > _MAX_SKIPPED:
        return None
    end = start + header
    skipped = head[stop:end] if end <= len(head) else head[stop:] + read(len(head), end - len(head))
    element = skipped[start - stop:]
    if element[:4] != _PIXEL_TAG_LE:
        return None
    if implicit:
        vr, found = None, element[4:8]
    elif element[4:6] in (b"OB", b"OW") and element[6:8] == b"\x00\x00":
        vr, found = element[4:6].decode(), element[8:12]
    else:
        return None
    if int.from_bytes(found, "little") != length or _declined(skipped):
        return None
    mentioned = frozenset(tag for tag in watch if _stored_tag(tag) in skipped)
    return RawDataElement(BaseTag(PIXEL_DATA), vr, length, None, end, implicit, True), mentioned


def _declined(skipped: bytes) -> bool:
    """Whether the tag of a functional group or of an overlay plane occurs in `skipped` (a regular
    expression starting with a rarer byte than the groups' low ones scans fastest)."""
    if any(skipped[m.start() - 1] == 0 for m in _FUNCTIONAL_GROUPS_LE.finditer(skipped, 1)):
        return True
    return any(skipped[m.start() - 1] <= 0x1E and not skipped[m.start() - 1] & 1
               for m in _OVERLAYS_LE.finditer(skipped, 1))


def _stored_tag(tag: int) -> bytes:
    """A tag as little-endian data sets store it: group, then element, each little-endian."""
    return (tag >> 16).to_bytes(2, "little") + (tag & 0xFFFF).to_bytes(2, "little")


def native_pixel_location(ds: Dataset, transfer_syntax: str) -> tuple[int | None, int]:
    """(offset of the value, its length) of native little-endian Pixel Data in the file `ds` was read
    from with pixel data deferred; (None, 0) when it is compressed, big endian, deflated or absent."""
    raw = ds._dict.get(PIXEL_DATA)
    if raw is None or not transfer_syntax or transfer_syntax == DeflatedExplicitVRLittleEndian:
        return None, 0
    uid = syntax(transfer_syntax)
    tell, length = getattr(raw, "value_tell", None), getattr(raw, "length", None)
    if uid.is_compressed or not uid.is_little_endian or tell is None or length in (None, 0xFFFFFFFF):
        return None, 0
    return tell, length


def pixel_element_precedes(read: Read, offset: int, length: int) -> bool:
    """Whether a Pixel Data element of `length` bytes has its value at `offset`: a cheap check that a
    file was not replaced since its offset was recorded."""
    start = max(0, offset - 12)
    head = read(start, offset - start)
    if len(head) < 8 or int.from_bytes(head[-4:], "little") != length:
        return False
    return head[-8:-4] == _PIXEL_TAG_LE or (len(head) == 12 and head[:4] == _PIXEL_TAG_LE and head[4:6] in (b"OB", b"OW"))
