"""DICOM dates (DA) and times (TM): read in every form files carry, written one way for the index and one for people.

DICOM writes a date YYYYMMDD and a time HHMMSS.FFFFFF; ACR-NEMA 2.0 files, still found in old
archives, wrote YYYY.MM.DD and HH:MM:SS. The cache index keeps the DICOM form, so that a date
range compares as strings and sorts; people read ISO 8601 (2015-02-06, 14:05), whatever the file wrote.
"""

from __future__ import annotations

import datetime
import re

_DATE = re.compile(r"(\d{4})[-./]?(\d{2})[-./]?(\d{2})")
_TIME = re.compile(r"(\d{2})(?::?(\d{2})(?::?(\d{2})(\.\d{1,6})?)?)?")


def parse_date(value: str) -> str | None:
    """YYYYMMDD for a real calendar date written YYYYMMDD, YYYY-MM-DD, YYYY.MM.DD or YYYY/MM/DD; None otherwise."""
    m = _DATE.fullmatch(value.strip())
    if m is None:
        return None
    try:
        datetime.date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
    except ValueError:
        return None
    return "".join(m.groups())


def parse_time(value: str) -> str | None:
    """HH[MM[SS[.F]]] for a time written the DICOM way or with colons (HH:MM:SS); None otherwise."""
    m = _TIME.fullmatch(value.strip())
    if m is None:
        return None
    hours, minutes, seconds, fraction = m.groups()
    if int(hours) > 23 or minutes and int(minutes) > 59 or seconds and int(seconds) > 60:
        return None
    return hours + (minutes or "") + (seconds or "") + (fraction or "")


def dicom_date(value: str) -> str:
    """A DA value as the index keeps it: YYYYMMDD when it is a date in any form, else as it was (stripped)."""
    return parse_date(value) or value.strip()


def dicom_time(value: str) -> str:
    """A TM value as the index keeps it: HHMMSS.F when it is a time in any form, else as it was (stripped)."""
    return parse_time(value) or value.strip()


def iso_date(value: str) -> str:
    """A DA value as people read it, YYYY-MM-DD; what is not a date is shown as it is."""
    date = parse_date(value)
    return f"{date[:4]}-{date[4:6]}-{date[6:]}" if date else value.strip()


def iso_time(value: str, seconds: bool = False) -> str:
    """A TM value as people read it, HH:MM (or HH:MM:SS); "" when it is not a time."""
    time = parse_time(value)
    if not time:
        return ""
    parts = [time[:2], time[2:4] or "00"] + ([time[4:6] or "00"] if seconds else [])
    return ":".join(parts)
