"""What every receiving side shares: the C-STORE statuses it answers, the checks before it stages an
instance, and the instance as a file.

The Storage SCP's threads, its receiver processes and the retrieval workers all turn a C-STORE
request into the same Part-10 bytes, refuse the same instances and answer with the same statuses;
the processes stage what they receive the same way. A receiver process stages into a folder of its
own (`StagingFolder`), locked while it lives, so what a killed one left is found and removed at the
next start without touching the files of a receiver still running.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import secrets
import shutil
import sqlite3
from pathlib import Path

from pynetdicom import PYNETDICOM_IMPLEMENTATION_UID, PYNETDICOM_IMPLEMENTATION_VERSION

from workstation.core.cache import CacheError
from workstation.core.cache.files import relative_path, stage_bytes, write_temp
from workstation.core.cache.parse import Parsed, parse_instance
from workstation.core.dicom.header import identity

STATUS_OUT_OF_RESOURCES = 0xA700
"""Refused: out of resources: only for a lack of space, memory or time here; the sender may try again later."""
STATUS_DOES_NOT_MATCH = 0xA900
"""Error: data set does not match SOP class: its SOP Instance or Class UID is missing or not the request's (as DCMTK's storescp)."""
STATUS_CANNOT_UNDERSTAND = 0xC000
"""Error: cannot understand: the data set cannot be read, or is refused by the cache's checks."""
STATUS_CANNOT_STORE = 0xC001
"""Error (C000 range): we failed to store a valid instance for a reason other than resources (permissions,
an I/O error, an index fault); trying again later will not help until it is fixed here."""

_RESOURCE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.ENOMEM, errno.EMFILE, errno.ENFILE})
STAGING = "receiving"
"""The folder beside the cache's files/ where receiver processes stage, one subfolder each."""


def encoded(event) -> bytes:
    """The received instance as a Part-10 file: our file meta in front of the bytes as received.

    The same bytes as pynetdicom's `event.encoded_dataset()`, written directly: building the meta
    through pydicom datasets cost 0.4 ms per instance, a tenth of a worker's time per CT slice.
    """
    request = event.request
    return b"".join((part10_header(str(request.AffectedSOPClassUID), str(request.AffectedSOPInstanceUID),
                                   str(event.context.transfer_syntax)), request.DataSet.getvalue()))


def part10_header(sop_class: str, sop_instance: str, transfer_syntax: str) -> bytes:
    """Preamble, prefix and File Meta Information (explicit VR little endian), as pynetdicom writes them."""
    elements = b"".join((
        _element(0x0001, b"OB", b"\x00\x01"),
        _element(0x0002, b"UI", _uid(sop_class)),
        _element(0x0003, b"UI", _uid(sop_instance)),
        _element(0x0010, b"UI", _uid(transfer_syntax)),
        _element(0x0012, b"UI", _IMPLEMENTATION_UID),
        _element(0x0013, b"SH", _IMPLEMENTATION_VERSION),
    ))
    group_length = b"\x02\x00\x00\x00UL\x04\x00" + len(elements).to_bytes(4, "little")
    return b"".join((_PREAMBLE, group_length, elements))


def _uid(value: str) -> bytes:
    raw = value.encode("ascii")
    return raw + b"\x00" if len(raw) % 2 else raw


def _element(element: int, vr: bytes, value: bytes) -> bytes:
    if vr == b"OB":   # a 4-byte length after two reserved bytes (PS3.5 7.1.2)
        return b"\x02\x00" + element.to_bytes(2, "little") + vr + b"\x00\x00" + len(value).to_bytes(4, "little") + value
    return b"\x02\x00" + element.to_bytes(2, "little") + vr + len(value).to_bytes(2, "little") + value


_PREAMBLE = b"\x00" * 128 + b"DICM"
_IMPLEMENTATION_UID = _uid(str(PYNETDICOM_IMPLEMENTATION_UID))
_IMPLEMENTATION_VERSION = PYNETDICOM_IMPLEMENTATION_VERSION.encode("ascii")
if len(_IMPLEMENTATION_VERSION) % 2:
    _IMPLEMENTATION_VERSION += b" "


def refusal(data: bytes) -> tuple[int, str] | None:
    """Why a received instance must be refused before it is staged, from its first bytes: (status, reason),
    or None. `data` is what `encoded` made: its File Meta holds the request's Affected SOP Class and
    Instance UIDs and the presentation context's transfer syntax."""
    try:
        found = identity(data)
    except ValueError as exc:
        return STATUS_CANNOT_UNDERSTAND, str(exc)
    for keyword, value, requested in (("SOPInstanceUID", found.sop_instance, found.media_sop_instance),
                                      ("SOPClassUID", found.sop_class, found.media_sop_class)):
        if not value:
            return STATUS_DOES_NOT_MATCH, f"the data set has no {keyword}"
        if value != requested:
            return STATUS_DOES_NOT_MATCH, f"the data set's {keyword} {value} is not the request's {requested}"
    return None


def failure_status(exc: BaseException) -> int:
    """The C-STORE status a failure to store deserves: Out of Resources only when it is about resources."""
    if isinstance(exc, CacheError):
        return STATUS_CANNOT_UNDERSTAND
    if isinstance(exc, OSError) and exc.errno in _RESOURCE_ERRNOS:
        return STATUS_OUT_OF_RESOURCES
    if isinstance(exc, sqlite3.OperationalError) and ("full" in str(exc) or "locked" in str(exc)):
        return STATUS_OUT_OF_RESOURCES
    return STATUS_CANNOT_STORE


def stage(data: bytes, files_root: str, folders: set, durable: bool = False,
          into: Path | None = None) -> tuple[Parsed | None, int, str]:
    """`files.stage_bytes` for a receiving process: (the staged instance, 0) or (None, the status its
    refusal deserves, the reason). The file goes under a temporary name into its final folder, or into
    `into` (a receiver's staging folder). Out of Resources tells the caller to stop accepting for a while."""
    try:
        if into is None:
            return stage_bytes(data, files_root, folders, durable=durable), 0x0000, ""
        parsed = parse_instance(data)
        final = Path(files_root) / relative_path(parsed.study, parsed.series, parsed.sop)
        if final.parent not in folders:   # the commit renames into it
            final.parent.mkdir(parents=True, exist_ok=True)
            folders.add(final.parent)
        parsed.staged, parsed.data = str(write_temp(into / final.name, parsed.data, durable=durable)), b""
        return parsed, 0x0000, ""
    except CacheError as exc:
        return None, STATUS_CANNOT_UNDERSTAND, str(exc)
    except OSError as exc:
        return None, failure_status(exc), f"cannot be stored: {exc.strerror or exc}"


class StagingFolder:
    """A receiver process's own folder for instances it staged and the workstation has yet to commit.

    It is locked (flock) for as long as the process lives; the kernel releases the lock when the
    process dies, however it dies, and `remove_abandoned` then removes the folder.
    """

    def __init__(self, files_root: str) -> None:
        base = Path(files_root).parent / STAGING
        base.mkdir(parents=True, exist_ok=True)
        while True:
            name = f"{os.getpid()}-{secrets.token_hex(4)}"
            self._lock = os.open(base / f"{name}.lock", os.O_RDWR | os.O_CREAT, 0o644)
            fcntl.flock(self._lock, fcntl.LOCK_EX)
            with contextlib.suppress(OSError):
                if os.stat(base / f"{name}.lock").st_ino == os.fstat(self._lock).st_ino:
                    break   # a cleaner that took the new lock in between has unlinked it: take another
            os.close(self._lock)
        self.path = base / name
        self.path.mkdir()


def remove_abandoned(files_root: str) -> int:
    """Remove the staging folders of receiver processes that are gone (their lock is free); returns how
    many files they held. The folders of live receivers, this workstation's or another's, are kept."""
    base = Path(files_root).parent / STAGING
    removed = 0
    try:
        locks = [entry for entry in os.scandir(base) if entry.name.endswith(".lock")]
    except FileNotFoundError:
        return 0
    for entry in locks:
        try:
            fd = os.open(entry.path, os.O_RDWR)
        except OSError:
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                continue   # its receiver is alive
            folder = base / entry.name[: -len(".lock")]
            with contextlib.suppress(OSError):
                removed += len(os.listdir(folder))
            shutil.rmtree(folder, ignore_errors=True)
            with contextlib.suppress(OSError):
                os.unlink(entry.path)
        finally:
            os.close(fd)
    return removed
