"""One actor per WebSocket client, under the ``/root/clients`` dynamic supervisor.

The actor decides what its client is sent; a writer task in the WebSocket handler
sends it. Between them is a small bounded outbox of frames (shared strings, so a
queue costs references): when it is full the client is *behind*, further updates
are dropped, and once there is room again it is sent a reset (the whole view) to
start over. A client behind for longer than ``slow_client_timeout`` is closed with
1008. No client can slow the hub or the other clients: the hub only ever tells.
"""

from __future__ import annotations

import logging
from typing import Any

import attrs
import trio

from trioscope.config import Settings
from trioscope.domain.live import (
    PING,
    PONG,
    BadClientMessage,
    Frame,
    Ping,
    Pong,
    Resync,
    Subscribe,
    Subscription,
    Unsubscribe,
    diff_frame,
    error_frame,
    parse_client_message,
    reset_frame,
    subscribe,
    unsubscribe,
)
from trioscope.domain.topology import View
from trioscope.runtime import Actor, ActorRef, ActorSpec, Restart

from .hub import Join, LiveUpdate, ReportUpdate

log = logging.getLogger(__name__)

POLICY_VIOLATION = 1008
MESSAGE_TOO_BIG = 1009
GOING_AWAY = 1001
INTERNAL_ERROR = 1011


@attrs.define
class LiveCounters:
    """Counters shared by all client actors (exported as Prometheus counters)."""

    sent: int = 0
    dropped: int = 0
    resets: int = 0
    slow_closes: int = 0


class ClientLink:
    """What the WebSocket handler and the client actor share: the outbox, and the
    close code once the actor (or the server) decides to close."""

    def __init__(self, buffer: int) -> None:
        self.outbox, self.frames = trio.open_memory_channel[Frame](buffer)
        self.buffer = buffer
        self.close_code: int | None = None
        self.close_reason = ""
        self.closed = trio.Event()

    def close(self, code: int, reason: str) -> None:
        if self.close_code is None:
            self.close_code, self.close_reason = code, reason
            self.closed.set()

    @property
    def queued(self) -> int:
        return self.outbox.statistics().current_buffer_used


@attrs.frozen
class FromClient:
    data: str | bytes


@attrs.frozen
class _Tick:
    pass


class ClientActor(Actor):
    def __init__(self, link: ClientLink, hub_path: str, view: View | None, settings: Settings,
                 counters: LiveCounters) -> None:
        self.link = link
        self.hub_path = hub_path
        self.settings = settings.websocket
        self.counters = counters
        self.subscription = Subscription(view=view)
        self.version = -1
        self.latest: LiveUpdate | None = None
        self.behind_since: float | None = None
        self.unanswered_pings = 0
        self.next_ping = 0.0

    async def on_start(self) -> None:
        hub: ActorRef = self.context.system.lookup(self.hub_path)
        self.latest = await hub.ask(Join(self.context.ref))
        self._reset()
        self.next_ping = trio.current_time() + self.settings.ping_interval
        self.context.start_soon(self._ticker)

    async def _ticker(self) -> None:
        # Often enough to notice a slow client or a missed pong in time.
        period = min(self.settings.ping_interval, self.settings.slow_client_timeout) / 4
        try:
            while True:
                await trio.sleep(period)
                self.context.ref.tell(_Tick())
        finally:
            # This incarnation is ending (a crash, or the socket went away): a
            # socket whose actor is gone must not stay open. A no-op if closed.
            self.link.close(INTERNAL_ERROR, "internal error")

    async def handle(self, message: Any) -> Any:
        if isinstance(message, LiveUpdate):
            self.latest = message
            if not self.subscription.topology:
                return None
            if self.behind_since is not None:
                self._catch_up()
            elif message.version <= self.version:
                pass  # joined at this version already
            elif message.diff is None or message.diff.previous_version != self.version:
                self._reset()  # a gap: start again from the snapshot
            else:
                frame = (message.frame(self.subscription.view) if self.subscription.shared
                         else _filtered_diff(message, self.subscription))
                self._send(frame, message.version)
        elif isinstance(message, ReportUpdate):
            if self.subscription.wants_report(message.agent_id) and self.behind_since is None:
                self._send(message.frame)
        elif isinstance(message, FromClient):
            self._from_client(message.data)
        elif isinstance(message, _Tick):
            self._tick()
        else:
            return await super().handle(message)
        return None

    def _from_client(self, data: str | bytes) -> None:
        try:
            request = parse_client_message(data)
        except BadClientMessage as exc:
            self._send(error_frame(exc.code, exc.message))
            return
        if isinstance(request, Ping):
            self._send(PONG)
        elif isinstance(request, Pong):
            self.unanswered_pings = 0
        elif isinstance(request, Resync):
            self._reset()
        elif isinstance(request, Subscribe):
            before = self.subscription
            try:
                self.subscription = subscribe(before, request)
            except BadClientMessage as exc:
                self._send(error_frame(exc.code, exc.message))
                return
            if (self.subscription.view, self.subscription.filter, self.subscription.topology) != (
                    before.view, before.filter, before.topology):
                self._reset()
        elif isinstance(request, Unsubscribe):
            self.subscription = unsubscribe(self.subscription, request)

    def _tick(self) -> None:
        now = trio.current_time()
        if self.behind_since is not None:
            if now - self.behind_since > self.settings.slow_client_timeout:
                self.counters.slow_closes += 1
                log.info("WebSocket client %s lagged for more than %ss: closing it", self.context.path,
                         int(self.settings.slow_client_timeout), extra={"event": "slow_client"})
                self.link.close(POLICY_VIOLATION, "too slow: lagged behind for too long")
                return
            self._catch_up()
        if now >= self.next_ping:
            if self.unanswered_pings >= 2:
                self.link.close(POLICY_VIOLATION, "no pong to two pings")
                return
            self.unanswered_pings += 1
            self.next_ping = now + self.settings.ping_interval
            self._send(PING)

    def _send(self, frame: Frame, version: int | None = None) -> bool:
        try:
            self.link.outbox.send_nowait(frame)
        except trio.WouldBlock:
            self.counters.dropped += 1
            if self.behind_since is None:
                self.behind_since = trio.current_time()
            return False
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            return False
        self.counters.sent += 1
        if version is not None:
            self.version = version
        return True

    def _catch_up(self) -> None:
        """Behind: once the outbox has drained to half, start over from a reset."""
        if self.link.queued <= self.link.buffer // 2:
            self.behind_since = None
            self._reset()

    def _reset(self) -> None:
        if self.latest is None or not self.subscription.topology:
            return
        sub = self.subscription
        frame = self.latest.reset(sub.view) if sub.shared else reset_frame(self.latest.snapshot, sub.view, sub.filter)
        if self._send(frame, self.latest.version):
            self.counters.resets += 1


def _filtered_diff(update: LiveUpdate, subscription: Subscription) -> Frame:
    assert update.diff is not None
    return diff_frame(update.diff, subscription.view, subscription.filter)


def client_spec(name: str, link: ClientLink, hub_path: str, view: View | None, settings: Settings,
                counters: LiveCounters) -> ActorSpec:
    """Temporary: a crashed client actor is not restarted; its socket closes (1011)
    and the browser reconnects."""
    return ActorSpec(
        name=name,
        factory=lambda: ClientActor(link, hub_path, view, settings, counters),
        restart=Restart.TEMPORARY,
        mailbox_size=256,
        shutdown_timeout=1.0,
    )

