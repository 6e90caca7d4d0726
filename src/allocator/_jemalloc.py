"""jemalloc's dirty pages returned to the system now, rather than when its decay
gets to them.

jemalloc (as ``_choice`` configures it) purges a freed page some seconds after
it was freed, along a decay curve, from its background thread. After 5,000
WebSocket clients left, RSS was still 1.59x its level before at 5 s and 1.12x
at 15 s (1.09x where it levels off; bench/RESULTS.md, "End of session 26"). The
server's trim task (``_glibc.return_freed_memory``) asks it instead every
``server.memory_trim_interval``, when it holds ``MIN_FREE`` dirty: the
``arena.<all>.purge`` control, jemalloc's counterpart of ``malloc_trim``.
Pages a busy server reuses within seconds are never that many.
"""

from __future__ import annotations

import ctypes
import os
import time
from typing import Any

from ._glibc import MIN_FREE, Trim, resident_bytes

_ALL_ARENAS = 4096
"""``MALLCTL_ARENAS_ALL``: a control of every arena at once."""
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


class Jemalloc:
    """The preloaded jemalloc's ``mallctl``: dirty bytes, and a purge."""

    def __init__(self, mallctl: Any) -> None:  # a ctypes function of the loaded library
        self._mallctl = mallctl
        self._mallctl.argtypes = [ctypes.c_char_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t]
        self._mallctl.restype = ctypes.c_int

    @classmethod
    def load(cls) -> Jemalloc | None:
        """jemalloc's controls in this process, or None where it does not run."""
        try:
            return cls(ctypes.CDLL(None).mallctl)
        except (OSError, AttributeError):
            return None

    def dirty_bytes(self) -> int | None:
        """Bytes in pages jemalloc holds freed and not purged yet; None if it
        keeps no statistics (built without them)."""
        epoch = ctypes.c_uint64(1)  # statistics are a snapshot refreshed by writing the epoch
        self._mallctl(b"epoch", None, None, ctypes.byref(epoch), ctypes.sizeof(epoch))
        pages = ctypes.c_size_t()
        size = ctypes.c_size_t(ctypes.sizeof(pages))
        if self._mallctl(f"stats.arenas.{_ALL_ARENAS}.pdirty".encode(), ctypes.byref(pages), ctypes.byref(size),
                         None, 0) != 0:
            return None
        return pages.value * _PAGE

    def trim(self, min_free: int = MIN_FREE) -> Trim | None:
        """Purge every arena's dirty pages if they are at least ``min_free``
        bytes (always, without statistics); None if not. Blocking (call it in a
        worker thread)."""
        dirty = self.dirty_bytes()
        if dirty is not None and dirty < min_free:
            return None
        rss = resident_bytes()
        started = time.perf_counter()
        self._mallctl(f"arena.{_ALL_ARENAS}.purge".encode(), None, None, None, 0)
        took = time.perf_counter() - started
        return Trim(free_before=dirty or 0, free_after=self.dirty_bytes() or 0, rss_before=rss,
                    rss_after=resident_bytes(), seconds=took)
