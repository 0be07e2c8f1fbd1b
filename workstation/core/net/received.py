"""What every receiving side shares: the C-STORE statuses it answers and the instance as a file.

The Storage SCP's threads, its receiver processes and the retrieval workers all turn a C-STORE
request into the same Part-10 bytes and answer with the same statuses; the processes stage what
they receive the same way.
"""

from __future__ import annotations

from workstation.core.cache import CacheError
from workstation.core.cache.files import stage_bytes
from workstation.core.cache.parse import Parsed

STATUS_OUT_OF_RESOURCES = 0xA700
STATUS_CANNOT_UNDERSTAND = 0xC000


def encoded(event) -> bytes:
    """The received instance as a Part-10 file: our file meta in front of the bytes as received."""
    return event.encoded_dataset(include_meta=True)


def stage(data: bytes, files_root: str, folders: set, durable: bool = False) -> tuple[Parsed | None, int, str]:
    """`files.stage_bytes` for a receiving process: (the staged instance, 0) or (None, the status its
    refusal deserves, the reason). Out of Resources (it could not be written) tells the caller to
    stop accepting for a while."""
    try:
        return stage_bytes(data, files_root, folders, durable=durable), 0x0000, ""
    except CacheError as exc:
        return None, STATUS_CANNOT_UNDERSTAND, str(exc)
    except OSError as exc:
        return None, STATUS_OUT_OF_RESOURCES, f"cannot be stored: {exc.strerror or exc}"
