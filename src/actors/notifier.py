"""Command-service events for users' WebSockets.

The notifier (``/root/notifier``) keeps which event-client actors watch which
tenant; queue and directory actors tell it what happened, encoded once as a
frame, and it tells each watcher. An event client (one per ``/ws/user`` socket,
under ``/root/clients``) passes on what its user may see into the socket's
bounded outbox.

Events cannot be merged or replaced by a newer state, as topology diffs are
by a reset: each must reach a client that reads, however many come at once
(an Alertmanager call of 300 alerts, 40 agents found offline in one
evaluation). So what does not fit in the outbox waits in the event client, in
order, and goes on as the socket's writer takes frames. Never without bound,
and never dropped unsaid: a client that takes no frame for
``websocket.slow_client_timeout`` while events wait for it, or with more than
``MAX_WAITING_BYTES`` of them waiting, is closed (1008) with a reason that
says events were lost, and so is one whose actor the notifier cannot reach
(its mailbox full). Its client reconnects and reads the current state. The
same goes for every socket when the notifier itself restarts (the event it
crashed on was told to nobody): its watchers outlive it (``Watchers``, kept
for its spec) so that it can close them, not leave them open and silent.

An event client pings its socket every ``websocket.ping_interval``, by the rule
of the other sockets (``domain.keepalive``): a client gone without a word is
let go once its pings went unacknowledged (``server.write_timeout``), and one
that answers pings once is held to answering them.
"""

from __future__ import annotations

import logging
from collections import defaultdict, deque
from collections.abc import Callable
from typing import Any

import attrs
import orjson
import trio

from trioscope.domain.keepalive import GONE, PING, PONG, Keepalive, is_ping, is_pong
from trioscope.runtime import Actor, ActorRef, ActorSpec, ActorStopped, MailboxFull, Restart

from .client import FromClient
from .client_link import INTERNAL_ERROR, POLICY_VIOLATION, ClientLink

log = logging.getLogger(__name__)

MAX_WAITING_BYTES = 4 * 1024 * 1024
"""Bytes of events (counted as characters of their JSON) that may wait for one
socket beyond its outbox. The frames are encoded once and shared by every
socket they go to: this bounds what one slow socket keeps alive (and the
references to it), not copies."""


@attrs.frozen
class Watch:
    """``client`` wants the events of ``tenant``; ``link``, its socket, is
    closed if an event cannot be handed to the actor (its mailbox full)."""

    tenant: str
    client: ActorRef
    link: ClientLink | None = None
    greet: bool = False
    """Tell ``client`` ``Watching`` once it is among the watchers: every event
    it is told after that comes after it in its mailbox."""


@attrs.frozen
class Watching:
    """The notifier counts the client among its watchers (``Watch.greet``)."""


@attrs.frozen
class Unwatch:
    tenant: str
    client: ActorRef


@attrs.frozen
class Publish:
    """An event of ``tenant`` about a deployment of ``owner`` (the user it
    belongs to); with no owner (a system alert), for every user of the tenant."""

    tenant: str
    owner: str | None
    event: dict[str, Any]


@attrs.frozen
class Notice:
    owner: str | None
    frame: str


Watchers = dict[str, dict[ActorRef, "ClientLink | None"]]
"""Tenant -> its event clients and their sockets."""

RESTARTED_REASON = "events may have been lost (the server restarted its event service); reconnect and read the current state"
"""The close reason of the sockets a restarted notifier had (within a close frame's 123 bytes)."""


class NotifierActor(Actor):
    def __init__(self, watchers: Watchers | None = None) -> None:
        """``watchers``: an earlier incarnation's (the spec's ``Kept``); None: its own."""
        self.watchers: Watchers = watchers if watchers is not None else defaultdict(dict)

    async def on_start(self) -> None:
        if not self.watchers:
            return
        # Restarted: an event may have died with the last incarnation (the one
        # it crashed on), so no watcher can be sure to have had every event.
        watchers = [(client, link) for clients in self.watchers.values() for client, link in clients.items()]
        self.watchers.clear()
        log.warning("notifier restarted: closing its %d event sockets, whose clients reconnect and read the "
                    "current state", len(watchers), extra={"event": "notifier_restarted"})
        for _client, link in watchers:
            if link is not None:  # (every event client's has one)
                link.close(POLICY_VIOLATION, RESTARTED_REASON)

    async def handle(self, message: Any) -> Any:
        if isinstance(message, Publish):
            watchers = self.watchers.get(message.tenant)
            if not watchers:
                return None
            notice = Notice(message.owner, orjson.dumps(message.event).decode())
            for client, link in list(watchers.items()):
                try:
                    client.tell(notice)
                except MailboxFull:
                    # Never waited for (one stuck client would hold up every
                    # other), never dropped unsaid: the client cannot have
                    # every event any more, so its socket says so and closes.
                    del watchers[client]
                    log.info("event client %s could not take an event (its mailbox is full): closing its socket",
                             client.path, extra={"event": "slow_client"})
                    if link is not None:
                        link.close(POLICY_VIOLATION, lost_events_reason(None))
                except ActorStopped:
                    del watchers[client]
            if not watchers:
                del self.watchers[message.tenant]
        elif isinstance(message, Watch):
            self.watchers[message.tenant][message.client] = message.link
            if message.greet:
                message.client.offer(Watching())  # dropped: gone already, or as good as; told nothing more either
        elif isinstance(message, Unwatch):
            watchers = self.watchers.get(message.tenant)
            if watchers is not None:
                watchers.pop(message.client, None)
                if not watchers:
                    del self.watchers[message.tenant]
        else:
            return await super().handle(message)
        return None


def publish(notifier: ActorRef | None, tenant: str, owner: str | None, event: dict[str, Any]) -> None:
    """Tell the notifier, never waiting: events are best-effort, state is in the store."""
    if notifier is None:
        return
    if not notifier.offer(Publish(tenant, owner, event)):
        log.warning("event dropped: the notifier is %s", "busy" if notifier.alive else "stopped")


def lost_events_reason(count: int | None) -> str:
    """The close reason of a socket that could not be given every event:
    what its client should do (well within a close frame's 123 bytes)."""
    lost = "events" if count is None else f"{count} events"
    return f"too slow: {lost} not delivered; reconnect and read the current state"


@attrs.frozen
class _Ping:
    """A ping is due (every ``websocket.ping_interval``)."""


@attrs.frozen
class _Room:
    """The writer took frames (``progressed``), or took none for ``stalled_after`` seconds."""

    progressed: bool


class EventClientActor(Actor):
    """One user's WebSocket: events of their tenant that they may see, every
    one in order, or the socket closed saying they were not (module docstring)."""

    def __init__(self, link: ClientLink, notifier_path: str, *, tenant: str, user_id: str, admin: bool,
                 stalled_after: float = 30.0, max_waiting_bytes: int = MAX_WAITING_BYTES,
                 first: Callable[[], str] | None = None, ping_interval: float = 30.0) -> None:
        """``stalled_after``: seconds the socket may take no frame while events
        wait for it (``websocket.slow_client_timeout``) before it is closed;
        ``ping_interval``: ``websocket.ping_interval`` (``domain.keepalive``:
        without pings, a client gone without a word held its places, its
        user's and its address's, until its token expired, since nothing was
        sent it while its tenant had no event);
        ``first``: makes the frame sent before any event (the seed's
        ``initial_state``), called once the notifier has this client among its
        watchers (``Watching``), so that a change is in it or among the events after it."""
        self.link = link
        self.first = first
        self.notifier_path = notifier_path
        self.tenant = tenant
        self.user_id = user_id
        self.admin = admin
        self.stalled_after = stalled_after
        self.max_waiting_bytes = max_waiting_bytes
        self.waiting: deque[str] = deque()
        """Frames that did not fit in the outbox, oldest first."""
        self.waiting_bytes = 0
        self.ping_interval = ping_interval
        self.keepalive = Keepalive()

    async def on_start(self) -> None:
        # However this incarnation ends, a socket whose actor is gone must not
        # stay open, taking no events. A no-op if it closed already.
        self.context.at_end(lambda: self.link.close(INTERNAL_ERROR, "internal error"))
        self.notifier: ActorRef = self.context.system.lookup(self.notifier_path)
        # Not asked: clients start one at a time, and a busy notifier would
        # hold up every socket's start. The first frame is made on ``Watching``.
        self.notifier.tell(Watch(self.tenant, self.context.ref, self.link, greet=self.first is not None))
        self.context.every(self.ping_interval, _Ping())
        self.room = self.context.waiting()
        """For the writer to take frames (``_room``)."""

    async def on_stop(self) -> None:
        self.notifier.offer(Unwatch(self.tenant, self.context.ref))

    async def handle(self, message: Any) -> Any:
        if self.link.closed.is_set() and isinstance(message, (Notice, FromClient, _Room, Watching, _Ping)):
            self.waiting.clear()  # nothing more reaches this socket
            self.waiting_bytes = 0
            return None
        if isinstance(message, Watching):
            if self.first is not None:  # every event after it comes after this in the mailbox
                first, self.first = self.first, None
                self._send(first())
        elif isinstance(message, Notice):
            if self.admin or message.owner is None or message.owner == self.user_id:
                self._send(message.frame)
        elif isinstance(message, FromClient):
            self.keepalive.heard()
            if is_ping(message.data):
                self._send(PONG)
            elif is_pong(message.data):
                self.keepalive.pong()
        elif isinstance(message, _Ping):
            if self.waiting:  # behind already: frames are in flight, and the slow-client rule judges it
                return None
            if not self.keepalive.ping():
                self.link.close(POLICY_VIOLATION, GONE)
                self.context.stop()
                return None
            self._send(PING)
        elif isinstance(message, _Room):
            self._refill()
            if self.waiting and not message.progressed:
                self._close_too_slow(f"took no event for {self.stalled_after:g}s")
        else:
            return await super().handle(message)
        return None

    def _send(self, frame: str) -> None:
        if not self.waiting:  # else behind those waiting: events keep their order
            try:
                self.link.outbox.send_nowait(frame)
                return
            except trio.WouldBlock:
                pass
        self.waiting.append(frame)
        self.waiting_bytes += len(frame)
        if self.waiting_bytes > self.max_waiting_bytes:
            self._close_too_slow(f"more than {self.max_waiting_bytes} bytes of events waiting")
            return
        self._watch_for_room()

    def _refill(self) -> None:
        """Move waiting frames to the outbox while it has room."""
        outbox, waiting = self.link.outbox, self.waiting
        while waiting:
            try:
                outbox.send_nowait(waiting[0])
            except trio.WouldBlock:
                break
            self.waiting_bytes -= len(waiting.popleft())
        if waiting:
            self._watch_for_room()

    def _watch_for_room(self) -> None:
        self.room.start(self._room, self.link.delivered)

    async def _room(self, delivered: int) -> _Room:
        """``_Room`` once the writer has taken the outbox down to half (room
        for a batch, not a wake per frame), or after ``stalled_after``, saying
        whether it took any frame meanwhile (a slow reader is not a stopped one)."""
        with trio.move_on_after(self.stalled_after):
            await self.link.when_drained(0).wait()
        return _Room(progressed=self.link.delivered > delivered)

    def _close_too_slow(self, why: str) -> None:
        lost = len(self.waiting) + self.link.queued
        log.info("event client %s is too slow (%s): closing it, %d events not delivered", self.context.path, why,
                 lost, extra={"event": "slow_client"})
        self.waiting.clear()
        self.waiting_bytes = 0
        self.link.close(POLICY_VIOLATION, lost_events_reason(lost))
        self.context.stop()


def event_client_spec(name: str, link: ClientLink, notifier_path: str, *, tenant: str, user_id: str,
                      admin: bool, stalled_after: float = 30.0, first: Callable[[], str] | None = None,
                      ping_interval: float = 30.0) -> ActorSpec:
    """``stalled_after``: ``websocket.slow_client_timeout``; ``first``: the frame
    sent before any event; ``ping_interval``: ``websocket.ping_interval`` (``EventClientActor``)."""
    return ActorSpec(
        name=name,
        factory=lambda: EventClientActor(link, notifier_path, tenant=tenant, user_id=user_id, admin=admin,
                                         stalled_after=stalled_after, first=first, ping_interval=ping_interval),
        restart=Restart.TEMPORARY,
        mailbox_size=256,
        shutdown_timeout=1.0,
    )
