"""Memory given back after a mass of instances or sockets went away.

After thousands of instances are evicted (or sockets closed), CPython's
reference counting frees most of what they held, but not what sits in
reference cycles (an instance and its futures, stores and callbacks) until
the next full collection, which may not come for a long time on a quiet
server, and glibc keeps freed memory at the top of its heaps unless told to
trim. Measured after issue 13's attack 2 (200 sockets, 10,000 chat rooms
activated, all evicted): 219 MB resident with nothing hot; a full
``gc.collect()`` brought it to 194 MB and ``malloc_trim(0)`` to 179 MB (the
server started at 83 MB; the rest is pymalloc arenas and heap pages still
partly in use). Both take tens of milliseconds, so they run only once the
count of hot instances (deactivating ones included) and open sockets fell by
``RECLAIM_AFTER`` from its high-water mark and stopped falling (one
housekeeping tick without change): once at the end of a mass eviction, not
during it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging
from collections.abc import Callable

log = logging.getLogger(__name__)

#: How many hot instances and sockets must have gone (from their high-water mark) before memory is reclaimed.
RECLAIM_AFTER = 1000


def _malloc_trim() -> Callable[[], object] | None:
    """glibc's ``malloc_trim(0)``, or ``None`` elsewhere (musl, macOS)."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        trim = libc.malloc_trim
    except (OSError, AttributeError, TypeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    return lambda: trim(0)


class Reclaimer:
    """Watches the count of live things (hot instances plus sockets); reclaims once it fell far."""

    def __init__(self, after: int = RECLAIM_AFTER) -> None:
        self.after = after
        self.high = 0
        self.last = 0
        self._trim = _malloc_trim()

    def tick(self, live: int) -> bool:
        """``live`` things now; ``True`` if memory was reclaimed."""
        previous, self.last = self.last, live
        if live > self.high:
            self.high = live
            return False
        if self.high - live < self.after or live != previous:  # not far enough, or still falling
            return False
        self.high = live
        gc.collect()
        if self._trim is not None:
            self._trim()
        log.debug("zocket: reclaimed memory after %d instances and sockets went away", self.after)
        return True
