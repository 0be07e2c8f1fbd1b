"""The workstation's log: one file under HOME/logs for the window and the command line alike.

Libraries log at their own levels; pynetdicom's warnings and errors (a rejected association, an
exception in one of our handlers) are kept, its per-association chatter is not, unless --debug.
"""

from __future__ import annotations

import logging
from pathlib import Path

LOG_FILE = "workstation.log"


class _QuietFileHandler(logging.FileHandler):
    """A log that cannot be written (the disk is full) must not print a traceback over the user's answer."""

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 (logging's name)
        pass


def setup_logging(home: Path, debug: bool = False) -> Path:
    """Send every log record to HOME/logs/workstation.log (and stderr too with `debug`); returns the file."""
    folder = Path(home) / "logs"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOG_FILE
    handlers: list[logging.Handler] = [_QuietFileHandler(path, encoding="utf-8")]
    if debug:
        handlers.append(logging.StreamHandler())
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.INFO,
        format="%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s",
        handlers=handlers,
        force=True,
    )
    logging.getLogger("pynetdicom").setLevel(logging.DEBUG if debug else logging.WARNING)
    logging.getLogger("pydicom").setLevel(logging.DEBUG if debug else logging.ERROR)
    return path
