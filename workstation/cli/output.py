"""How verbs talk to the user: JSON on stdout, one-line errors and warnings on stderr."""

from __future__ import annotations

import json
import sys

from workstation.core.dicom.dates import iso_date, iso_time

EXIT_OK = 0
EXIT_PARTIAL = 1
EXIT_USAGE = 2


class CommandError(Exception):
    """A job that could not run: printed as `error: <message>`, exit status 2."""


def print_json(document) -> None:
    json.dump(document, sys.stdout, indent=2, ensure_ascii=False, default=str)
    sys.stdout.write("\n")


def error(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)


def warning(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


DATE_COLUMNS = frozenset({"PatientBirthDate", "StudyDate", "SeriesDate"})
TIME_COLUMNS = frozenset({"StudyTime", "SeriesTime"})


def print_table(rows: list[dict], columns: list[str]) -> None:
    """A plain aligned table for people (dates and times as 2015-02-06 and 14:05); scripts use --json."""
    if not rows:
        print("(nothing found)")
        return
    cells = [[_cell(r.get(c), c) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    widths = [min(w, 48) for w in widths]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))
    for row in cells:
        print("  ".join(v[:w].ljust(w) for v, w in zip(row, widths, strict=True)))


def _cell(value, column: str = "") -> str:
    if value is None:
        return ""
    if column in DATE_COLUMNS:
        return iso_date(str(value))
    if column in TIME_COLUMNS:
        return iso_time(str(value)) or str(value)
    if isinstance(value, list | tuple):
        return "\\".join(str(v) for v in value)
    return str(value)
