"""Memory the C allocator keeps after Python freed it, returned to the system.

glibc's ``malloc`` keeps what is freed for later: at the top of its heap up to
a threshold it raises on its own (after a large block is freed, up to 64 MiB),
and all of it in the middle of the heap. After 1,000 WebSocket clients of a
1,000-host view left, the server's heap held 24 MiB free (RSS 1.13x its level
before they came); ``malloc_trim(0)`` gave it back in 2-8 ms (1.08x).

So the server looks every ``server.memory_trim_interval``: when glibc holds
``MIN_FREE`` more free than right after the last trim, it trims. (What it held
free then stays counted as free: glibc counts the pages it gave back, the
middle of its heap, as free chunks still.) Both the look (``mallinfo2``) and the
trim run in a worker thread: ctypes releases the GIL for the call, so the event
loop goes on meanwhile (it only waits for glibc's arena lock if it allocates a
block Python's own allocator does not serve).

Not glibc (musl, macOS): nothing to do. Under mimalloc or jemalloc
(``server.allocator``, ``_choice``) glibc serves next to nothing: mimalloc
gives free pages back by itself, jemalloc is asked to (``_jemalloc``).

What trimming cannot return is memory Python's own allocator (pymalloc) holds:
it frees a 1 MiB arena only once every block in it is free. After 2,000
clients left, the objects in use were back to their level before (same bytes
in pymalloc, same tracked objects: nothing per client is kept), yet 111 more
arenas stayed, each pinned by a few blocks allocated while the clients were
connected and still alive: the suspended frames of long-lived tasks (every
actor's next wait, timers), the objects of reports merged meanwhile. That
churn never stops in a live server, so where it lands is not ours to choose.
``PYTHONMALLOC=malloc`` with glibc (then ``malloc_trim`` returns free pages
anywhere) was measured and not taken: the same RSS after the clients left
(+46-56 MiB over a loaded server that needs 45-70 MiB more), and 1.24x the CPU
on the report path, 1.23x on a listing (bench/RESULTS.md, "What keeps RSS after
5,000 clients left"). mimalloc or jemalloc under it is what ``_choice`` does.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import time
from typing import Protocol

import attrs
import trio

log = logging.getLogger("trioscope.allocator")

MIN_FREE = 8 * 1024**2
"""Free bytes in glibc's heaps worth a trim: less is what a busy server reuses
within seconds anyway."""

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]


@attrs.frozen
class Trim:
    """One trim: glibc's free bytes and the process's resident bytes before and after."""

    free_before: int
    free_after: int
    rss_before: int
    rss_after: int
    seconds: float

    @property
    def returned(self) -> int:
        """Resident bytes given back (0 if the process grew meanwhile)."""
        return max(0, self.rss_before - self.rss_after)


class Glibc:
    """glibc's ``mallinfo2`` and ``malloc_trim``, and what glibc held free
    after the last trim."""

    def __init__(self, library: ctypes.CDLL) -> None:
        self._kept = 0
        self._mallinfo2 = library.mallinfo2
        self._mallinfo2.restype = _MallInfo2
        self._malloc_trim = library.malloc_trim
        self._malloc_trim.argtypes = [ctypes.c_size_t]
        self._malloc_trim.restype = ctypes.c_int

    @classmethod
    def load(cls) -> Glibc | None:
        """The process's glibc, or None if it is another C library (or a glibc
        older than 2.33, which has no ``mallinfo2``)."""
        name = ctypes.util.find_library("c")
        if name is None:
            return None
        try:
            library = ctypes.CDLL(name)
            library.mallinfo2  # noqa: B018 - raises AttributeError where it is missing
            library.malloc_trim  # noqa: B018 - likewise
        except (OSError, AttributeError):
            return None
        return cls(library)

    def free_bytes(self) -> int:
        """Bytes glibc's heaps hold free (``fordblks``: free chunks, top included)."""
        return int(self._mallinfo2().fordblks)

    def trim(self, min_free: int = MIN_FREE) -> Trim | None:
        """Return glibc's free pages to the system if it holds at least
        ``min_free`` bytes more free than after the last trim; None if not.
        Blocking (call it in a worker thread)."""
        free = self.free_bytes()
        self._kept = min(self._kept, free)  # what was in use again since
        if free - self._kept < min_free:
            return None
        rss = resident_bytes()
        started = time.perf_counter()
        self._malloc_trim(0)
        took = time.perf_counter() - started
        done = Trim(free_before=free, free_after=self.free_bytes(), rss_before=rss,
                    rss_after=resident_bytes(), seconds=took)
        self._kept = done.free_after
        return done


def resident_bytes() -> int:
    """The process's resident set size (Linux; 0 elsewhere)."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * _PAGE
    except (OSError, IndexError, ValueError):
        return 0


class Trimmer(Protocol):
    """What gives an allocator's free memory back: ``Glibc`` or ``Jemalloc``."""

    def trim(self, min_free: int = MIN_FREE) -> Trim | None: ...


async def return_freed_memory(interval: float, trimmer: Trimmer | None = None, min_free: int = MIN_FREE) -> None:
    """Every ``interval`` seconds, have ``trimmer`` (default: glibc's) give its
    free memory back if it holds at least ``min_free`` bytes (see the module).
    Runs until cancelled."""
    trimmer = trimmer if trimmer is not None else Glibc.load()
    if trimmer is None:
        log.debug("the C library is not glibc: freed memory is left to it")
        return
    while True:
        await trio.sleep(interval)
        done = await trio.to_thread.run_sync(trimmer.trim, min_free, abandon_on_cancel=True)
        if done is not None:
            log.debug("returned %.1f MiB to the system in %.0f ms (the allocator held %.1f MiB free, %.1f MiB after; "
                      "RSS %.0f -> %.0f MiB)", done.returned / 2**20, done.seconds * 1000, done.free_before / 2**20,
                      done.free_after / 2**20, done.rss_before / 2**20, done.rss_after / 2**20,
                      extra={"event": "memory_trimmed", "returned_bytes": done.returned})
