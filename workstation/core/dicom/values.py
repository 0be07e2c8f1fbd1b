"""Element values of a data set, the plain ones decoded from the raw bytes without pydicom's conversion.

pydicom converts an element on first access at about 9 µs a value, more than parsing the whole
header; printable-ASCII strings, DS/IS numbers and single US values are decoded here instead and
come back as pydicom would give them. Anything else goes through pydicom.
"""

from __future__ import annotations

from functools import cache

from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

_PRINTABLE = bytes(range(0x20, 0x7F))
_NUMBER_VRS = {"DS": float, "IS": int}
_STRING_VRS = frozenset({"AE", "AS", "CS", "DA", "DT", "TM", "UI", "SH", "LO", "PN", "UC"})


@cache
def tag(keyword: str) -> int:
    return tag_for_keyword(keyword)


@cache
def _dictionary_vr(tag: int) -> str | None:
    try:
        return dictionary_VR(tag)
    except KeyError:
        return None


def header_value(ds: Dataset, keyword: str):
    """An element's value (padding stripped, numbers as float/int, a list when multi-valued), or None
    when absent or unreadable."""
    number = tag(keyword)
    elem = ds._dict.get(number)
    if elem is None:
        return None
    if isinstance(elem, RawDataElement) and elem.value is not None:
        raw = elem.value
        vr = elem.VR or _dictionary_vr(number)
        if (vr in _STRING_VRS or vr in _NUMBER_VRS) and not (raw := raw.rstrip(b" \x00")).translate(None, _PRINTABLE):
            items = raw.decode("ascii").split("\\")
            kind = _NUMBER_VRS.get(vr)
            if kind is None:
                return items[0] if len(items) == 1 else items
            try:
                values = [kind(v) for v in items]
            except ValueError:
                pass
            else:
                return values[0] if len(values) == 1 else values
        elif vr == "US" and len(raw) == 2:
            return int.from_bytes(raw, "little" if elem.is_little_endian else "big")
    try:
        return ds[number].value
    except Exception:
        return None


def text(ds: Dataset, keyword: str) -> str:
    """The value as text, "" when absent; multiple values joined with backslashes."""
    value = header_value(ds, keyword)
    if value is None:
        return ""
    if type(value) is str:
        return value.strip()
    if isinstance(value, list | tuple | MultiValue):
        return "\\".join(str(v) for v in value).strip()
    return str(value).strip()


def integer(ds: Dataset, keyword: str) -> int | None:
    """The (first) value as an int, None when absent, empty or not a number."""
    value = header_value(ds, keyword)
    if isinstance(value, list | tuple | MultiValue):
        value = value[0] if value else None
    if value is None or value == "":
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def uid(ds: Dataset, keyword: str) -> str:
    """A UI value without its padding (some writers pad with NUL), "" when absent."""
    return text(ds, keyword).rstrip("\x00 ")


class Values:
    """A read-only Dataset stand-in answering `get` through `header_value` (for the geometry functions)."""

    def __init__(self, ds: Dataset) -> None:
        self._ds = ds

    def get(self, keyword: str, default=None):
        value = header_value(self._ds, keyword)
        return default if value is None else value
