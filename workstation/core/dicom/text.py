"""How DICOM values read in words: dates, times and person names, for the screen, print and export."""

from __future__ import annotations


def format_date(value: str) -> str:
    """DICOM DA (YYYYMMDD, or ACR-NEMA's YYYY.MM.DD) as YYYY-MM-DD; anything else as it is."""
    value = (value or "").strip()
    if len(value) == 10 and value[4] == value[7] == "." and (value[:4] + value[5:7] + value[8:]).isdigit():
        value = value[:4] + value[5:7] + value[8:]
    if len(value) == 8 and value.isdigit():
        return f"{value[:4]}-{value[4:6]}-{value[6:]}"
    return value


def format_time(value: str) -> str:
    """DICOM TM (HHMMSS.FFFFFF, or HH:MM:SS) as HH:MM:SS, or HH:MM when seconds are absent."""
    value = (value or "").strip().replace(":", "")
    digits = value.split(".")[0]
    if not digits.isdigit() or len(digits) < 4:
        return value if not digits.isdigit() else ""
    return ":".join(digits[i:i + 2] for i in range(0, min(len(digits), 6), 2))


def person_name(value: str) -> str:
    """A DICOM person name (Family^Given^Middle^Prefix^Suffix, alphabetic group first) as words."""
    alphabetic = (value or "").split("=")[0]
    return " ".join(part for part in alphabetic.replace("^", " ").split())
