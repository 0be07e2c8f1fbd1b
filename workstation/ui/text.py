"""How DICOM values read on screen, shared by the browser and the viewer: the core's one reading of
dates, times and names (core/dicom/text.py), which print and export use too."""

from __future__ import annotations

from workstation.core.dicom.text import format_date, format_date_time, format_time, person_name

__all__ = ["format_date", "format_date_time", "format_time", "person_name"]
