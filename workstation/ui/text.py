"""How DICOM values read on screen, shared by the browser and the viewer."""

from __future__ import annotations


def format_date(value: str) -> str:
    """DICOM YYYYMMDD as YYYY-MM-DD; anything else as it is."""
    if len(value) == 8 and value.isdigit():
        return f"{value[:4]}-{value[4:6]}-{value[6:]}"
    return value


def person_name(value: str) -> str:
    """A DICOM person name (Family^Given^...) as words."""
    return value.replace("^", " ").strip()
