"""Reading the report stream ahead of the replica, on the asyncio side.

A pull consumer of the replica's own is read by a task in the asyncio thread
(``StreamReader._pump``) into a bounded buffer, while Trio decodes and merges
what it took before; Trio takes everything buffered in one crossing
(``take``). So a batch costs one hop between the loops, however many reports
it holds, and the next batch is usually waiting when Trio asks for it: the
reports come back to the replica that published them (whose 202 waits for
that) without a round trip to the server on Trio's time. The buffer's bound
is the back-pressure: the pump asks the server for no more than there is
room for, so a replica catching up on an hour of reports holds at most
``BUFFER`` of them undecoded.

How many reports are left (``lag``) is known only from what the server said
while it answered: a report fetched, or the consumer (their ``num_pending``),
or the stream's state where that tells (no message deleted from it: a deleted
one is counted in the state, and the stream still ends at its sequence, but
it is no report to read; a consumer does not count it). Each consumer a
reader replaces is deleted: the server kept every one for ``CONSUMER_IDLE``.
A pull that times out says nothing (the stream may be idle, or the
server out of reach), so the count stays as it was; a read that fails, a
reconnection or a new start makes it unknown (None) until the server says
again, and a ``take`` that has nothing to hand out then raises ``LagUnknown``
rather than let anyone conclude the end of the stream was reached.

A stream made again (the server's store wiped, the stream created anew by a
replica's start) starts again from sequence 1: the reader sees its sequence
below what it read, or another creation time, and reads it from its first
report (once logged: ``bus_stream_recreated``); a report merged twice changes
nothing. Another creation time alone is no proof: nats-server (2.9) gives a
stream whose configuration was updated (``ReportBus`` lengthens its limits)
the time of its next restart, so the reader keeps the last report it read
(``_Mark``: its sequence, the stream's time of it and a digest) and asks the
stream for the message at that sequence. The same message, or none because
the stream's first sequence is past it (aged out) or it was deleted, is the
same stream read on; another message is a stream made again.

Everything here runs on the asyncio loop (``ReportBus`` crosses into it).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import hashlib
import logging
import secrets
import time

import attrs
import nats.errors
import nats.js.errors
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, StreamInfo

from trioscope.domain.rates import Lull

log = logging.getLogger(__name__)

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
UNKNOWN_WAIT = 5.0
"""Seconds a ``take`` with nothing to hand out waits, while how many reports
are left is not known, for the server to say (then ``LagUnknown``)."""


REMADE_SAID_EVERY = 60.0
"""Seconds between two warnings that the stream was made again (the rest at debug level)."""

class LagUnknown(nats.errors.Error):
    """Nothing was read, and how many reports are left on the stream is not
    known now: the server did not say since the connection or the read was
    lost (the reader goes on asking; the next ``take`` may have it)."""

    def __str__(self) -> str:
        return "no answer from the bus: how far the report stream goes is not known now"


MARK_SLACK = datetime.timedelta(milliseconds=1)
"""How far two readings of one message's stream time may differ: a pulled
message's time comes in nanoseconds as a float, a message got by its
sequence as text cut to microseconds."""


@attrs.frozen
class Fetched:
    sequence: int
    data: bytes


@attrs.frozen
class _Mark:
    """The newest report read (``StreamReader._mark``): what tells whether a
    stream with another creation time still holds it, so is the one read."""

    sequence: int
    time: datetime.datetime
    """When the stream stored it (its own time, not the report's)."""
    digest: bytes

    @classmethod
    def of(cls, sequence: int, time: datetime.datetime, data: bytes | None) -> _Mark:
        return cls(sequence, time, hashlib.blake2b(data or b"", digest_size=16).digest())

    def same(self, other: _Mark) -> bool:
        return (self.sequence == other.sequence and self.digest == other.digest
                and abs(self.time - other.time) <= MARK_SLACK)


class StreamReader:
    """The replica's consumer of ``stream`` and the reports read ahead from it."""

    def __init__(self, js: JetStreamContext, stream: str) -> None:
        self.js = js
        self.stream = stream
        self.consumer_restarts = 0
        self._subscription: JetStreamContext.PullSubscription | None = None
        self._consumer: str | None = None
        """The name of ``_subscription``'s consumer (named here, so that the one replaced can be deleted)."""
        self._buffer: list[Fetched] = []
        self._next = 0
        """Sequence of the next report ``take`` hands out (0: not started)."""
        self._pending = 0
        """Reports on the stream after the newest one buffered, as the server last said."""
        self._known = False
        """Whether ``_pending`` is known now: the server said it since the
        reader started and since it last lost the connection or its read."""
        self._created: datetime.datetime | None = None
        """When the stream read was created, as the server said (a stream made again has another)."""
        self._mark: _Mark | None = None
        """The newest report read, to confirm that a stream created at another time is still the one read."""
        self.recreations = 0
        """Times the stream was found made again (and read again from its first report)."""
        self._remade_said = Lull(REMADE_SAID_EVERY)
        self._failure: BaseException | None = None
        self._task: asyncio.Task[None] | None = None
        self._arrived = asyncio.Event()
        self._room = asyncio.Event()
        self._stale = False

    def invalidate(self) -> None:
        """The connection was lost meanwhile: the server may have dropped our
        consumer, so the next ``take`` reads again with a new one from where it
        was (what is buffered is from before and stays valid). How many
        reports are left is not known until the server says again."""
        self._stale = True
        self._known = False

    @property
    def lag(self) -> int | None:
        """Reports on the stream after the last one ``take`` handed out (those
        buffered included); None while not known (see the module docstring)."""
        return len(self._buffer) + self._pending if self._known else None

    async def take(self, after: int) -> tuple[list[Fetched], int]:
        """The reports after sequence ``after`` read so far (up to ``BUFFER``;
        waiting ``FETCH_WAIT`` at most for one when none is), and how many are
        on the stream behind them, as the server last said.

        After the stream was made again (``recreations``), the reports handed
        out start again from its first sequence, whatever ``after`` was: the
        caller goes on from the last one it was handed.

        Raises:
            nats.errors.Error, nats.js.errors.Error: the stream cannot be read
                now (the pump stopped; the next ``take`` starts it again).
            LagUnknown: nothing to hand out, and how many reports are left is
                not known (``UNKNOWN_WAIT`` passed without the server saying).
        """
        if self._next != after + 1 or self._task is None:
            await self._restart(after + 1)
        task = self._task
        assert task is not None
        if not self._buffer and not task.done():
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), FETCH_WAIT if self._known else UNKNOWN_WAIT)
        if not self._buffer and task.done():
            # The pump stopped (what it read before is handed out first):
            # its failure now, and a new pump at the next take.
            failure, self._failure, self._task = self._failure, None, None
            if failure is not None:
                raise failure
        if not self._buffer and not self._known:
            raise LagUnknown()
        taken, self._buffer = self._buffer, []
        self._room.set()
        if taken:
            self._next = taken[-1].sequence + 1
        return taken, self._pending

    async def close(self) -> None:
        """Stop reading. The consumer is left to the server, which deletes it
        ``CONSUMER_IDLE`` after its last read: deleting it here would hold the
        process's stop up for as long as a bus that went away takes to fail."""
        await self._stop()
        if self._subscription is not None:
            with contextlib.suppress(nats.errors.Error):
                await self._subscription.unsubscribe()
            self._subscription = self._consumer = None

    async def _restart(self, start: int) -> None:
        """Read from ``start`` on, with what was buffered dropped: a new pump, and
        a new consumer unless the current one delivers ``start`` next."""
        await self._stop()
        self._buffer = []
        self._failure = None
        self._known = False  # behind ``start``: the server says at the new pump's start
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

    async def _open(self, start: int) -> tuple[JetStreamContext.PullSubscription, int]:
        """A new consumer, and the sequence it reads from: ``start``, or the
        stream's first if it was made again (``_look``). The one it replaces
        is deleted (or it would stay on the server ``CONSUMER_IDLE`` more,
        one for every replacement). How many reports are left is what the
        new consumer has to deliver, as the server said making it."""
        start, _ = await self._look(start)
        if self._subscription is not None or self._consumer is not None:
            await self._drop()
            self.consumer_restarts += 1
        name = f"trioscope-{secrets.token_hex(8)}"
        config = ConsumerConfig(name=name, filter_subject=f"{self.stream}.>",
                                deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=start,
                                ack_policy=AckPolicy.NONE, inactive_threshold=CONSUMER_IDLE, mem_storage=True)
        info = await self.js.add_consumer(self.stream, config)
        self._consumer = name  # deleted at the next replacement even if the bind below fails
        self._subscription = await self.js.pull_subscribe_bind(name, stream=self.stream)
        self._stale = False
        self._said(int(info.num_pending or 0))
        return self._subscription, start

    async def _drop(self) -> None:
        """Stop reading with the current consumer and delete it (one gone
        already, with a lost connection or a stream made again: nothing to do)."""
        subscription, consumer, self._subscription, self._consumer = self._subscription, self._consumer, None, None
        if subscription is not None:
            with contextlib.suppress(nats.errors.Error):
                await subscription.unsubscribe()
        if consumer is not None:
            with contextlib.suppress(nats.errors.Error, nats.js.errors.Error, TimeoutError):
                await self.js.delete_consumer(self.stream, consumer)

    async def _pump(self, start: int) -> None:
        """Read the stream from ``start`` into the buffer until cancelled; a
        failure is kept for ``take`` to raise, and ends the pump."""
        try:
            reader, position = await self._open(max(1, start))
            timeouts = 0
            while True:
                while len(self._buffer) >= BUFFER:
                    self._room.clear()
                    await self._room.wait()
                if self._stale:
                    reader, position = await self._open(position)
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
                    # Nothing came: an idle stream, or a server out of reach
                    # (then the pull only timed out); the count stays as it
                    # was until the server says (now, if reports were due).
                    timeouts += 1
                    if self._pending > 0 or not self._known or timeouts % IDLE_CHECKS == 0:
                        fresh, left = await self._look(position)
                        if fresh != position:  # made again: read from its start
                            position, self._stale = fresh, True
                        elif left == 0:
                            self._said(0)
                        else:
                            # Reports on the stream from here (or messages deleted
                            # from it, which only a consumer does not count): does
                            # ours have them to deliver, or did the server drop it
                            # (while we were away)?
                            undelivered = await self._undelivered(reader)
                            if undelivered is None:
                                self._stale = True
                            else:
                                self._said(undelivered)
                    continue
                timeouts = 0
                for message in messages:
                    self._buffer.append(Fetched(int(message.metadata.sequence.stream), message.data))
                newest = messages[-1]
                self._mark = _Mark.of(self._buffer[-1].sequence, newest.metadata.timestamp, newest.data)
                position = self._buffer[-1].sequence + 1
                self._said(int(messages[-1].metadata.num_pending))
                self._arrived.set()
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # noqa: BLE001  # handed to the next take, which raises it in Trio
            self._failure = exc
            self._stale = True
            self._known = False
            self._arrived.set()

    def _said(self, pending: int) -> None:
        """The server said how many reports are after the newest one buffered."""
        self._pending = pending
        if not self._known:
            self._known = True
            self._arrived.set()  # a take waiting to know has its answer

    async def _undelivered(self, subscription: JetStreamContext.PullSubscription) -> int | None:
        """How many reports our consumer has to deliver yet (deleted messages
        are none); None if the server has no such consumer now."""
        try:
            info = await subscription.consumer_info()
        except nats.js.errors.NotFoundError:
            return None
        return int(info.num_pending or 0)

    async def _holds_mark(self, first: int, last: int, position: int) -> bool:
        """Whether the stream, found created at another time than before, is
        still the one read here (see the module docstring): it holds the
        newest report read (``_mark``), or lost it only by age or deletion.
        With nothing read (``position`` 1) there is nothing to lose either way.

        Raises:
            nats.errors.Error, nats.js.errors.Error: no answer.
        """
        mark = self._mark
        if mark is None:
            return position <= 1
        if mark.sequence > last:
            return False
        try:
            held = await self.js.get_msg(self.stream, mark.sequence)
        except nats.js.errors.NotFoundError:
            # Aged out (``first`` is past it) or deleted: a stream made again
            # would hold its every sequence from its first.
            kept = True
        else:
            kept = held.time is not None and mark.same(_Mark.of(mark.sequence, held.time, held.data))
        if kept:
            log.info("the report stream %s was created at another time than before (nats-server gives a stream "
                     "whose settings were changed the time of its restart) and still holds sequence %d, read "
                     "here%s: reading on from sequence %d", self.stream, mark.sequence,
                     "" if first <= mark.sequence else f" (aged out since; it starts at {first})", position,
                     extra={"event": "bus_stream_kept", "stream": self.stream, "sequence": mark.sequence})
        return kept

    async def _look(self, position: int) -> tuple[int, int | None]:
        """Ask the stream where to read from: ``position``, or its first
        sequence if it was made again since it was read here (its last
        sequence is below the one read before ``position``, or it was created
        at another time and no longer holds what was read: ``_holds_mark``);
        and how many reports it holds from there, None when
        its state cannot tell: messages deleted from it (``js.delete_msg``)
        are counted there (``num_deleted``) but not placed, so only while
        none are, or when it is read from its first, is the count the span.

        Raises:
            nats.errors.Error, nats.js.errors.Error: no answer (the stream is
                gone, or the server out of reach).
        """
        info: StreamInfo = await self.js.stream_info(self.stream)
        state = info.state
        first, last, created = int(state.first_seq), int(state.last_seq), info.created
        remade = last < position - 1
        if not remade and created is not None and self._created not in (None, created):
            remade = not await self._holds_mark(first, last, position)
        if created is not None:
            self._created = created
        if remade:
            self._mark = None  # of the stream that was
            self.recreations += 1
            # Said once a minute: a stream made again by another program, whose
            # subjects are not ours, was found made again at every look (62 lines in 30 s).
            log.log(self._remade_said.level(time.monotonic()),
                    "the report stream %s was made again (it ends at sequence %d, %d was read here, or it was "
                    "created at another time): reading it again from sequence %d", self.stream, last,
                    position - 1, max(1, first),
                    extra={"event": "bus_stream_recreated", "stream": self.stream, "sequence": position - 1})
            position = max(1, first)
        start = max(position, first)
        left: int | None
        if start > last or not state.messages:
            left = 0
        elif start == first:
            left = int(state.messages)
        elif not state.num_deleted:  # None from nats-py when there are none
            left = last - start + 1
        else:
            left = None
        return position, left
