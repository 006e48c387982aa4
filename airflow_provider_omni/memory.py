"""Give memory the process freed back to the operating system (glibc's ``malloc_trim``).

A send posts its bulks from worker threads; glibc gives each thread its own malloc arena, and
freed blocks (answers of a few hundred kB, their parsed form) stay in those arenas, counted in
the worker's resident memory, which is what a container's memory limit sees.  Trimming after each
bulk keeps a send's resident memory at what it really holds.  Elsewhere (musl, macOS) it does
nothing.
"""

from __future__ import annotations

import sys
from functools import cache
from typing import Any


@cache
def _malloc_trim() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    import ctypes  # here: a DAG file importing the operator does not pay for it

    try:
        trim = ctypes.CDLL(None).malloc_trim  # the process's own symbols: glibc's, if it is glibc
    except (OSError, AttributeError):  # not glibc
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


def give_back_free_memory() -> bool:
    """Return the free memory of every malloc arena to the system; False where that is not possible."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
