"""The workstation's log: one file under HOME/logs for the window, the command line and their children.

Libraries log at their own levels; pynetdicom's warnings and errors (a rejected association, an
exception in one of our handlers) are kept, its per-association chatter is not, unless --debug.
A child process (receiver, retrieval worker) logs into the same file: `child_config` is what the
parent hands it and `setup_child` what it calls first, so nothing it meets reaches the terminal as a
traceback (a fork server's children inherit no logging at all).
"""

from __future__ import annotations

import logging
from pathlib import Path

LOG_FILE = "workstation.log"

_configured: tuple[str, bool] | None = None
"""(home, debug) of the last `setup_logging` in this process, for its children."""


class _QuietFileHandler(logging.FileHandler):
    """A log that cannot be written (the disk is full) must not print a traceback over the user's answer."""

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 (logging's name)
        pass


def setup_logging(home: Path, debug: bool = False) -> Path:
    """Send every log record to HOME/logs/workstation.log (and stderr too with `debug`); returns the file."""
    global _configured
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
    _configured = (str(home), debug)
    return path


def child_config() -> tuple[str, bool] | None:
    """What a child process needs to log where this one does: pass it to the child's `setup_child`."""
    return _configured


def setup_child(config: tuple[str, bool] | None) -> None:
    """In a child process: log as the parent does (`child_config`), library warnings and the uncaught
    exceptions of threads into the log too, so that stderr stays for the parent's one-line messages."""
    import threading

    if config is not None:
        setup_logging(Path(config[0]), config[1])
    logging.captureWarnings(True)
    log = logging.getLogger("workstation.child")
    threading.excepthook = lambda args: log.error(
        "thread %s failed", getattr(args.thread, "name", "?"), exc_info=(args.exc_type, args.exc_value, args.exc_traceback))
