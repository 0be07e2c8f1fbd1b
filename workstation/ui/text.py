"""How DICOM values read on screen, shared by the browser and the viewer.

Every DA and TM value shown goes through `format_date` and `format_time` (the core's one reading
of dates, which also understands the ACR-NEMA forms 1995.05.01 and 15:26:10).
"""

from __future__ import annotations

from workstation.core.dicom.dates import iso_date, iso_time


def format_date(value: str) -> str:
    """A DICOM date (YYYYMMDD, or ACR-NEMA YYYY.MM.DD) as YYYY-MM-DD; anything else as it is."""
    return iso_date(value)


def format_time(value: str) -> str:
    """A DICOM time (HHMMSS.F, or ACR-NEMA HH:MM:SS) as HH:MM; "" when it is not a time."""
    return iso_time(value)


def format_date_time(date: str, time: str) -> str:
    """A date and its time as 2015-02-06 14:05 (the time left out when there is none)."""
    shown = format_date(date)
    clock = format_time(time) if shown else ""
    return f"{shown} {clock}" if clock else shown


def person_name(value: str) -> str:
    """A DICOM person name (Family^Given^...) as words."""
    return value.replace("^", " ").strip()
