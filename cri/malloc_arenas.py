"""Fewer malloc arenas for the daemon's threads.

glibc gives threads that contend for the heap arenas of their own, up to eight per core, and a pull's
download, inflate and unpack threads each leave freed memory behind in theirs: the seed image's pull
peaked 13 MB higher with glibc's default than with two arenas, and was no faster. Like MALLOC_ARENA_MAX=2
in the environment, but set by the daemon itself, before its threads start.
"""

from __future__ import annotations

import ctypes
import ctypes.util

__all__ = ["limit_malloc_arenas"]

_M_ARENA_MAX = -8  # glibc's malloc.h


def limit_malloc_arenas(count: int = 2) -> bool:
    """Whether the C library took the limit (glibc does; others have no such setting)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_ARENA_MAX, count))
