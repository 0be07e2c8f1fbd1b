"""The exception types the pixel pipeline raises, so callers can show a reason instead of crashing."""

from __future__ import annotations


class PixelDataError(Exception):
    """An image cannot be shown; ``str(e)`` is a one-line human reason."""

    def __init__(self, reason: str) -> None:
        super().__init__(" ".join(str(reason).split()))


class VolumeError(Exception):
    """The slices cannot form one volume; ``str(e)`` says why."""
