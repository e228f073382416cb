"""Keeping a run's resident memory near what it holds (issue 17: <= 250 MB at 100,000
mailboxes; docs/architecture.md, "Memory").

Two glibc behaviours made the resident set far larger than the Python objects alive:
- every thread that allocates gets a malloc arena of its own (up to eight per core), and the
  parallel table writers, each building multi-megabyte batch bodies, left one half-empty
  arena each: about 40 MB at 100,000 mailboxes. `release()` first caps the arenas at
  `ARENAS` (`mallopt(M_ARENA_MAX)`, what the `MALLOC_ARENA_MAX` variable sets at start-up;
  threads that already have an arena keep it);
- freed pages stay with the process: the Functions host keeps one worker for many
  invocations, so the next night would start from the last one's peak. `release()` runs the
  cyclic collector and hands glibc's free pages back (`malloc_trim`).
Without glibc (macOS, musl) `release()` only collects.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
from typing import Any

__all__ = ["ARENAS", "release"]

ARENAS = 2  # malloc arenas: the audit's threads mostly wait on HTTP, so two are plenty
_M_ARENA_MAX = -8  # glibc's <malloc.h>


def _libc() -> Any | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
        libc.malloc_trim, libc.mallopt  # noqa: B018 - glibc only
    except (OSError, AttributeError):
        return None
    return libc


_LIBC = _libc()
_capped = False


def release(*, collect: bool = True) -> bool:
    """Free what nothing holds any more; True when glibc returned its free pages."""
    global _capped
    if collect:
        gc.collect()
    if _LIBC is None:
        return False
    if not _capped:
        _LIBC.mallopt(_M_ARENA_MAX, ARENAS)
        _capped = True
    _LIBC.malloc_trim(0)
    return True
