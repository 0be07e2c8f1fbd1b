"""Turn the paths a user hands to import into a flat list of candidate files.

Listing everything first gives the progress bar its total before any file is parsed. Hidden files
and DICOMDIR files are never candidates: a DICOMDIR only points at files, so when one is given
explicitly its references are followed instead. Names found inside archives or DICOMDIRs are only
ever used to read, never to write.
"""

from __future__ import annotations

import os
import threading
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import pydicom

from workstation.core.cache.reports import Rejection


@dataclass(frozen=True)
class Entry:
    label: str
    read: Callable[[], bytes]
    path: str = ""


def _hidden(name: str) -> bool:
    return name.startswith(".") or name == "__MACOSX"


def is_dicomdir_name(name: str) -> bool:
    return name.upper() == "DICOMDIR"


def _file_entry(path: Path) -> Entry:
    return Entry(str(path), path.read_bytes, str(path))


def _zip_entries(path: Path, rejected: list[Rejection]) -> list[Entry]:
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        rejected.append(Rejection(str(path), f"not a readable ZIP archive: {exc}"))
        return []
    lock = threading.Lock()

    def reader(name: str) -> Callable[[], bytes]:
        def read() -> bytes:
            with lock:
                return archive.read(name)

        return read

    entries = []
    for info in archive.infolist():
        parts = info.filename.replace("\\", "/").split("/")
        if info.is_dir() or any(_hidden(p) for p in parts) or is_dicomdir_name(parts[-1]):
            continue
        entries.append(Entry(f"{path}!/{info.filename}", reader(info.filename)))
    return entries


def _resolve_case_insensitive(root: Path, parts: list[str]) -> Path | None:
    """DICOMDIR file IDs are upper case on media that are often read on case-sensitive systems."""
    current = root
    for part in parts:
        candidate = current / part
        if candidate.exists():
            current = candidate
            continue
        try:
            names = {n.casefold(): n for n in os.listdir(current)}
        except OSError:
            return None
        found = names.get(part.casefold())
        if found is None:
            return None
        current = current / found
    return current if current.is_file() else None


def _dicomdir_entries(path: Path, rejected: list[Rejection]) -> list[Entry]:
    try:
        ds = pydicom.dcmread(path, force=True)
        records = ds.DirectoryRecordSequence
    except Exception as exc:
        rejected.append(Rejection(str(path), f"unreadable DICOMDIR: {exc}"))
        return []
    root = path.parent
    seen: set[Path] = set()
    entries = []
    for record in records:
        file_id = record.get("ReferencedFileID")
        if not file_id:
            continue
        parts = [str(file_id)] if isinstance(file_id, str) else [str(p) for p in file_id]
        label = str(root.joinpath(*parts)) if all(parts) else str(path)
        if any(not p or p in (".", "..") or "/" in p or "\\" in p or ":" in p for p in parts):
            rejected.append(Rejection(label, f"DICOMDIR lists an unsafe file ID {'/'.join(parts)!r}"))
            continue
        target = _resolve_case_insensitive(root, parts)
        if target is None:
            rejected.append(Rejection(label, "listed in the DICOMDIR but the file is missing"))
            continue
        if target not in seen:
            seen.add(target)
            entries.append(_file_entry(target))
    return entries


def _walk(folder: Path, rejected: list[Rejection]) -> list[Entry]:
    entries = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not _hidden(d))
        for name in sorted(filenames):
            if _hidden(name) or is_dicomdir_name(name):
                continue
            path = Path(dirpath) / name
            if name.lower().endswith(".zip"):
                entries.extend(_zip_entries(path, rejected))
            else:
                entries.append(_file_entry(path))
    return entries


def collect(paths: Iterable[str | os.PathLike[str]]) -> tuple[list[Entry], list[Rejection]]:
    """All candidate files under `paths` (files, folders, .zip archives, DICOMDIRs) and what was refused on the way."""
    entries: list[Entry] = []
    rejected: list[Rejection] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            entries.extend(_walk(path, rejected))
        elif not path.is_file():
            rejected.append(Rejection(str(path), "no such file or folder"))
        elif is_dicomdir_name(path.name):
            entries.extend(_dicomdir_entries(path, rejected))
        elif path.suffix.lower() == ".zip" or (zipfile.is_zipfile(path) and not _looks_dicom(path)):
            entries.extend(_zip_entries(path, rejected))
        else:
            entries.append(_file_entry(path))
    return entries, rejected


def _looks_dicom(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            fh.seek(128)
            return fh.read(4) == b"DICM"
    except OSError:
        return False
