"""The file store under `cache/files/`: names from hashes of UIDs, staged copies, atomic placement.

A file is always written under a hidden temporary name in its final folder and renamed into place,
so a crash leaves a stray temporary file or a whole file, never a partial one under a real name.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import itertools
import os
import secrets
import shutil
from pathlib import Path

from workstation.core.cache.parse import Parsed, parse_fd, parse_file, parse_instance
from workstation.core.cache.reports import CacheError, Rejection

_COMPARE_BLOCK = 1 << 20
FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
"""Write errors that mean the cache's disk (or the process's file-size limit) has no room left."""


def uid_hash(uid: str) -> str:
    return hashlib.sha1(uid.encode("ascii")).hexdigest()


def relative_path(study: str, series: str, sop: str) -> str:
    """Where an instance lives under files/: only hashes of UIDs, never header text."""
    st = uid_hash(study)
    return f"{st[:2]}/{st}/{uid_hash(series)}/{uid_hash(sop)}.dcm"


def study_dir(study: str) -> str:
    st = uid_hash(study)
    return f"{st[:2]}/{st}"


def is_temp(name: str) -> bool:
    return name.startswith(".") or name.endswith(".tmp")


_TEMP_PREFIX = secrets.token_hex(4)
_temp_counter = itertools.count()


def temp_name(final: Path) -> Path:
    """A hidden name beside `final`: unique per process without a system call (O_EXCL catches the rest)."""
    return final.parent / f".{final.name}.{_TEMP_PREFIX}.{os.getpid():x}.{next(_temp_counter)}.tmp"


def temp_in_flight(name: str) -> bool:
    """Whether the process that is writing this temporary file is still running (then it is not a leftover)."""
    parts = name.rsplit(".", 3)
    if not name.startswith(".") or len(parts) != 4 or parts[3] != "tmp":
        return False
    try:
        pid = int(parts[1], 16)
    except ValueError:
        return False
    if pid <= 0:
        return False
    if pid == os.getpid():
        return True  # an import of this process may be staging it right now
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        pass  # it exists but belongs to someone else
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] not in (b"Z", b"X")  # a killed child nobody reaped yet
    except (OSError, IndexError):
        return True


def remove_temps_of(files_root: str, study: str, pid: int, keep: set[str] = frozenset()) -> int:
    """Delete what process `pid` left under temporary names in one study's folder (it died while
    writing), but the paths in `keep`; returns how many. Other processes' files are left alone."""
    owner = f"{pid:x}"
    removed = 0
    for dirpath, _dirs, names in os.walk(Path(files_root) / study_dir(study)):
        for name in names:
            parts = name.rsplit(".", 3)
            path = os.path.join(dirpath, name)
            if name.startswith(".") and len(parts) == 4 and parts[3] == "tmp" and parts[1] == owner \
                    and path not in keep:
                with contextlib.suppress(OSError):
                    os.unlink(path)
                    removed += 1
    return removed


def write_temp(final: Path, data: bytes, durable: bool) -> Path:
    """Write `data` under a hidden temporary name beside `final` (same folder, so the rename is atomic)."""
    folder = final.parent
    folder.mkdir(parents=True, exist_ok=True)
    tmp = temp_name(final)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileNotFoundError:  # a repair removed the folder as it emptied it
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        if durable:
            os.fsync(fd)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    os.close(fd)
    return tmp


def kernel_copy(src: int, dst: int, size: int) -> int:
    """Copy `size` bytes between descriptors in the kernel (copy_file_range, else sendfile); returns bytes copied."""
    done = 0
    copy_range = getattr(os, "copy_file_range", None)
    while done < size and copy_range is not None:
        try:
            n = copy_range(src, dst, size - done)
        except OSError:
            if done:
                raise
            break
        if n == 0:
            return done
        done += n
    while done < size:
        try:
            n = os.sendfile(dst, src, done, size - done)
        except OSError:
            if done:
                raise
            os.lseek(src, 0, os.SEEK_SET)
            with open(src, "rb", closefd=False) as fin, open(dst, "wb", closefd=False) as fout:
                shutil.copyfileobj(fin, fout)
            return os.fstat(dst).st_size
        if n == 0:
            break
        done += n
    return done


def parse_files(paths: list[str]) -> list[Parsed | Rejection]:
    """Read the headers of files already in the store (rebuilding the index), as one task of a worker process."""
    found: list[Parsed | Rejection] = []
    for path in paths:
        try:
            found.append(parse_file(Path(path)))
        except CacheError as exc:
            found.append(Rejection(path, str(exc)))
        except OSError as exc:
            found.append(Rejection(path, f"cannot be read: {exc.strerror or exc}"))
    return found


def stage_files(paths: list[str], files_root: str) -> list[Parsed | Rejection]:
    """`stage_file` for a batch, as one task of a worker process."""
    folders: set = set()
    return [stage_file(path, files_root, folders=folders) for path in paths]


def stage_file(path: str, files_root: str, durable: bool = False, folders: set | None = None) -> Parsed | Rejection:
    """Bulk-import step for one file: check its header and stage a temporary copy in its final folder.

    The file is opened once: its header is read from the descriptor and the copy is made by the
    kernel from the same descriptor, never through Python memory. Its size and mtime are compared
    before and after, so the staged copy holds exactly the checked file. `folders` remembers the
    folders already made.
    """
    try:
        src = os.open(path, os.O_RDONLY)
    except OSError as exc:
        return Rejection(path, f"cannot be read: {exc.strerror or exc}")
    try:
        try:
            before = os.fstat(src)
            p = parse_fd(src, before.st_size, path)
        except CacheError as exc:
            return Rejection(path, str(exc))
        except OSError as exc:
            return Rejection(path, f"cannot be read: {exc.strerror or exc}")
        final = Path(files_root) / relative_path(p.study, p.series, p.sop)
        tmp = None
        try:
            if folders is None or final.parent not in folders:
                final.parent.mkdir(parents=True, exist_ok=True)
                if folders is not None:
                    folders.add(final.parent)
            if p.data:
                tmp = write_temp(final, p.data, durable=durable)
            else:
                tmp = temp_name(final)
                try:
                    dst = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
                except FileNotFoundError:
                    final.parent.mkdir(parents=True, exist_ok=True)
                    dst = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
                try:
                    copied = kernel_copy(src, dst, p.size)
                    if durable:
                        os.fsync(dst)
                finally:
                    os.close(dst)
                after = os.fstat(src)
                if (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns) or copied != p.size:
                    os.unlink(tmp)
                    return Rejection(path, "the file changed while it was being imported")
        except OSError as exc:
            if tmp is not None:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
            return Rejection(path, f"cannot be stored: {exc.strerror or exc}", full=exc.errno in FULL_ERRNOS)
    finally:
        os.close(src)
    p.staged = str(tmp)
    p.data = b""
    return p


def stage_bytes(data: bytes, files_root: str, folders: set | None = None, durable: bool = False) -> Parsed:
    """Receive step for one instance held in memory: check its header and write it under a temporary
    name in its final folder; `durable` (a push, whose sender may delete its copy) fsyncs the file,
    a retrieval does not (the node keeps its copy until the batch commits).

    Raises CacheError when the instance is refused, OSError when it cannot be written.
    """
    p = parse_instance(data)
    final = Path(files_root) / relative_path(p.study, p.series, p.sop)
    if folders is None or final.parent not in folders:
        final.parent.mkdir(parents=True, exist_ok=True)
        if folders is not None:
            folders.add(final.parent)
    p.staged = str(write_temp(final, p.data, durable=durable))
    p.data = b""
    return p


def fsync_dir(folder: Path) -> None:
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def same_bytes(data: bytes, stored: Path) -> bool:
    with open(stored, "rb") as f:
        view = memoryview(data)
        for start in range(0, len(view), _COMPARE_BLOCK):
            if f.read(_COMPARE_BLOCK) != view[start : start + _COMPARE_BLOCK]:
                return False
        return not f.read(1)


def same_files(a: Path, b: Path) -> bool:
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            block = fa.read(_COMPARE_BLOCK)
            if block != fb.read(_COMPARE_BLOCK):
                return False
            if not block:
                return True


def place_bytes(final: Path, data: bytes, durable: bool) -> None:
    """Temporary file in the final folder, optional fsync, then an atomic rename."""
    tmp = write_temp(final, data, durable)
    os.replace(tmp, final)
    if durable:
        fsync_dir(final.parent)
