"""One actor per WebSocket client, under the ``/root/clients`` dynamic supervisor.

The actor decides what its client is sent; a writer task in the WebSocket handler
sends it. Between them is a small bounded outbox of frames (shared strings, so a
queue costs references): when it is full the client is *behind*, further updates
are dropped, and once there is room again it is sent a reset (the whole view) to
start over. A client behind for longer than ``slow_client_timeout`` is closed with
1008. No client can slow the hub or the other clients: the hub only ever tells.

The diffs (and reports' updates) that come while the client's last reset is
still unsent wait in the actor (its ``backlog``), not in the outbox, and
follow the reset once it has been sent. A reset of a large view takes seconds
to read (the processes of 2,000 hosts, 159 MB: 16 s at 10 MB/s): counted in
the outbox, 4 s of diffs filled it, the next was dropped, and the client,
reading all along, was owed another reset as large, and then another. Without
a filter the backlog holds the frames every client of the view shares, by
reference; with one, the diffs made for it alone weigh at most what a reset
would (``held_bytes``). The client still counts as behind once its outbox and
backlog together hold more than the outbox would, and is closed as any other
after ``slow_client_timeout`` (one that stopped reading its reset:
``server.write_timeout`` closes it too).

Resets are what a client can make expensive (``resync``, a new view or filter,
lagging on purpose), so a ``ResetThrottle`` paces them: one owed at most, built
only once the previous one has been sent and the outbox is at most half full, at
most one per ``resync_interval`` after the first. A reset is built in pieces
between which the server runs on, and which stop when the socket has gone.
Many clients from one address are paced together (``ResetTurns``): their
resets are built one at a time, in at most their address's share of the
server's time, and the resets queued for them, not yet read, weigh at most
their address's share of memory.

A client with a filter (or ``visibility``) is made diffs of its own, and a
hundred of them from one address, each with its own filter, took most of the
server's time. Its diff of a version is made only once it may be sent (its
reset and the frames before have been, there is room), not when the version
comes: a client that does not read is made none, and what it missed becomes
the one reset it is owed (``HELD_FLOOR``). And it is made on its address's
turn, a *light* one (``ResetBudget``): the diffs of an address's clients take
at most the share of the server's time its resets may, one client at a time;
a client that waits for the turn longer than a full outbox would last is
owed a reset instead. The diff itself costs what changed: the filter looks at
the changed nodes only, and the edges of those that start or stop matching
come from an index by node made once per version for every client
(``EdgeIndex``).

The first reset (the view the client connects with) is not built while the
actor starts, nor while the WebSocket handshake is answered: the actor joins
the hub, which tells it the version to start from, and the reset follows no
earlier than the time the client was admitted for (``first_view_at``: the
handler paces first views, see ``ViewAdmission``). For a view without a
filter it is the version's shared frame: no client gets a copy of its own.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import attrs
import trio

from trioscope.config import Settings
from trioscope.domain.keepalive import GONE, Keepalive
from trioscope.domain.live import (
    PING,
    PONG,
    BadClientMessage,
    Frame,
    PreFramed,
    Ping,
    Pong,
    ResetThrottle,
    Resync,
    Subscribe,
    Subscription,
    Unsubscribe,
    Visibility,
    diff_frame,
    error_frame,
    parse_client_message,
    reset_chunks,
    subscribe,
    unsubscribe,
)
from trioscope.domain.topology import CACHE_LIMIT, WHOLE_KINDS, View
from trioscope.runtime import Actor, ActorRef, ActorSpec, ActorStopped, Restart

from .client_link import INTERNAL_ERROR, POLICY_VIOLATION, ClientLink
from .hub import Join, LiveUpdate, ReportUpdate, SharedReset, WantReports
from .reset_turns import ResetTurns, Turn

log = logging.getLogger(__name__)

HELD_FLOOR = 1024**2
"""Bytes of diffs made for one client (a filter's) that may wait behind its
reset whatever that reset weighs; beyond both, it is owed a new reset instead
(``ClientActor.held_bytes``)."""
DIFF_FLOOR = 256
"""Bytes a diff is taken to weigh at least before it is made (``ClientActor._weight``)."""


@attrs.define
class LiveCounters:
    """Counters shared by all client actors (exported as Prometheus counters)."""

    sent: int = 0
    dropped: int = 0
    resets: int = 0
    slow_closes: int = 0


@attrs.frozen
class FromClient:
    data: str | bytes


@attrs.frozen
class _Tick:
    pass


@attrs.frozen
class _Wake:
    """The reset owed to the client may be due: the interval ended or it drained."""


@attrs.frozen
class _TurnTaken:
    """The client has its address's turn to build the reset it is owed."""


@attrs.frozen
class _Sent:
    """The frames the backlog waited for have been sent."""


class ClientActor(Actor):
    def __init__(self, link: ClientLink, hub_path: str, view: View | None, settings: Settings,
                 counters: LiveCounters, visibility: Visibility | None = None,
                 first_view_at: float = float("-inf"), *, address: str = "",
                 turns: ResetTurns | None = None) -> None:
        self.link = link
        self.address = address
        """The client's address (``_client_address.client_source``), which its resets are paced by."""
        self.turns = turns if turns is not None else ResetTurns.from_settings(settings.websocket)
        """Shared by the clients of one server (alone, it paces this client only)."""
        self.turn: Turn | None = None
        """The address's turn to build, once granted, until the reset is built."""
        self.visibility = visibility
        """What the client may see (``auth.protect_reads``: its tenant's); None for everything."""
        self.held: Visibility | None = None
        """What the client holds of its view since its last reset, when that is
        part of it (a filter, or ``visibility``); None: the whole view."""
        self.hub_path = hub_path
        self.settings = settings.websocket
        self.counters = counters
        self.subscription = Subscription(view=view)
        self.version = -1
        self.latest: LiveUpdate | None = None
        self.behind_since: float | None = None
        self.keepalive = Keepalive()
        self.next_ping = 0.0
        self.throttle = ResetThrottle(self.settings.resync_interval, not_before=first_view_at)
        self.first_sent = False
        """The reset the client connected with has been queued."""
        self.queued_total = 0
        """Frames put in the outbox so far."""
        self.reset_position = 0
        """``queued_total`` just after the last reset: sent once the writer has delivered that many."""
        self.backlog: list[Frame | _Deferred] = []
        """The diffs that came while the last reset was unsent, in order, to
        be queued once it has been (``_pump``); a client's own diffs are
        made only then (``_Deferred``)."""
        self.held_bytes = 0
        """What the backlog's text weighs (``len``: a diff's characters, a
        reset's bytes, alike for the ASCII that orjson writes). A client of a filter is
        made diffs of its own, which no other client shares: once they would
        weigh more than its last reset (``reset_bytes``, and ``HELD_FLOOR``),
        a new reset costs less, and it is owed one instead (the diffs held
        were bounded only by the time it may lag, ``slow_client_timeout``)."""
        self.reset_bytes = 0
        self.diff_work = 0.0
        """Seconds of work making diffs on the address's current turn (charged when it ends)."""
        self.diffs_made = 0
        """Diffs made for this client alone so far."""

    async def on_start(self) -> None:
        # What the client waits for outside itself, each told once, and
        # dropped with this incarnation: each speaks of its state.
        self.asking = self.context.waiting(_TurnTaken())
        """For the address's turn (kept on the actor as soon as it is granted: ``_take_turn``)."""
        self.waking = self.context.waiting(_Wake())
        """Until the owed reset may be due."""
        self.pumping = self.context.waiting(_Sent())
        """Until the backlog may move on."""
        # Nothing here waits on anyone: a burst of clients starts together
        # (their supervisor's start waits for this), and the hub tells us
        # where to start (a LiveUpdate) when it knows.
        self.throttle.owe()
        self.next_ping = trio.current_time() + self.settings.ping_interval
        self.context.start_soon(self._join)
        # Often enough to notice a slow client or a missed pong in time.
        self.context.every(min(self.settings.ping_interval, self.settings.slow_client_timeout) / 4, _Tick())
        # However this incarnation ends (a crash, or the socket went away), a
        # socket whose actor is gone must not stay open. A no-op if closed.
        self.context.at_end(lambda: self.link.close(INTERNAL_ERROR, "internal error"))
        self.context.at_end(self._end_turn)  # nor may its address's turn stay taken

    async def _join(self) -> None:
        hub: ActorRef = self.context.system.lookup(self.hub_path)
        try:
            await hub.send(Join(self.context.ref))
        except ActorStopped:
            self.link.close(INTERNAL_ERROR, "internal error")

    async def handle(self, message: Any) -> Any:
        if self.link.closed.is_set() and isinstance(message, (LiveUpdate, ReportUpdate, FromClient, _Tick, _Wake,
                                                              _TurnTaken, _Sent)):
            # Nothing more reaches this socket: what is still queued for it (a
            # flood of resyncs from a client that left, say) costs nothing.
            self._end_turn()
            return None
        if isinstance(message, LiveUpdate):
            self._update(message)
        elif isinstance(message, ReportUpdate):
            if (self.subscription.wants_report(message.agent_id)
                    and (self.visibility is None or self.visibility.may_see(message.agent_id))):
                if self.backlog or self._reset_unsent():
                    self._hold(message.frame)  # as a diff is: sent, it would fill the outbox behind the reset
                elif not self._behind():
                    self._send(message.frame)  # (one lagging otherwise is not sent them: they are no state)
        elif isinstance(message, FromClient):
            before = self.subscription
            self._from_client(message.data)
            if self.subscription.wants_any_report != before.wants_any_report:
                # Waits for room: the hub tells report updates only to those that asked.
                hub: ActorRef = self.context.system.lookup(self.hub_path)
                try:
                    await hub.send(WantReports(self.context.ref, self.subscription.wants_any_report))
                except ActorStopped:
                    self.link.close(INTERNAL_ERROR, "internal error")
        elif isinstance(message, _Tick):
            self._tick()
        elif isinstance(message, (_Wake, _TurnTaken, _Sent)):
            pass  # what it waited for is done: the backlog moves and the reset is built below
        else:
            return await super().handle(message)
        self._pump()
        await self._reset_if_due()
        return None

    def _update(self, message: LiveUpdate) -> None:
        self.latest = message
        if not self.subscription.topology or self.throttle.owed:
            return  # the reset it is owed will start from the newest version
        if message.version <= self.version:
            pass  # joined at this version already
        elif message.diff is None or message.diff.previous_version != self.version:
            self.throttle.owe()  # a gap: start again from the snapshot
        elif self._shared():
            frame = message.frame(self.subscription.view)
            if self.backlog or self._reset_unsent():
                self._hold(frame, message.version)  # behind its reset, which it is still reading
            else:
                self._send(frame, message.version)
        else:
            # Its own diff is made once it may be sent (``_pump``), on its
            # address's turn: none for a client that does not read.
            deferred = _Deferred(message, self._weight(message))
            if (self.backlog or self._reset_unsent()) and (
                    self.held_bytes + deferred.weight > max(self.reset_bytes, HELD_FLOOR)
                    # Read, but waiting for its address's turn as long as
                    # a full outbox would: it starts over instead.
                    or (self.turn is None and self.asking.active and len(self.backlog) >= self.link.buffer)):
                self.throttle.owe()  # ``_pump`` drops the backlog: the reset owed starts from the newest version
                return
            self._hold(deferred, message.version)

    def _weight(self, update: LiveUpdate) -> int:
        """What the client's diff of ``update`` is taken to weigh until made:
        the diff of its whole view (made once for every client) by the part
        of the view's nodes it holds, a filter's diffs being about its part
        of the view's (at least a diff's frame)."""
        view = self.subscription.view
        whole = len(update.frame(view))
        if self.held is None:
            return whole
        kinds = [view.kind] if view is not None else WHOLE_KINDS
        nodes = sum(len(update.snapshot.nodes_of(kind)) for kind in kinds)
        return max(DIFF_FLOOR, whole * len(self.held.shown) // max(1, nodes))

    def _from_client(self, data: str | bytes) -> None:
        self.keepalive.heard()
        try:
            request = parse_client_message(data)
        except BadClientMessage as exc:
            self._send(error_frame(exc.code, exc.message))
            return
        if isinstance(request, Ping):
            self._send(PONG)
        elif isinstance(request, Pong):
            self.keepalive.pong()
        elif isinstance(request, Resync):
            self.throttle.owe()
        elif isinstance(request, Subscribe):
            before = self.subscription
            try:
                self.subscription = subscribe(before, request)
            except BadClientMessage as exc:
                self._send(error_frame(exc.code, exc.message))
                return
            if (self.subscription.view, self.subscription.filter, self.subscription.topology) != (
                    before.view, before.filter, before.topology):
                self.throttle.owe()
        elif isinstance(request, Unsubscribe):
            before = self.subscription
            self.subscription = unsubscribe(before, request)
            if self.subscription.topology and self.subscription.filter != before.filter:
                # It holds what the old filter gave; diffs by the new one
                # would not match (a filter emptied: the whole view's diffs).
                self.throttle.owe()

    def _tick(self) -> None:
        now = trio.current_time()
        if self._behind():
            assert self.behind_since is not None
            if now - self.behind_since > self.settings.slow_client_timeout:
                self.counters.slow_closes += 1
                log.info("WebSocket client %s lagged for more than %ss: closing it", self.context.path,
                         int(self.settings.slow_client_timeout), extra={"event": "slow_client"})
                self.link.close(POLICY_VIOLATION, "too slow: lagged behind for too long")
                return
        if now >= self.next_ping:
            if not self.keepalive.ping():
                self.link.close(POLICY_VIOLATION, GONE)
                return
            self.next_ping = now + self.settings.ping_interval
            self._send(PING)

    def _behind(self) -> bool:
        """Whether the client is still lagging: it is not once its outbox (and
        backlog) has drained to half (the reset it is owed then follows, paced)."""
        if self.behind_since is not None and self._lag() <= self.link.buffer // 2:
            self.behind_since = None
        return self.behind_since is not None

    def _reset_unsent(self) -> bool:
        """Whether the last reset queued is still queued, or being written."""
        return self.link.delivered < self.reset_position

    def _lag(self) -> int:
        """The frames the client has yet to take: what the outbox would hold
        if the backlog were in it."""
        return self.link.queued + len(self.backlog)

    def _hold(self, frame: Frame | _Deferred, version: int | None = None) -> None:
        """Keep ``frame`` (a diff to ``version``, one to make, or a report's
        update) in the backlog, behind the reset being sent (``_pump``, which
        follows, moves it on)."""
        self.backlog.append(frame)
        self.held_bytes += frame.weight if isinstance(frame, _Deferred) else len(frame)
        if version is not None:
            self.version = version
        if self.behind_since is None and self._lag() > self.link.buffer:
            self.behind_since = trio.current_time()  # where the outbox would have overflowed

    def _pump(self) -> None:
        """Queue what the backlog holds once the reset before it has been sent,
        up to half the outbox at a time (pings and pongs keep their room); the
        rest once those have been sent."""
        if not self.backlog:
            return
        if self.throttle.owed or not self.subscription.topology:
            self.backlog.clear()  # the reset owed starts from the newest version, or nothing is wanted
            self.held_bytes = 0
            return
        if self._reset_unsent():
            self._pump_once_sent(self.reset_position)
            return
        room = max(1, self.link.buffer // 2) - self.link.queued
        if room > 0:
            moving = self.backlog[:room]
            if any(isinstance(item, _Deferred) for item in moving) and not self._diff_turn():
                return  # on the address's turn, which wakes us (``_TurnTaken``)
            self.backlog = self.backlog[room:]
            began = time.thread_time()
            for item in moving:
                if isinstance(item, _Deferred):
                    self.held_bytes -= item.weight
                    self.diffs_made += 1
                    self._send(_filtered_diff(item.update, self.subscription, self.held))
                else:
                    self.held_bytes -= len(item)
                    self._send(item)
            self.diff_work += time.thread_time() - began
        if self.backlog:
            self._pump_once_sent(self.queued_total)

    def _diff_turn(self) -> bool:
        """Whether the client has its address's turn to make the diffs it
        holds: it has one, or takes it now; else it asks for one."""
        if self.turn is None:
            self.turn = self.turns.take(self.address)
            if self.turn is None:
                self._ask_turn(light=True)
                return False
        return True

    def _pump_once_sent(self, position: int) -> None:
        """Make sure ``_pump`` runs again once the first ``position`` frames
        queued have been sent (or the socket has gone)."""
        self.pumping.start(self._sent, position)

    async def _sent(self, position: int) -> None:
        sent = trio.Event()
        self.link.hold_until_sent(position, sent.set)
        await sent.wait()

    def _send(self, frame: Frame, version: int | None = None) -> bool:
        try:
            self.link.outbox.send_nowait(frame)
        except trio.WouldBlock:
            self.counters.dropped += 1
            if self.behind_since is None:
                self.behind_since = trio.current_time()
            self.throttle.owe()  # it has missed something: it starts over once it has room
            return False
        self.counters.sent += 1
        self.queued_total += 1
        if version is not None:
            self.version = version
        return True

    async def _reset_if_due(self) -> None:
        """Send the reset the client is owed if it may be built now; otherwise
        make sure the actor is woken when it may."""
        if not self.throttle.owed:
            self._end_turn()
            return
        if not self.subscription.topology:
            self.throttle.forget()
            self._end_turn()
            self.link.first_view_queued(self.queued_total)  # it wants none
            return
        if self.latest is None:
            return  # the hub has not told us where to start yet; its update wakes us
        started = trio.current_time()
        if not (self.throttle.due(started) and self.link.drained(self.reset_position)):
            self._end_turn()  # others of the address may build meanwhile
            self._wake_when_due()
            return
        update = self.latest
        frame = await self._ready_reset(update)
        # A small view's reset is kept with its version whoever is sent it: it
        # weighs on no address (counted, a few addresses holding large
        # resets unread kept every first view of a small view waiting).
        kept = frame is not None and update.snapshot.size(self.subscription.view) <= CACHE_LIMIT
        took = 0.0
        if frame is None or not (kept or self.turns.may_take(self.address, frame)):
            # To be built, or more than the address may hold now: on its turn.
            if self.turn is None or self.turn.light:
                self._end_turn()  # one to make diffs builds no reset
                self._ask_turn()
                return
            if frame is None:
                frame, took = await self._build_reset(update)
                if frame is None:
                    self._end_turn(took)
                    return  # the client left while it was being built
        queued = self._send(frame, update.version)
        if queued:
            self.counters.resets += 1
            self.reset_position = self.queued_total
            self.reset_bytes = len(frame)
            if not kept:
                self.link.hold_until_sent(self.reset_position, self.turns.hold(self.address, frame))
        self._end_turn(took)  # only now: the address's next turn is given with this frame counted
        if queued:
            now = trio.current_time()
            self.throttle.sent(now, took=now - started, first=not self.first_sent)
            if not self.first_sent:
                self.first_sent = True
                self.link.first_view_queued(self.queued_total)

    async def _ready_reset(self, update: LiveUpdate) -> Frame | None:
        """The client's reset at ``update`` if it is made already: the
        version's shared one for a view without a filter (a small view's is
        encoded here; one another client is building is waited for). None:
        it must be built."""
        if not self._shared():
            return None
        view = self.subscription.view
        if update.snapshot.size(view) <= CACHE_LIMIT:
            return update.reset(view)  # encoded once per version, kept with it: cheap
        shared_reset = update.shared_reset(view)
        while shared_reset.frame is None and shared_reset.building is not None:
            await shared_reset.building.wait()
        return shared_reset.frame

    async def _build_reset(self, update: LiveUpdate) -> tuple[Frame | None, float]:
        """The client's reset at ``update`` (None if the socket went away
        meanwhile), and the seconds of work it took."""
        sub = self.subscription
        shared_reset: SharedReset | None = None
        if self._shared():
            shared_reset = update.shared_reset(sub.view)
            shared_reset.building = trio.Event()
        pieces: list[bytes] = []
        # A client that holds part of its view gets diffs from what it holds,
        # which is what this reset gives it.
        self.held = self.visibility if self.visibility is not None else (None if sub.filter.empty else Visibility())
        chunks = reset_chunks(update.snapshot, sub.view, sub.filter, visibility=self.held)
        # The address is charged the work (this thread's CPU time), not the
        # time between: other clients' pieces run in between, and other
        # processes may have the core.
        took = 0.0
        try:
            while True:
                began = time.thread_time()
                piece = next(chunks, None)
                took += time.thread_time() - began
                if piece is None:
                    break
                pieces.append(piece)
                # A reset of a large view takes seconds: the server answers others
                # in between, and a client that leaves stops costing at once.
                await trio.lowlevel.checkpoint()
                if self.link.closed.is_set():
                    return None, took
            # Framed from its pieces in one pass (~0.1 s for the processes of
            # 2,000 hosts, 159 MB), never joined and decoded into a str first.
            began = time.thread_time()
            frame = PreFramed(pieces)
            pieces.clear()
            took += time.thread_time() - began
            if shared_reset is not None:
                shared_reset.built(frame)
            return frame, took
        finally:
            if shared_reset is not None:  # those waiting for it take it, or one of them builds it
                building, shared_reset.building = shared_reset.building, None
                if building is not None:
                    building.set()

    def _shared(self) -> bool:
        """Whether the client takes the frames every client of its view shares."""
        return self.subscription.shared and self.visibility is None

    def _ask_turn(self, *, light: bool = False) -> None:
        self.asking.start(self._take_turn, light)

    async def _take_turn(self, light: bool) -> None:
        # Kept on the actor at once, not sent in a message: a message still
        # queued when the actor stops is dropped, and the address's turn
        # would be lost with it (``at_end`` gives back the one it has).
        self.turn = await self.turns.turn(self.address, light=light)

    def _end_turn(self, took: float = 0.0) -> None:
        """Give back the address's turn, if the client has it, after ``took``
        seconds of work (and the diffs it made on it)."""
        turn, self.turn = self.turn, None
        if turn is not None:
            turn.done(took + self.diff_work)
            self.diff_work = 0.0

    def _wake_when_due(self) -> None:
        """A ``_Wake`` once the outbox has taken the frames queued before the
        reset was owed, at the throttle's time."""
        self.waking.start(self._drained, self.reset_position, not_before=self.throttle.not_before)

    async def _drained(self, position: int) -> None:
        await self.link.when_drained(position).wait()


class _Deferred:
    """A version whose diff, made for one client alone (a filter's), is made
    once the client may be sent it, on its address's turn (``_pump``)."""

    __slots__ = ("update", "weight")

    def __init__(self, update: LiveUpdate, weight: int) -> None:
        self.update = update
        self.weight = weight
        """What it is taken to weigh until made (``held_bytes``, ``ClientActor._weight``)."""


def _filtered_diff(update: LiveUpdate, subscription: Subscription, held: Visibility | None) -> Frame:
    assert update.diff is not None
    return diff_frame(update.diff, subscription.view, subscription.filter, held, snapshot=update.snapshot)


def client_spec(name: str, link: ClientLink, hub_path: str, view: View | None, settings: Settings,
                counters: LiveCounters, visibility: Visibility | None = None,
                first_view_at: float = float("-inf"), *, address: str = "",
                turns: ResetTurns | None = None) -> ActorSpec:
    """Temporary: a crashed client actor is not restarted; its socket closes (1011)
    and the browser reconnects. Its first view is sent no earlier than
    ``first_view_at`` (trio time); its resets are paced with the other clients
    of ``address`` by ``turns`` (shared by every client of the server)."""
    return ActorSpec(
        name=name,
        factory=lambda: ClientActor(link, hub_path, view, settings, counters, visibility, first_view_at,
                                    address=address, turns=turns),
        restart=Restart.TEMPORARY,
        mailbox_size=256,
        shutdown_timeout=1.0,
    )

