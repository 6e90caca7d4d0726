"""Memory glibc keeps free is returned to the system (``trioscope.allocator``)."""

from __future__ import annotations

import ctypes
import logging

import pytest
import trio

from trioscope.allocator import Glibc, Trim, resident_bytes, return_freed_memory

BLOCK = 64 * 1024  # below glibc's mmap threshold: from the heap
BLOCKS = 1024  # 64 MiB


@pytest.fixture
def glibc() -> Glibc:
    found = Glibc.load()
    if found is None:
        pytest.skip("the C library is not glibc")
    return found


def libc() -> ctypes.CDLL:
    library = ctypes.CDLL(None)
    library.malloc.restype = ctypes.c_void_p
    library.malloc.argtypes = [ctypes.c_size_t]
    library.free.argtypes = [ctypes.c_void_p]
    return library


def free_in_the_middle_of_the_heap() -> int:
    """64 MiB allocated, touched and freed, below a block still in use (so
    that glibc does not give it back by itself from the top of its heap).
    Returns that block (for ``free``)."""
    blocks = [libc().malloc(BLOCK) for _ in range(BLOCKS)]
    for block in blocks:
        ctypes.memset(block, 1, BLOCK)
    guard = libc().malloc(BLOCK)
    for block in blocks:
        libc().free(block)
    return guard


def test_a_trim_returns_what_glibc_holds_free_once(glibc: Glibc) -> None:
    guard = free_in_the_middle_of_the_heap()
    try:
        assert glibc.free_bytes() >= BLOCK * BLOCKS
        before = resident_bytes()
        done = glibc.trim(min_free=BLOCK * BLOCKS // 2)
        assert done is not None
        assert done.returned >= BLOCK * BLOCKS // 2
        assert resident_bytes() <= before - BLOCK * BLOCKS // 2
        assert glibc.trim(min_free=BLOCK * BLOCKS // 2) is None  # given back already
    finally:
        libc().free(guard)


def test_no_trim_while_glibc_holds_little_free(glibc: Glibc) -> None:
    glibc.trim(min_free=0)
    assert glibc.trim(min_free=2**62) is None


class Recorded:
    """A glibc stand-in that has returned 20 MiB on each trim."""

    def __init__(self) -> None:
        self.trims = 0
        self.three = trio.Event()

    def trim(self, min_free: int) -> Trim:
        self.trims += 1
        if self.trims == 3:
            trio.from_thread.run_sync(self.three.set)
        return Trim(free_before=24 * 2**20, free_after=2**20, rss_before=500 * 2**20, rss_after=480 * 2**20,
                    seconds=0.004)


async def test_the_server_task_trims_every_interval_and_logs_what_it_returned(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="trioscope.allocator")
    glibc = Recorded()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(return_freed_memory, 0.01, glibc)
        with trio.fail_after(30):
            await glibc.three.wait()
        nursery.cancel_scope.cancel()
    lines = [r.getMessage() for r in caplog.records if getattr(r, "event", None) == "memory_trimmed"]
    assert len(lines) >= 2  # the third may be cancelled before it is logged
    assert lines[0].startswith("returned 20.0 MiB to the system")
