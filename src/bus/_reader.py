"""Reading the report stream ahead of the replica, on the asyncio side.

A pull consumer of the replica's own is read by a task in the asyncio thread
(``StreamReader.pump``) into a bounded buffer, while Trio decodes and merges
what it took before; Trio takes everything buffered in one crossing
(``take``). So a batch costs one hop between the loops, however many reports
it holds, and the next batch is usually waiting when Trio asks for it: the
reports come back to the replica that published them (whose 202 waits for
that) without a round trip to the server on Trio's time. The buffer's bound
is the back-pressure: the pump asks the server for no more than there is
room for, so a replica catching up on an hour of reports holds at most
``BUFFER`` of them undecoded.

Everything here runs on the asyncio loop (``ReportBus`` crosses into it).
"""

from __future__ import annotations

import asyncio
import contextlib

import attrs
import nats.errors
import nats.js.errors
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

FETCH_BATCH = 256
"""Reports asked from the server in one pull at most."""
BUFFER = 1024
"""Reports read ahead and not yet taken at most (~5 KB each)."""
FETCH_WAIT = 0.5
"""Seconds one pull waits for a report when none is pending; also how long a
``take`` waits when nothing is buffered."""
IDLE_CHECKS = 2
"""Empty pulls in a row after which the stream is asked whether reports are
waiting that our consumer does not deliver (the server dropped it)."""
CONSUMER_IDLE = 60.0
"""Seconds the server keeps a replica's consumer while nobody reads it (a replica that died)."""


@attrs.frozen
class Fetched:
    sequence: int
    data: bytes


class StreamReader:
    """The replica's consumer of ``stream`` and the reports read ahead from it."""

    def __init__(self, js: JetStreamContext, stream: str) -> None:
        self.js = js
        self.stream = stream
        self.consumer_restarts = 0
        self._subscription: JetStreamContext.PullSubscription | None = None
        self._buffer: list[Fetched] = []
        self._next = 0
        """Sequence of the next report ``take`` hands out (0: not started)."""
        self._pending = 0
        """Reports on the stream after the newest one buffered, as the server last said."""
        self._failure: BaseException | None = None
        self._task: asyncio.Task[None] | None = None
        self._arrived = asyncio.Event()
        self._room = asyncio.Event()
        self._stale = False

    def invalidate(self) -> None:
        """The connection was lost meanwhile: the server may have dropped our
        consumer, so the next ``take`` reads again with a new one from where it
        was (what is buffered is from before and stays valid)."""
        self._stale = True

    async def take(self, after: int) -> tuple[list[Fetched], int]:
        """The reports after sequence ``after`` read so far (up to ``BUFFER``;
        waiting ``FETCH_WAIT`` at most for one when none is), and how many are
        on the stream behind them.

        Raises:
            nats.errors.Error, nats.js.errors.Error: the stream cannot be read
                now (the pump stopped; the next ``take`` starts it again).
        """
        if self._next != after + 1 or self._task is None:
            await self._restart(after + 1)
        task = self._task
        assert task is not None
        if not self._buffer and not task.done():
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), FETCH_WAIT)
        if not self._buffer and task.done():
            # The pump stopped (what it read before is handed out first):
            # its failure now, and a new pump at the next take.
            failure, self._failure, self._task = self._failure, None, None
            if failure is not None:
                raise failure
        taken, self._buffer = self._buffer, []
        self._room.set()
        if taken:
            self._next = taken[-1].sequence + 1
        return taken, self._pending

    async def close(self) -> None:
        await self._stop()
        if self._subscription is not None:
            with contextlib.suppress(nats.errors.Error):
                await self._subscription.unsubscribe()
            self._subscription = None

    async def _restart(self, start: int) -> None:
        """Read from ``start`` on, with what was buffered dropped: a new pump, and
        a new consumer unless the current one delivers ``start`` next."""
        await self._stop()
        self._buffer = []
        self._failure = None
        self._next = start
        self._task = asyncio.get_running_loop().create_task(self._pump(start), name=f"read {self.stream}")

    async def _stop(self) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        # Cancelled until it has ended: nats-py's fetch waits in asyncio.wait_for,
        # which before Python 3.12 can swallow a cancellation that comes as its
        # timeout fires (the pump then sees an idle stream and goes on). Waited
        # for with asyncio.wait, which raises neither the pump's end nor keeps
        # this caller's own cancellation from it.
        while not task.done():
            task.cancel()
            await asyncio.wait({task}, timeout=1.0)
        if not task.cancelled():
            task.exception()  # retrieved: its failure was handed to take already

    async def _open(self, start: int) -> JetStreamContext.PullSubscription:
        if self._subscription is not None:
            with contextlib.suppress(nats.errors.Error):
                await self._subscription.unsubscribe()  # the old one is gone with the old connection
            self.consumer_restarts += 1
        config = ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=max(1, start),
                                ack_policy=AckPolicy.NONE, inactive_threshold=CONSUMER_IDLE, mem_storage=True)
        self._subscription = await self.js.pull_subscribe(f"{self.stream}.>", stream=self.stream, config=config)
        self._stale = False
        return self._subscription

    async def _pump(self, start: int) -> None:
        """Read the stream from ``start`` into the buffer until cancelled; a
        failure is kept for ``take`` to raise, and ends the pump."""
        try:
            reader = await self._open(start)
            position, timeouts = start, 0
            while True:
                while len(self._buffer) >= BUFFER:
                    self._room.clear()
                    await self._room.wait()
                if self._stale:
                    reader = await self._open(position)
                try:
                    # One report, as soon as there is one; then as many as the
                    # server said are pending behind it (a pull of more than
                    # are pending would wait its whole timeout for the rest).
                    messages = await reader.fetch(1, timeout=FETCH_WAIT)
                    behind = min(int(messages[-1].metadata.num_pending), FETCH_BATCH - 1,
                                 BUFFER - len(self._buffer) - 1)
                    if behind > 0:
                        with contextlib.suppress(nats.errors.TimeoutError):  # expired meanwhile (max_age)
                            messages += await reader.fetch(behind, timeout=FETCH_WAIT)
                except nats.errors.TimeoutError:
                    timeouts += 1
                    if timeouts % IDLE_CHECKS == 0 and await self._consumer_lost(position):
                        self._stale = True
                    else:
                        self._pending = 0
                    continue
                timeouts = 0
                for message in messages:
                    self._buffer.append(Fetched(int(message.metadata.sequence.stream), message.data))
                position = self._buffer[-1].sequence + 1
                self._pending = int(messages[-1].metadata.num_pending)
                self._arrived.set()
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # noqa: BLE001  # handed to the next take, which raises it in Trio
            self._failure = exc
            self._stale = True
            self._arrived.set()

    async def _consumer_lost(self, position: int) -> bool:
        """Nothing came for a while: whether reports are waiting from
        ``position`` on that our consumer does not deliver (the server dropped
        it while we were away); ``_pending`` is set to how many."""
        info = await self.js.stream_info(self.stream)
        last = int(info.state.last_seq)
        if last >= position and int(info.state.messages) > 0 and int(info.state.first_seq) <= last:
            self._pending = last - position + 1
            return True
        return False
