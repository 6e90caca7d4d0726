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
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import trio

T = TypeVar("T")


class AsyncioThread:
    """An asyncio loop running in a daemon thread until ``stop``."""

    def __init__(self, name: str = "asyncio") -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

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
        """Stop the loop (after the tasks scheduled so far) and wait for the thread."""
        if self._thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout)
        if not self._thread.is_alive():
            self.loop.close()
