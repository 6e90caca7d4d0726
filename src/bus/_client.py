"""The report stream on NATS JetStream, for Trio code.

One stream (``bus.stream``) with a subject per agent, ``<stream>.<agent>``,
keeps every report for ``max(max_data_age, stale_threshold)``: the metric
history window, and so each agent's newest report for as long as the topology
would show it (a node not heard from for ``stale_threshold`` is removed anyway).
A replica publishes a report and answers 202 once JetStream acknowledged it
(``publish``); every replica reads the stream from its start (``fetch``) with an
ephemeral pull consumer of its own, which it recreates from where it was after
a reconnection.

nats-py runs on asyncio: it runs in an ``AsyncioThread`` and every call here
crosses into that loop and back. nats-py reconnects by itself once connected;
the first connection is retried here until it succeeds.
"""

from __future__ import annotations

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
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, DiscardPolicy, StorageType, StreamConfig

from trioscope.config import Settings

from trioscope.domain.agents import PackedReport
from trioscope.wire import Report

from ._envelope import Envelope
from ._lag import BusProgress
from ._loop import AsyncioThread

log = logging.getLogger(__name__)

PUBLISH_TIMEOUT = 5.0
"""Seconds a report waits for JetStream's acknowledgement before it is answered 503."""
CONNECT_TIMEOUT = 2.0
RECONNECT_WAIT = 1.0
"""Seconds between two attempts to reach the bus (first connection and nats-py's reconnections)."""
CONSUMER_IDLE = 60.0
"""Seconds the server keeps a replica's consumer while nobody reads it (a replica that died)."""
PUBLISHED_KEPT = 4096
"""Reports published here kept decoded for the feed at most (one the feed read
before the acknowledgement came back is not kept: it was decoded then)."""
FETCH_BATCH = 256
FETCH_WAIT = 0.5
"""Seconds one fetch waits for a report when none is pending."""
IDLE_CHECKS = 2
"""Empty fetches in a row after which the stream is asked whether reports are
waiting that our consumer does not deliver (the server dropped it)."""


class BusUnavailable(Exception):
    """The bus did not take a report (not connected, or no acknowledgement in time)."""


@attrs.frozen
class Fetched:
    sequence: int
    data: bytes


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
        self._reader: JetStreamContext.PullSubscription | None = None
        self._reader_from = 1
        self._stale_reader = True
        self._timeouts = 0
        self._said_unreachable = False
        self._published: dict[int, Envelope] = {}
        """Reports published here, by sequence, until the feed reads them back."""
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
            log.warning("lost the bus at %s; reconnecting", self.url, extra={"event": "bus_disconnected"})

        async def reconnected() -> None:
            self._said_unreachable = False
            self.progress.connected = True
            self.progress.reconnects += 1
            self._stale_reader = True  # the server may have dropped our consumer meanwhile
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

    async def close(self) -> None:
        if self._nc is not None:
            await self.thread.run(self._close)

    async def _close(self) -> None:
        if self._nc is not None:
            await self._nc.close()

    # ---- publishing -------------------------------------------------------------

    async def publish_report(self, report: Report, received_at: float, enrolled: bool,
                             data: bytes, packed: PackedReport) -> int:
        """``publish`` a report's envelope (``pack_report``), kept decoded for
        this process's feed, which would otherwise decode it again."""
        sequence = await self.publish(report.agent_id, data)
        if sequence > self.progress.merged and len(self._published) < PUBLISHED_KEPT:
            self._published[sequence] = Envelope(report, received_at, enrolled, packed)
        return sequence

    def published_here(self, sequence: int) -> Envelope | None:
        """The report of ``sequence`` if this process published it (once). The
        feed reads in order: any kept of an earlier sequence came back while
        the feed was handing on a later one (it was decoded then) and goes."""
        found = self._published.pop(sequence, None)
        while self._published:
            oldest = next(iter(self._published))
            if oldest > sequence:
                break
            del self._published[oldest]
        return found

    async def publish(self, agent_id: str, data: bytes) -> int:
        """Put a report on the stream; its sequence once JetStream has it.

        Raises:
            BusUnavailable: not connected, or no acknowledgement within ``PUBLISH_TIMEOUT``.
        """
        if not self.progress.connected:
            raise BusUnavailable("not connected to the bus")
        subject = agent_subject(self.stream, agent_id)
        try:
            return await self.thread.run(lambda: self._publish(subject, data))
        except (nats.errors.Error, nats.js.errors.Error, TimeoutError) as exc:
            raise BusUnavailable(str(exc) or type(exc).__name__) from None

    async def _publish(self, subject: str, data: bytes) -> int:
        assert self._js is not None
        if self._nc is None or not self._nc.is_connected:
            raise nats.errors.ConnectionReconnectingError()
        ack = await self._js.publish(subject, data, stream=self.stream)
        return int(ack.seq)

    # ---- reading ----------------------------------------------------------------

    async def fetch(self, after: int) -> list[Fetched]:
        """The reports after sequence ``after`` (up to ``FETCH_BATCH``; none if
        none came within ``FETCH_WAIT``); ``progress.pending`` is updated.

        Raises:
            BusUnavailable: the bus cannot be read now (the caller tries again).
        """
        try:
            fetched, pending = await self.thread.run(lambda: self._fetch(after))
        except (nats.errors.Error, nats.js.errors.Error, TimeoutError) as exc:
            raise BusUnavailable(str(exc) or type(exc).__name__) from None
        self.progress.pending = pending
        return fetched

    async def _fetch(self, after: int) -> tuple[list[Fetched], int]:
        assert self._js is not None
        if self._reader is None or self._stale_reader or self._reader_from != after + 1:
            await self._open_reader(after + 1)
        assert self._reader is not None
        try:
            # One report, as soon as there is one; then as many as the server
            # said were pending behind it, which are there: a fetch of more
            # than are pending would wait its whole timeout for the rest.
            messages = await self._reader.fetch(1, timeout=FETCH_WAIT)
            behind = int(messages[-1].metadata.num_pending)
            if behind:
                try:
                    messages += await self._reader.fetch(min(behind, FETCH_BATCH - 1), timeout=FETCH_WAIT)
                except nats.errors.TimeoutError:
                    pass  # expired meanwhile (max_age): the one we have is ours
        except BaseException as exc:
            if not isinstance(exc, nats.errors.TimeoutError):
                # What the consumer delivered before the failure is not handed
                # on: the next fetch reads again from after ``after``.
                self._stale_reader = True
                raise
            self._timeouts += 1
            if self._timeouts % IDLE_CHECKS:
                return [], 0
            # Nothing came: either nothing is pending, or our consumer is gone
            # (the server dropped it while we were away).
            info = await self._js.stream_info(self.stream)
            last = int(info.state.last_seq)
            if last > after and int(info.state.messages) > 0 and int(info.state.first_seq) <= last:
                self._stale_reader = True
                return [], last - after
            return [], 0
        out: list[Fetched] = []
        pending = 0
        for message in messages:
            metadata = message.metadata
            out.append(Fetched(int(metadata.sequence.stream), message.data))
            pending = int(metadata.num_pending)
        if out:
            self._reader_from = out[-1].sequence + 1
        return out, pending

    async def _open_reader(self, start: int) -> None:
        assert self._js is not None
        if self._reader is not None:
            try:
                await self._reader.unsubscribe()
            except nats.errors.Error:
                pass  # the old one is gone with the old connection
            self.progress.consumer_restarts += 1
        config = ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=max(1, start),
                                ack_policy=AckPolicy.NONE, inactive_threshold=CONSUMER_IDLE, mem_storage=True)
        self._reader = await self._js.pull_subscribe(f"{self.stream}.>", stream=self.stream, config=config)
        self._reader_from = start
        self._stale_reader = False

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
            yield bus
            nursery.cancel_scope.cancel()
    finally:
        with trio.CancelScope(shield=True), trio.move_on_after(2.0):
            await bus.close()
        thread.stop()
