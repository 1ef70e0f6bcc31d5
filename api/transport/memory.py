"""Giving memory back to the operating system once many rooms were unloaded.

Freed memory stays with the process: CPython keeps its object arenas while any
object lives in them, glibc keeps freed heap pages (pycrdt's documents live in
Rust's allocations, which are glibc's), and SQLite keeps its page cache. After
an idle sweep unloaded rooms, :func:`give_back` collects garbage cycles, asks
the store to shrink its caches, and asks glibc to return its free pages
(``malloc_trim``; elsewhere a no-op). It costs a few milliseconds per call, so
the sweep calls it only after unloading many rooms or the last one.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging
from collections.abc import Callable
from typing import Final

__all__ = ["give_back"]

logger = logging.getLogger(__name__)


def _load_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


_MALLOC_TRIM: Final = _load_trim()


def give_back(shrink_store: Callable[[], None]) -> None:
    """Collect cycles, shrink the store's caches, return free heap pages."""
    gc.collect()
    try:
        shrink_store()
    except Exception:
        logger.exception("could not shrink the store's caches")
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)
