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
import contextlib
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

from trioscope.config import Settings, format_duration
from trioscope.config import hide_passwords, mask_passwords

from trioscope.domain.agents import PackedReport
from trioscope.domain.rates import Lull, Outage
from trioscope.runtime import Handoff
from trioscope.wire import Report

from ._envelope import DEFAULT_UNPACKED, Envelope, unpacked_limit
from ._errors import BusUnavailable, ReportTooLarge
from ._lag import BusProgress
from ._loop import AsyncioThread
from ._reader import Fetched, StreamReader
from ._tls import PlaintextRefused, TlsOnlyClient

log = logging.getLogger(__name__)

JS_MESSAGE_TOO_LARGE = 10054
"""JetStream's error code for a message over its stream's ``max_msg_size``."""
REFUSALS_SAID_EVERY = 60.0
"""Seconds between two log lines of the bus refusing reports."""

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
STREAM_CHECKS = 30
"""Attempts, ``RECONNECT_WAIT`` apart, to make sure the stream is on the bus
after a reconnection (a server that just started may not answer at once)."""
LIMIT_SLACK = 0.001
"""Limits closer than this are the same (the server keeps ``max_age`` in nanoseconds)."""
SUBJECTS_OVERLAP = 10065
"""JetStream's error code for a stream whose subjects overlap another stream's."""
PUBLISHED_KEPT = 4096
"""Reports published here kept decoded for the feed at most (more are read
back from the stream like anyone else's)."""


def _login_refused(exc: BaseException) -> bool:
    """Whether the NATS server refused the connection's credentials (none,
    or wrong): nats-py raises its ``AuthorizationError``, or passes the
    server's ``-ERR 'Authorization Violation'`` on as a plain error."""
    return isinstance(exc, nats.errors.AuthorizationError) or "authorization violation" in str(exc).lower()


class _NoJetStream(Exception):
    """The NATS server answered, but not its JetStream API: it runs without ``-js``."""


class _StreamUnusable(Exception):
    """The stream cannot be this replica's report stream: another stream
    already takes its subjects, a stream of its name takes other subjects, or
    the server refused to make it. The message names the stream, its subjects
    and what to do; retrying changes nothing until the operator does."""


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
                 max_bytes: int = 8 * 1024**3, *, retention_key: str = "storage.max_data_age",
                 max_unpacked: int = DEFAULT_UNPACKED) -> None:
        """``retention_key``: the setting ``retention`` comes from, named when the stream keeps another;
        ``max_unpacked``: the longest wire JSON a report read back may unpack to (``unpacked_limit``
        of ``server.max_body_size``)."""
        self.url = url
        self.shown_url = mask_passwords(url)
        """``url`` as logged and put in errors: its passwords masked."""
        self.stream = stream
        self.retention = retention
        self.retention_key = retention_key
        self.max_bytes = max_bytes
        self.max_unpacked = max_unpacked
        self.thread = thread
        self.progress = BusProgress()
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None
        self._reader: StreamReader | None = None
        self._outage = Outage()
        """The failures to connect said (each kind once, until connected again)."""
        self._closing = False
        self._checking: asyncio.Task[None] | None = None
        """A check that the stream exists (``_check_stream``) under way, on the asyncio loop."""
        self._outbox: list[_Outgoing] = []
        self._outbox_filled = trio.Event()
        self._published: dict[bytes, Envelope] = {}
        """Reports published here, by their envelope's bytes, until the feed reads
        them back: kept before the publish, since with the stream read ahead a
        report often comes back before its acknowledgement does."""
        self.ready = trio.Event()
        """Set once connected and the stream exists."""
        self._refusals_said = Lull(REFUSALS_SAID_EVERY)

    # ---- connecting (run from Trio) -----------------------------------------------

    async def keep_connecting(self) -> None:
        """Connect, retrying every ``RECONNECT_WAIT`` until it succeeds (then nats-py reconnects by itself)."""
        while True:
            try:
                await self.thread.run(self._connect)
            except Exception as exc:  # noqa: BLE001  # any failure to reach the bus is retried, and said once
                # Said once for each kind of failure, not at every attempt.
                kind = ("no_jetstream" if isinstance(exc, _NoJetStream)
                        else "stream_unusable" if isinstance(exc, _StreamUnusable)
                        else "login_refused" if _login_refused(exc) else "unreachable")
                if self._outage.changed(kind):  # nats-py's error callback may have said it first
                    if kind == "login_refused":
                        self._say_login_refused(exc)
                    elif isinstance(exc, _NoJetStream):
                        log.error("JetStream is not enabled on the NATS server at %s (start nats-server with -js); "
                                  "retrying every %g s", self.shown_url, RECONNECT_WAIT,
                                  extra={"event": "bus_no_jetstream"})
                    elif isinstance(exc, _StreamUnusable):
                        log.error("%s; retrying every %g s", exc, RECONNECT_WAIT,
                                  extra={"event": "bus_stream_unusable", "stream": self.stream})
                    else:
                        log.warning("cannot reach the bus at %s: %s; retrying every %g s", self.shown_url,
                                    self._masked(str(exc) or type(exc).__name__), RECONNECT_WAIT,
                                    extra={"event": "bus_unreachable"})
                else:
                    log.debug("bus: connecting failed again (%s)", kind)
                await trio.sleep(RECONNECT_WAIT)
                continue
            self.progress.connected = True
            self._outage.over()
            log.info("connected to the bus at %s (stream %s)", self.shown_url, self.stream,
                     extra={"event": "bus_connected", "stream": self.stream})
            self.ready.set()
            return

    def _say_login_refused(self, exc: Exception) -> None:
        log.error("the bus at %s refused this replica's login (%s): check the user and password, or the token, "
                  "in bus.url (--bus); retrying every %g s", self.shown_url, self._masked(str(exc)), RECONNECT_WAIT,
                  extra={"event": "bus_login_refused"})

    def _masked(self, text: str) -> str:
        """``text`` (an error's) without the URLs' passwords and tokens, should it quote them."""
        for server in self.url.split(","):
            text = hide_passwords(text, server.strip(), user_is_token=True)
        return text

    def _stream_config(self, max_age: float | None = None, max_bytes: int | None = None) -> StreamConfig:
        return StreamConfig(name=self.stream, subjects=[self._subjects],
                            max_age=self.retention if max_age is None else max_age,
                            max_bytes=self.max_bytes if max_bytes is None else max_bytes,
                            storage=StorageType.FILE, discard=DiscardPolicy.OLD)

    async def _connect(self) -> None:
        abandoned = False
        """Set when this attempt closes its own connection (the stream could not be
        made): that close is no lost bus."""

        async def disconnected() -> None:
            self.progress.connected = False
            if self._closing or abandoned:  # our own close: nothing lost, nothing to do
                log.debug("disconnected from the bus at %s", self.shown_url)
                return
            log.warning("lost the bus at %s; reconnecting", self.shown_url, extra={"event": "bus_disconnected"})

        async def reconnected() -> None:
            self._outage.over()
            self.progress.connected = True
            self.progress.reconnects += 1
            self.progress.pending_unknown()  # the stream may have moved on, or gone, meanwhile
            if self._reader is not None:
                self._reader.invalidate()  # the server may have dropped our consumer meanwhile
            log.info("reconnected to the bus at %s", self.shown_url, extra={"event": "bus_reconnected"})
            # The server may have come back without the stream (its store emptied):
            # checked in a task of its own, since nats-py awaits this callback in
            # its reconnection, which a failure here would undo.
            self._check_stream()

        async def error(exc: Exception) -> None:
            # nats-py retries by itself (also the first connection): said once an outage.
            if isinstance(exc, PlaintextRefused):
                if self._outage.changed("plaintext"):
                    log.error("refusing the bus at %s: %s; check that the NATS server is configured for TLS "
                              "(its tls block, or --tls/--tlscert/--tlskey) or use a nats:// URL knowingly; "
                              "retrying every %g s", self.shown_url, exc, RECONNECT_WAIT,
                              extra={"event": "bus_tls_refused"})
                return
            if _login_refused(exc):
                if self._outage.changed("login_refused"):
                    self._say_login_refused(exc)
                else:
                    log.debug("bus: %s", self._masked(str(exc)))
                return
            if self._outage.first("unreachable"):  # not again after any other word of this outage
                log.warning("cannot reach the bus at %s: %s; retrying every %g s", self.shown_url,
                            self._masked(str(exc) or type(exc).__name__), RECONNECT_WAIT,
                            extra={"event": "bus_unreachable"})
            else:
                log.debug("bus: %s", self._masked(str(exc)))

        # A tls:// server that does not do TLS is refused before CONNECT (its credentials): ``TlsOnlyClient``.
        # Seconds as floats: nats-py annotates them as int (``nats.connect``, which takes any, did not say),
        # and uses them where floats are meant (asyncio.wait_for, asyncio.sleep).
        seconds: dict[str, Any] = {"connect_timeout": CONNECT_TIMEOUT, "reconnect_time_wait": RECONNECT_WAIT,
                                   "ping_interval": PING_INTERVAL}
        nc = TlsOnlyClient()
        await nc.connect(self.url.split(","), allow_reconnect=True, max_reconnect_attempts=-1,
                         max_outstanding_pings=MAX_OUTSTANDING_PINGS, disconnected_cb=disconnected,
                         reconnected_cb=reconnected, error_cb=error, name="trioscope", **seconds)
        try:
            js = nc.jetstream(timeout=PUBLISH_TIMEOUT)
            try:
                await self._make_stream(js, first=True)
            except nats.js.errors.ServiceUnavailableError as exc:
                if exc.code is None:  # no responder on the JetStream API at all
                    raise _NoJetStream() from None
                raise
        except BaseException:
            abandoned = True
            with contextlib.suppress(Exception):
                await nc.close()
            raise
        self._nc, self._js = nc, js
        self._reader = StreamReader(js, self.stream)

    async def _make_stream(self, js: JetStreamContext, *, first: bool) -> bool:
        """Create the stream, or, if it exists with other limits, lengthen
        them to this replica's where they are shorter (``_kept_limits``);
        whether it was created here. ``first``: at this process's first
        connection (a replica whose settings are shorter than the stream's
        says so once, not at every check).

        Raises:
            nats.js.errors.ServiceUnavailableError: no JetStream on the server.
            _StreamUnusable: another stream takes the subjects, or the stream
                of this name takes others (the reader could not read it).
        """
        config = self._stream_config()
        try:
            info = await js.stream_info(self.stream)
        except nats.js.errors.NotFoundError:
            try:
                made = await js.add_stream(config)
                # JetStream answers the creation of a stream that exists as it
                # is with success: replicas that found it gone at once each
                # said they made it. It says which call did (``did_create``)
                # from nats-server 2.10; an older one is taken at its answer.
                return made.did_create is not False
            except nats.js.errors.BadRequestError as exc:
                try:
                    info = await js.stream_info(self.stream)  # made meanwhile by another replica, with other limits
                except nats.js.errors.NotFoundError:
                    raise await self._overlap(js, exc) from None
        subjects = list(info.config.subjects or [])
        if not any(_covers(subject, self._subjects) for subject in subjects):
            raise _StreamUnusable(
                f"the NATS server at {self.shown_url} has a stream {self.stream} with the subjects "
                f"{', '.join(subjects) or '(none)'}, not {self._subjects}: it is no report stream of trioscope's, "
                f"and its reports could not be read (set bus.stream to another name, or remove that stream if "
                f"it is not used: nats stream rm {self.stream})")
        old_age, old_bytes = float(info.config.max_age or 0), int(info.config.max_bytes or -1)
        age, size = _kept_limits(old_age, old_bytes, self.retention, self.max_bytes)
        if (age, size) != (old_age, old_bytes):
            # Only ever lengthened: see ``_kept_limits``.
            await js.update_stream(self._stream_config(age, size))
            log.warning("the report stream %s kept reports for %s and up to %s bytes; now for %s and up to %s bytes "
                        "(this replica's %s and bus.max_bytes)", self.stream, _age(old_age), _size(old_bytes),
                        _age(age), _size(size), self.retention_key,
                        extra={"event": "bus_stream_lengthened", "stream": self.stream})
        if first and (_shorter(self.retention, old_age) or _shorter(self.max_bytes, old_bytes)):
            log.warning("this replica's %s and bus.max_bytes (keep reports %s, up to %s bytes) are shorter than "
                        "the report stream %s's (%s, up to %s bytes): the stream keeps its own, as every replica "
                        "reads it (shorten it by hand: nats stream edit %s --max-age/--max-bytes)",
                        self.retention_key, _age(self.retention), _size(self.max_bytes), self.stream, _age(age),
                        _size(size), self.stream, extra={"event": "bus_stream_longer", "stream": self.stream})
        return False

    @property
    def _subjects(self) -> str:
        """The subjects of the report stream (``agent_subject``)."""
        return f"{self.stream}.>"

    async def _overlap(self, js: JetStreamContext, exc: nats.js.errors.BadRequestError) -> _StreamUnusable:
        """Why the stream could not be made, when it is not there: mostly, its
        subjects overlap another stream's (JetStream error 10065), named if
        the server says which; else what the server said."""
        if exc.err_code != SUBJECTS_OVERLAP:
            return _StreamUnusable(
                f"cannot make the report stream {self.stream} with the subjects {self._subjects} on the NATS "
                f"server at {self.shown_url}: {exc.description or exc} (JetStream error {exc.err_code}); see "
                f"the server's limits and configuration")
        other = ""
        with contextlib.suppress(nats.errors.Error, nats.js.errors.Error, TimeoutError):
            other = f" (the stream {await js.find_stream_name_by_subject(self._subjects)})"
        return _StreamUnusable(
            f"cannot make the report stream {self.stream} with the subjects {self._subjects} on the NATS server "
            f"at {self.shown_url}: {exc.description or exc}; another stream{other} takes some of them (set "
            f"bus.stream to a name no other stream's subjects start with, or take {self._subjects} out of the "
            f"other stream's subjects)")

    def _check_stream(self) -> asyncio.Task[None]:
        """(On the asyncio loop.) Make sure the stream is on the bus, created
        again if it is gone (once logged, counted in ``progress.streams_created``):
        after a reconnection, and when a publish or a read finds no stream.
        One check at a time; the one under way if there is one."""
        if self._checking is None or self._checking.done():
            self._checking = asyncio.get_running_loop().create_task(self._recreate_stream(),
                                                                    name=f"check stream {self.stream}")
        return self._checking

    async def _recreate_stream(self) -> None:
        for attempt in range(STREAM_CHECKS):
            js, nc = self._js, self._nc
            if js is None or nc is None or self._closing:
                return
            if nc.is_connected:
                try:
                    created = await self._make_stream(js, first=False)
                except nats.js.errors.ServiceUnavailableError as exc:
                    if attempt == 0 and exc.code is None:
                        log.error("JetStream is not enabled on the NATS server at %s (start nats-server with -js)",
                                  self.shown_url, extra={"event": "bus_no_jetstream"})
                except _StreamUnusable as exc:
                    if attempt == 0:
                        log.error("%s", exc, extra={"event": "bus_stream_unusable", "stream": self.stream})
                except (nats.errors.Error, nats.js.errors.Error, OSError, TimeoutError) as exc:
                    log.debug("bus: checking the stream %s: %s", self.stream, self._masked(str(exc)))
                else:
                    if created:
                        self.progress.streams_created += 1
                        log.warning("the report stream %s was not on the bus at %s (its store emptied, or the stream "
                                    "deleted): created it again", self.stream, self.shown_url,
                                    extra={"event": "bus_stream_created", "stream": self.stream})
                    return
            await asyncio.sleep(RECONNECT_WAIT)

    async def close(self) -> None:
        """Close the connection.

        Error handling: a connection lost already may fail to close (nats-py
        flushes what it holds to a socket the server reset): nats' and the
        socket's errors are logged at debug and swallowed, as there is nothing
        left to close; the process stops cleanly either way."""
        if self._nc is not None:
            try:
                await self.thread.run(self._close)
            except (nats.errors.Error, nats.js.errors.Error, OSError, TimeoutError) as exc:
                log.debug("bus: closing the connection: %s: %s", type(exc).__name__, self._masked(str(exc)))

    async def _close(self) -> None:
        self._closing = True
        if self._checking is not None:
            self._checking.cancel()
        if self._reader is not None:
            await self._reader.close()
        if self._nc is not None:
            await self._nc.close()

    # ---- publishing -------------------------------------------------------------

    async def publish_report(self, report: Report, received_at: float, enrolled: bool,
                             data: bytes, packed: PackedReport, shape: bytes | None = None,
                             address: str | None = None, signer: str | None = None,
                             scope: str | None = None) -> int:
        """``publish`` a report's envelope (``pack_report``), kept decoded for
        this process's feed, which would otherwise decode it again."""
        if len(self._published) >= PUBLISHED_KEPT:
            del self._published[next(iter(self._published))]  # expired from the stream before the feed read it
        self._published[data] = Envelope(report, received_at, enrolled, packed, shape, address, signer, scope)
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
        if isinstance(answer, nats.js.errors.APIError) and answer.err_code == JS_MESSAGE_TOO_LARGE:
            # The stream's own limit (max_msg_size): a report sent again is refused again.
            raise ReportTooLarge(len(data) + self._headers_size, None, self.stream)
        if isinstance(answer, (nats.errors.Error, nats.js.errors.Error, TimeoutError)):
            reason = self._masked(str(answer) or type(answer).__name__)
            # Every report is refused while it lasts (a full stream, no acknowledgement):
            # said once a minute, with how many, not by the clients' 503s alone.
            unsaid = self._refusals_said.due(trio.current_time())
            if unsaid is not None:
                log.warning("the report bus refused a report: %s (%d more refused since this was last said)",
                            reason, unsaid, extra={"event": "bus_publish_refused"})
            raise BusUnavailable(reason)
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
            except nats.js.errors.NoStreamResponseError as exc:
                # No stream on the bus (its server restarted with an empty store):
                # made again, then this report published once more.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(self._check_stream()), PUBLISH_TIMEOUT)
                try:
                    ack = await js.publish(outgoing.subject, outgoing.data, stream=self.stream)
                except Exception:  # noqa: BLE001  # the report's own answer, as below
                    return exc
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
        async def take() -> tuple[list[Fetched], int]:
            try:
                return await reader.take(after)
            except (nats.js.errors.NotFoundError, nats.js.errors.NoStreamResponseError):
                self._check_stream()  # the stream is gone from the bus: made again (the reader reads it anew)
                raise

        try:
            fetched, pending = await self.thread.run(take)
        except (nats.errors.Error, nats.js.errors.Error, TimeoutError) as exc:
            self.progress.pending_unknown()  # how far behind is known again from the next read that says
            raise BusUnavailable(self._masked(str(exc) or type(exc).__name__)) from None
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


def retention_key(settings: Settings) -> str:
    """The setting ``retention`` comes from."""
    if settings.agents.stale_threshold > settings.storage.max_data_age:
        return "agents.stale_threshold"
    return "storage.max_data_age"


def _kept_limits(old_age: float, old_bytes: int, age: float, size: int) -> tuple[float, int]:
    """The limits (``max_age`` in seconds, 0 for none; ``max_bytes``, -1 for
    none) an existing stream is given by a replica wanting ``age`` and
    ``size``: the longer of its own and the replica's, each.

    Never shorter: replicas started with different settings would otherwise
    set the shared stream back and forth, each one that starts (or
    reconnects) to its own, and every shortening drops at once the reports
    older than the new limit, for every replica (the metric history, and the
    newest report of agents that report rarely). Shortening the stream is
    the operator's to do, by hand.
    """
    return (_longer(old_age, age, unlimited=0.0), int(_longer(old_bytes, size, unlimited=-1)))


def _longer(old: float, new: float, *, unlimited: float) -> float:
    if old == unlimited or new == unlimited:
        return unlimited
    return new if new > old + LIMIT_SLACK else old


def _shorter(mine: float, stream: float) -> bool:
    """Whether a limit of this replica's keeps less than the stream's (``0``/``-1``: none)."""
    return stream <= 0 < mine or (0 < stream and 0 < mine and mine < stream - LIMIT_SLACK)


def _covers(pattern: str, subject: str) -> bool:
    """Whether the subject ``pattern`` takes every subject ``subject`` (itself
    a pattern) does, by NATS' wildcards: ``*`` one token, ``>`` the rest."""
    wanted = subject.split(".")
    for place, token in enumerate(pattern.split(".")):
        if token == ">":
            return place < len(wanted)
        if place >= len(wanted) or wanted[place] == ">" or token not in ("*", wanted[place]):
            return False
    return len(pattern.split(".")) == len(wanted)


def _age(seconds: float) -> str:
    return "ever" if seconds <= 0 else format_duration(seconds)


def _size(limit: float) -> str:
    return "unlimited" if limit < 0 else str(int(limit))


@asynccontextmanager
async def open_report_bus(settings: Settings) -> AsyncIterator[ReportBus | None]:
    """The process's bus (None without ``bus.url``): its thread runs, and it is
    being connected in the background, until the block ends."""
    if not settings.bus.url:
        yield None
        return
    thread = AsyncioThread(name="nats")
    thread.start()
    bus = ReportBus(settings.bus.url, settings.bus.stream, retention(settings), thread, settings.bus.max_bytes,
                    retention_key=retention_key(settings),
                    max_unpacked=unpacked_limit(settings.server.max_body_size))
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

