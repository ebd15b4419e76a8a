"""Keeping the resident memory of a long CPU session honest: hand freed memory back to the operating system.

Encoding utterances of varying length, or pretraining on random crops, allocates and frees buffers of ever-changing
sizes. glibc then raises its threshold for memory-mapped allocations and keeps the freed buffers in its heap, so a
process's resident memory can stay far above what it holds: over notebook 01's word probe (600 training utterances,
64 MB of results) it grew by 0.7 GB. `release_freed_memory` returns those pages (glibc's malloc_trim; a no-op on
other C libraries). Used by the word probe and after a pocket backbone trains in the calling process.
"""
from __future__ import annotations

import ctypes

_LIBC = None


def release_freed_memory() -> None:
    """Return memory the process has freed to the operating system; nothing the process holds is touched."""
    global _LIBC
    if _LIBC is None:
        try:
            _LIBC = ctypes.CDLL("libc.so.6")
            _LIBC.malloc_trim.argtypes = [ctypes.c_size_t]
        except (OSError, AttributeError):  # not glibc (macOS, Windows, musl)
            _LIBC = False
    if _LIBC:
        _LIBC.malloc_trim(0)
