"""One asyncio event loop in a thread of its own, the bridge between Trio and
nats-py (which runs only on asyncio).

Trio code hands a coroutine to the loop and waits, without blocking its own
loop, for the result: the coroutine is scheduled with
``asyncio.run_coroutine_threadsafe`` and its completion wakes the Trio task
through the Trio token (``run_sync_soon``), so no thread waits per call. A
cancelled Trio task cancels the coroutine. Chosen over trio-asyncio, which runs
asyncio inside Trio's loop, because nats-py's own tasks (reading the socket,
pings, reconnecting) then keep running whatever Trio is busy with, and the
bridge is this small class rather than a library wrapping both loops.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import trio

log = logging.getLogger(__name__)

T = TypeVar("T")

STOP_GRACE = 2.0
"""Seconds the loop's tasks have to end once cancelled at ``stop`` (nats-py's
close or a pull in flight ends at once; a task that does not is left)."""


class AsyncioThread:
    """An asyncio loop running in a daemon thread until ``stop``."""

    def __init__(self, name: str = "asyncio") -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_forever()
        finally:
            self._finish()

    def _finish(self) -> None:
        """Once the loop stopped (in its thread): its tasks cancelled and run
        until they end (``STOP_GRACE`` at most), then the loop closed.

        A coroutine whose Trio caller went away is cancelled with
        ``call_soon_threadsafe``, which a loop stopped right after never ran:
        an attempt to reach the bus (``ReportBus._connect``) was left pending
        and destroyed with the loop ("Task was destroyed but it is pending!").

        Error handling: a task's failure is retrieved (its caller, gone, was
        the one to raise it); tasks still running after ``STOP_GRACE`` are
        logged and left, and the loop is then not closed (the thread ends).
        """
        loop = self.loop
        deadline = time.monotonic() + STOP_GRACE
        while tasks := asyncio.all_tasks(loop):  # cancelling one may start others (a connection's close)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                log.warning("%d asyncio tasks did not end within %g s of being cancelled: %s", len(tasks),
                            STOP_GRACE, ", ".join(sorted(task.get_name() for task in tasks)))
                return
            for task in tasks:
                if not task.cancelling():  # one cancelled already is ending: not cut short in its cleanup
                    task.cancel()
            done, _ = loop.run_until_complete(asyncio.wait(tasks, timeout=remaining))
            for task in done:
                if not task.cancelled():
                    task.exception()
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()

    def start(self) -> None:
        self._thread.start()

    async def run(self, make: Callable[[], Coroutine[Any, Any, T]]) -> T:
        """``await make()`` on the asyncio loop; its result or exception here."""
        token = trio.lowlevel.current_trio_token()
        done = trio.Event()

        def wake(_: object) -> None:
            try:
                token.run_sync_soon(done.set)
            except trio.RunFinishedError:
                pass  # Trio has gone: nobody waits for the answer

        future = asyncio.run_coroutine_threadsafe(make(), self.loop)
        future.add_done_callback(wake)
        try:
            await done.wait()
        finally:
            if not future.done():
                future.cancel()
        return future.result()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the loop (after the callbacks scheduled so far), cancel its tasks
        and let them end (``STOP_GRACE`` at most), and wait ``timeout`` at most
        for the thread; the loop is closed once they all ended."""
        if self._thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout)
        elif self._thread.ident is None and not self.loop.is_closed():
            self.loop.close()  # never started: no task ran on it
