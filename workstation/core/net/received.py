"""What every receiving side shares: the C-STORE statuses it answers and the instance as a file.

The Storage SCP's threads, its receiver processes and the retrieval workers all turn a C-STORE
request into the same Part-10 bytes and answer with the same statuses.
"""

from __future__ import annotations

STATUS_OUT_OF_RESOURCES = 0xA700
STATUS_CANNOT_UNDERSTAND = 0xC000


def encoded(event) -> bytes:
    """The received instance as a Part-10 file: our file meta in front of the bytes as received."""
    return event.encoded_dataset(include_meta=True)
