"""Giving memory back to the system when a big working set goes (a closed study's decoded frames).

numpy frees a frame's buffer at once, but glibc's allocator keeps freed heap pages for reuse: the
process stays as big as it was. `malloc_trim` hands the free pages back; elsewhere it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import sys
from functools import cache


@cache
def _trim():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc.malloc_trim
    except (OSError, AttributeError):   # not glibc (musl has no malloc_trim)
        return None


def give_back() -> bool:
    """Collect garbage and return free heap pages to the system; True when the allocator could."""
    gc.collect()
    trim = _trim()
    if trim is None:
        return False
    trim(0)
    return True
