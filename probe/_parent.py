"""Ending the probe when the process that started it is gone (``--exit-with-parent``).

The parent gives the probe a pipe as stdin, keeps the write end and never writes
to it. However the parent ends (a clean stop, a crash, kill -9), the kernel
closes that end and the probe reads end of file. This works on every platform
and cannot misfire, unlike Linux's ``PR_SET_PDEATHSIG``: that signal follows the
*thread* that forked the child, and trio forks from a worker thread
(``trio.run_process`` runs ``subprocess.Popen`` in ``trio.to_thread``), so the
probe would be killed whenever trio retired that idle thread.
"""

from __future__ import annotations

import logging
import os

import trio

log = logging.getLogger("trioscope_probe")
STDIN = 0


async def stop_when_parent_gone(scope: trio.CancelScope, fd: int = STDIN) -> None:
    """Cancel ``scope`` once ``fd`` reaches end of file (logged once).

    Whatever the parent writes is read and ignored: the pipe only says it is
    alive. A stdin that is closed or cannot be read counts as gone too: with
    nothing to watch, the probe would outlive its parent."""
    try:
        await read_until_end_of_file(fd)
        how = "end of file on stdin"
    except OSError as exc:
        how = f"stdin unreadable: {exc.strerror or exc}"
    log.info("parent process gone (%s): stopping", how)
    scope.cancel(reason="parent process gone")


async def read_in_trio(fd: int) -> None:
    """Read ``fd`` to its end in trio's I/O loop (POSIX)."""
    # A duplicate, so closing the stream leaves fd itself (stdin) open.
    async with trio.lowlevel.FdStream(os.dup(fd)) as stream:
        while await stream.receive_some(4096):
            pass


async def read_in_thread(fd: int) -> None:
    """Read ``fd`` to its end in a thread of its own (Windows has no FdStream for
    pipes), abandoned if cancelled; it takes no token from trio's default limiter."""
    def read() -> None:
        while os.read(fd, 4096):
            pass
    await trio.to_thread.run_sync(read, abandon_on_cancel=True, limiter=trio.CapacityLimiter(1))


read_until_end_of_file = read_in_trio if hasattr(trio.lowlevel, "FdStream") else read_in_thread
