"""How DICOM values read in words for the screen, print and export: dates and times (through
core/dicom/dates.py, the one reading of them) and person names."""

from __future__ import annotations

from workstation.core.dicom.dates import iso_date, iso_time


def format_date(value: str) -> str:
    """A DICOM date (YYYYMMDD, or ACR-NEMA YYYY.MM.DD) as YYYY-MM-DD; anything else as it is."""
    return iso_date(value or "")


def format_time(value: str) -> str:
    """A DICOM time (HHMMSS.F, or ACR-NEMA HH:MM:SS) as HH:MM; "" when it is not a time."""
    return iso_time(value or "")


def format_date_time(date: str, time: str) -> str:
    """A date and its time as 2015-02-06 14:05 (the time left out when there is none)."""
    shown = format_date(date)
    clock = format_time(time) if shown else ""
    return f"{shown} {clock}" if clock else shown


def person_name(value: str) -> str:
    """A DICOM person name (Family^Given^Middle^Prefix^Suffix, its alphabetic group) as words."""
    alphabetic = (value or "").split("=")[0]
    return " ".join(alphabetic.replace("^", " ").split())
