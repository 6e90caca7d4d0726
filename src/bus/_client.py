"""The report stream on NATS JetStream, for Trio code.

One stream (``bus.stream``) with a subject per agent, ``<stream>.<agent>``,
keeps every report for ``max(max_data_age, stale_threshold)``: the metric
history window, and so each agent's newest report for as long as the topology
would show it (a node not heard from for ``stale_threshold`` is removed anyway).
A replica publishes a report and answers 202 once JetStream acknowledged it
(``publish``); every replica reads the stream from its start (``fetch``) with an
ephemeral pull consumer of its own, read ahead in the asyncio thread
(``StreamReader``) and recreated from where it was after a reconnection.

nats-py runs on asyncio: it runs in an ``AsyncioThread`` and every call here
crosses into that loop and back. nats-py reconnects by itself once connected;
the first connection is retried here until it succeeds.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import attrs
import nats
import nats.errors
import nats.js.errors
import trio
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, StorageType, StreamConfig

from trioscope.config import Settings

from trioscope.domain.agents import PackedReport
from trioscope.runtime import Handoff
from trioscope.wire import Report

from ._envelope import Envelope
from ._lag import BusProgress
from ._loop import AsyncioThread
from ._reader import Fetched, StreamReader

log = logging.getLogger(__name__)

PUBLISH_TIMEOUT = 5.0
"""Seconds a report waits for JetStream's acknowledgement before it is answered 503."""
CONNECT_TIMEOUT = 2.0
RECONNECT_WAIT = 1.0
"""Seconds between two attempts to reach the bus (first connection and nats-py's reconnections)."""
PING_INTERVAL = 5.0
MAX_OUTSTANDING_PINGS = 2
"""A server that stops answering (frozen, or a network that drops packets
without closing the connection) is taken as lost after ~``PING_INTERVAL`` x
(``MAX_OUTSTANDING_PINGS`` + 1) seconds: with nats-py's defaults (120 s, 2) a
replica went on saying it was connected and caught up for minutes while it
could neither publish nor read."""
PUBLISHED_KEPT = 4096
"""Reports published here kept decoded for the feed at most (more are read
back from the stream like anyone else's)."""


class BusUnavailable(Exception):
    """The bus did not take a report (not connected, or no acknowledgement in time)."""


class ReportTooLarge(Exception):
    """A report's envelope is larger than the NATS server takes in one message
    (its ``max_payload``): resending it changes nothing."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"the report's envelope is {size} bytes, more than the {limit} bytes the NATS server "
                         "takes in one message (its max_payload)")
        self.size = size
        """The envelope's bytes, with the headers it is published with."""
        self.limit = limit
        """The server's ``max_payload``."""


@attrs.frozen(eq=False)
class _Outgoing:
    """A report waiting to be published; ``answer`` gets its sequence, or why the bus did not take it."""

    subject: str
    data: bytes
    answer: Handoff[int | Exception] = attrs.field(factory=Handoff)


def agent_subject(stream: str, agent_id: str) -> str:
    """The subject of an agent's reports. The id is base64url-encoded: agent ids
    may hold dots, spaces or wildcards that a subject token may not."""
    token = base64.urlsafe_b64encode(agent_id.encode()).decode().rstrip("=")
    return f"{stream}.{token}"


class ReportBus:
    """A connection to the bus for one process. State on the asyncio side
    (``_nc``, ``_reader``) is touched only by coroutines run in that thread."""

    def __init__(self, url: str, stream: str, retention: float, thread: AsyncioThread,
                 max_bytes: int = 8 * 1024**3) -> None:
        self.url = url
        self.stream = stream
        self.retention = retention
        self.max_bytes = max_bytes
        self.thread = thread
        self.progress = BusProgress()
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None
        self._reader: StreamReader | None = None
        self._said_unreachable = False
        self._closing = False
        self._outbox: list[_Outgoing] = []
        self._outbox_filled = trio.Event()
        self._published: dict[bytes, Envelope] = {}
        """Reports published here, by their envelope's bytes, until the feed reads
        them back: kept before the publish, since with the stream read ahead a
        report often comes back before its acknowledgement does."""
        self.ready = trio.Event()
        """Set once connected and the stream exists."""

    # ---- connecting (run from Trio) -----------------------------------------------

    async def keep_connecting(self) -> None:
        """Connect, retrying every ``RECONNECT_WAIT`` until it succeeds (then nats-py reconnects by itself)."""
        attempts = 0
        while True:
            try:
                await self.thread.run(self._connect)
            except Exception as exc:  # noqa: BLE001  # any failure to reach the bus is retried, and said once
                attempts += 1
                if attempts == 1 and not self._said_unreachable:
                    self._said_unreachable = True
                    log.warning("cannot reach the bus at %s: %s; retrying every %g s", self.url, str(exc) or type(exc).__name__,
                                RECONNECT_WAIT, extra={"event": "bus_unreachable"})
                await trio.sleep(RECONNECT_WAIT)
                continue
            self.progress.connected = True
            self._said_unreachable = False
            log.info("connected to the bus at %s (stream %s)", self.url, self.stream,
                     extra={"event": "bus_connected", "stream": self.stream})
            self.ready.set()
            return

    async def _connect(self) -> None:
        async def disconnected() -> None:
            self.progress.connected = False
            if self._closing:  # our own close: nothing lost, nothing to do
                log.debug("disconnected from the bus at %s", self.url)
                return
            log.warning("lost the bus at %s; reconnecting", self.url, extra={"event": "bus_disconnected"})

        async def reconnected() -> None:
            self._said_unreachable = False
            self.progress.connected = True
            self.progress.reconnects += 1
            if self._reader is not None:
                self._reader.invalidate()  # the server may have dropped our consumer meanwhile
            log.info("reconnected to the bus at %s", self.url, extra={"event": "bus_reconnected"})

        async def error(exc: Exception) -> None:
            # nats-py retries by itself (also the first connection): said once an outage.
            if not self._said_unreachable:
                self._said_unreachable = True
                log.warning("cannot reach the bus at %s: %s; retrying every %g s", self.url,
                            str(exc) or type(exc).__name__, RECONNECT_WAIT, extra={"event": "bus_unreachable"})
            else:
                log.debug("bus: %s", exc)

        nc = await nats.connect(self.url.split(","), connect_timeout=CONNECT_TIMEOUT, allow_reconnect=True,
                                reconnect_time_wait=RECONNECT_WAIT, max_reconnect_attempts=-1,
                                ping_interval=PING_INTERVAL, max_outstanding_pings=MAX_OUTSTANDING_PINGS,
                                disconnected_cb=disconnected, reconnected_cb=reconnected, error_cb=error,
                                name="trioscope")
        try:
            js = nc.jetstream(timeout=PUBLISH_TIMEOUT)
            config = StreamConfig(name=self.stream, subjects=[f"{self.stream}.>"], max_age=self.retention,
                                  max_bytes=self.max_bytes,
                                  storage=StorageType.FILE, discard=DiscardPolicy.OLD)
            try:
                await js.add_stream(config)
            except nats.js.errors.BadRequestError:
                await js.update_stream(config)  # exists with other limits (max_data_age changed)
        except BaseException:
            await nc.close()
            raise
        self._nc, self._js = nc, js
        self._reader = StreamReader(js, self.stream)

    async def close(self) -> None:
        if self._nc is not None:
            await self.thread.run(self._close)

    async def _close(self) -> None:
        self._closing = True
        if self._reader is not None:
            await self._reader.close()
        if self._nc is not None:
            await self._nc.close()

    # ---- publishing -------------------------------------------------------------

    async def publish_report(self, report: Report, received_at: float, enrolled: bool,
                             data: bytes, packed: PackedReport, shape: bytes | None = None,
                             address: str | None = None) -> int:
        """``publish`` a report's envelope (``pack_report``), kept decoded for
        this process's feed, which would otherwise decode it again."""
        if len(self._published) >= PUBLISHED_KEPT:
            del self._published[next(iter(self._published))]  # expired from the stream before the feed read it
        self._published[data] = Envelope(report, received_at, enrolled, packed, shape, address)
        try:
            return await self.publish(report.agent_id, data)
        except BaseException:
            self._published.pop(data, None)
            raise

    def published_here(self, data: bytes) -> Envelope | None:
        """The decoded report of an envelope this process published (once)."""
        return self._published.pop(data, None)

    async def publish(self, agent_id: str, data: bytes) -> int:
        """Put a report on the stream; its sequence once JetStream has it.

        Reports published meanwhile by other requests go over to the asyncio
        loop with it in one crossing (``send_outbox``): each crossing wakes
        both threads, which cost more than the publish itself.

        Raises:
            BusUnavailable: not connected, or no acknowledgement within ``PUBLISH_TIMEOUT``.
            ReportTooLarge: the envelope is over the server's ``max_payload``
                (nats-py refuses it as ``MaxPayloadError``: no use resending).
        """
        if not self.progress.connected:
            raise BusUnavailable("not connected to the bus")
        self.check_fits(data)
        outgoing = _Outgoing(agent_subject(self.stream, agent_id), data)
        self._outbox.append(outgoing)
        self._outbox_filled.set()
        try:
            answer = await outgoing.answer.receive()
        except trio.EndOfChannel:
            raise BusUnavailable("the bus is closing") from None
        finally:
            # A request that goes away leaves its report to be published all the same (it may be on the stream
            # already): the client, who had no 202, sends it again, and a report merged twice changes nothing.
            outgoing.answer.close()
        if isinstance(answer, nats.errors.MaxPayloadError):  # the server's limit fell since it was read
            raise ReportTooLarge(len(data) + self._headers_size, self.max_payload or 0)
        if isinstance(answer, (nats.errors.Error, nats.js.errors.Error, TimeoutError)):
            raise BusUnavailable(str(answer) or type(answer).__name__)
        if isinstance(answer, Exception):
            raise answer
        return answer

    @property
    def max_payload(self) -> int | None:
        """The most bytes the NATS server takes in one message, headers included
        (its ``max_payload``, 1 MiB unless configured; as it said when this
        connection was made), None before the first connection."""
        nc = self._nc
        return None if nc is None else int(nc.max_payload)

    def check_fits(self, data: bytes) -> None:
        """Raise ``ReportTooLarge`` if the NATS server would refuse ``data`` as
        one message (over its ``max_payload``, with the headers it is
        published with). nats-py checks the payload alone, and the server
        answers a message over the limit by closing the connection."""
        size, limit = len(data) + self._headers_size, self.max_payload
        if limit is not None and size > limit:
            raise ReportTooLarge(size, limit)

    @property
    def _headers_size(self) -> int:
        """The bytes of the headers a report is published with (JetStream's
        expected stream, ``_publish``), which count in ``max_payload``."""
        return len(f"NATS/1.0\r\nNats-Expected-Stream: {self.stream}\r\n\r\n".encode())

    async def send_outbox(self) -> None:
        """Hand what ``publish`` queued to the asyncio loop, everything queued
        by then in one crossing, until cancelled (then every report still
        waiting is answered: none waits forever)."""
        try:
            async with trio.open_nursery() as nursery:
                while True:
                    await self._outbox_filled.wait()
                    self._outbox_filled = trio.Event()
                    batch, self._outbox = self._outbox, []
                    nursery.start_soon(self._send, batch)
        finally:
            for outgoing in self._outbox:
                outgoing.answer.end()
            self._outbox = []

    async def _send(self, batch: list[_Outgoing]) -> None:
        try:
            answers = await self.thread.run(lambda: self._publish(batch))
        except trio.Cancelled:
            for outgoing in batch:
                outgoing.answer.end()
            raise
        except Exception as exc:  # noqa: BLE001  # this batch's failure, not the sender's: each publish raises it
            answers = [exc] * len(batch)
        for outgoing, answer in zip(batch, answers, strict=True):
            outgoing.answer.give(answer)

    async def _publish(self, batch: list[_Outgoing]) -> list[int | Exception]:
        """Each report's sequence, or why the bus did not take it (JetStream
        acknowledges each one; their publishes overlap)."""
        js, nc = self._js, self._nc
        if js is None or nc is None or not nc.is_connected:
            return [nats.errors.ConnectionReconnectingError()] * len(batch)

        async def one(outgoing: _Outgoing) -> int | Exception:
            try:
                ack = await js.publish(outgoing.subject, outgoing.data, stream=self.stream)
            except Exception as exc:  # noqa: BLE001  # the report's own answer (BusUnavailable for nats' errors)
                return exc
            return int(ack.seq)

        return list(await asyncio.gather(*map(one, batch)))

    # ---- reading ----------------------------------------------------------------

    async def fetch(self, after: int) -> list[Fetched]:
        """The reports after sequence ``after`` read so far (read ahead in the
        asyncio thread; none if none came within ``FETCH_WAIT``), in one
        crossing; ``progress.pending`` is updated.

        Raises:
            BusUnavailable: the bus cannot be read now (the caller tries again).
        """
        reader = self._reader
        assert reader is not None
        try:
            fetched, pending = await self.thread.run(lambda: reader.take(after))
        except (nats.errors.Error, nats.js.errors.Error, TimeoutError) as exc:
            raise BusUnavailable(str(exc) or type(exc).__name__) from None
        finally:
            self.progress.consumer_restarts = reader.consumer_restarts
        self.progress.pending = pending
        return fetched

    # ---- administration (tests) -------------------------------------------------

    async def delete_stream(self) -> None:
        await self.thread.run(self._delete_stream)

    async def _delete_stream(self) -> Any:
        assert self._js is not None
        return await self._js.delete_stream(self.stream)


def retention(settings: Settings) -> float:
    """How long the stream keeps a report (see the module docstring)."""
    return max(settings.storage.max_data_age, settings.agents.stale_threshold)


@asynccontextmanager
async def open_report_bus(settings: Settings) -> AsyncIterator[ReportBus | None]:
    """The process's bus (None without ``bus.url``): its thread runs, and it is
    being connected in the background, until the block ends."""
    if not settings.bus.url:
        yield None
        return
    thread = AsyncioThread(name="nats")
    thread.start()
    bus = ReportBus(settings.bus.url, settings.bus.stream, retention(settings), thread, settings.bus.max_bytes)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(bus.keep_connecting)
            nursery.start_soon(bus.send_outbox)
            yield bus
            nursery.cancel_scope.cancel()
    finally:
        with trio.CancelScope(shield=True), trio.move_on_after(2.0):
            await bus.close()
        thread.stop()

