"""The live-update hub: one actor between the topology and every WebSocket client.

It receives each topology version once, merges the versions published within one
update interval into a single diff (at most ``websocket.max_rate`` per second),
and hands the same ``LiveUpdate`` to every client actor. A client of a view with
no filter sends ``update.frame(view)``: a frame encoded once per view and shared,
and its resets are the version's ``SharedReset``, whatever the view's size.

A joining client is told its first ``LiveUpdate`` rather than asking for it:
the hub never waits on the topology while it holds messages for everyone, and
the clients joining while it fetches the current version share that version
(and so the first message of each view, encoded once).
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Mapping
from typing import Any

import attrs
import trio

from trioscope.domain.live import EdgeIndex, Frame, diff_frame, report_frame, reset_frame
from trioscope.domain.topology import CACHE_LIMIT, TopologyDiff, TopologySnapshot, View
from trioscope.runtime import Actor, ActorFailed, ActorRef, ActorStopped, AskTimeout, MailboxFull, Terminated
from trioscope.wire import rfc3339_seconds

from .topology import GetSnapshot, Subscribe, TopologyPublished

log = logging.getLogger(__name__)


class SharedReset:
    """The reset of one view at one version for every client of it without a
    filter: built once, by the first client that needs it (in pieces, on its
    address's turn, ``ResetTurns``), and taken by every other client that
    needs it meanwhile.

    A view within ``CACHE_LIMIT`` keeps its reset with the version, as its
    other encodings: small, and wanted by every client that joins. A larger
    one (the processes of 300 hosts: 16 MB, as much again once framed) is
    held only by the clients it is queued for or being sent to, and built
    again if one is wanted after they have all read it. Kept with the
    version, each version some client reset at would keep one; built per
    client, as it was, each client that stopped reading held a copy of its
    own (100 of them from one address, 3 GiB)."""

    __slots__ = ("_frame", "_weak", "_small", "building")

    def __init__(self, small: bool) -> None:
        self._frame: Frame | None = None
        self._weak: weakref.ref[Frame] | None = None
        self._small = small
        self.building: trio.Event | None = None
        """Set while a client builds it: the others wait for that one."""

    @property
    def frame(self) -> Frame | None:
        """The reset, if built and still held by someone (a small view's: kept)."""
        if self._frame is not None:
            return self._frame
        return self._weak() if self._weak is not None else None

    def built(self, frame: Frame) -> None:
        if self._small:
            self._frame = frame
        else:
            self._weak = weakref.ref(frame)


class LiveUpdate:
    """One update for every client: the merged diff to ``snapshot.version`` and
    the frames of each view, encoded on first use and then shared."""

    __slots__ = ("diff", "snapshot", "_frames")

    def __init__(self, diff: TopologyDiff | None, snapshot: TopologySnapshot) -> None:
        self.diff = diff
        """None when there is no diff to send: clients reset instead."""
        self.snapshot = snapshot
        self._frames: dict[View | None, Frame] = {}

    @property
    def version(self) -> int:
        return self.snapshot.version

    def frame(self, view: View | None) -> Frame:
        """The diff for clients of ``view`` without a filter (one shared frame)."""
        frame = self._frames.get(view)
        if frame is None:
            assert self.diff is not None
            frame = self._frames[view] = diff_frame(self.diff, view)
        return frame

    def shared_reset(self, view: View | None) -> SharedReset:
        """Where the reset of ``view`` at this version is kept for the clients
        without a filter: one per version and view, whichever update of that
        version asks first."""
        snapshot = self.snapshot
        return snapshot.derived(("live reset", view), lambda: SharedReset(snapshot.size(view) <= CACHE_LIMIT))

    def reset(self, view: View | None) -> Frame:
        """The whole view for clients without a filter: the shared one,
        encoded here at once if no client holds it (clients build a large
        one in pieces, on their turn)."""
        shared = self.shared_reset(view)
        frame = shared.frame
        if frame is None:
            frame = reset_frame(self.snapshot, view)
            shared.built(frame)
        return frame


@attrs.frozen
class Join:
    """``client`` is told a ``LiveUpdate`` with everything accepted so far (to
    start from its reset), then every later one."""

    client: ActorRef


@attrs.frozen
class _Current:
    """The topology's current snapshot, for the clients that joined meanwhile
    (None: the topology did not answer; they start from the hub's own)."""

    snapshot: TopologySnapshot | None


@attrs.frozen
class ReportSeen:
    """What a live ``report_update`` says of a report: not the report itself,
    which would then live until the next update is due (a decoded report is
    thousands of objects; kept by the hub for an interval, every report
    survived into the collector's older generations)."""

    agent_id: str
    host_name: str
    received_at: float
    metrics: Mapping[str, float]
    """``host_metrics`` of the report."""


@attrs.frozen
class ReportUpdate:
    agent_id: str
    frame: Frame


@attrs.frozen
class WantReports:
    """``client`` wants report updates (``wanted``), or no longer does. Only
    those that do are told them: a client of the topology alone (the default)
    would drop each one, and a report's update told to 1,000 such clients cost
    as much as the diff that follows it, and went out before it."""

    client: ActorRef
    wanted: bool


@attrs.frozen
class GetClients:
    """Answered with the number of joined clients."""


@attrs.frozen
class _Flush:
    kind: str


@attrs.define
class HubMembers:
    """The clients a hub serves, kept outside its incarnations (the supervision
    tree makes one): a restarted hub goes on serving the clients that joined
    before, instead of leaving them waiting for updates that never come."""

    clients: dict[str, ActorRef] = attrs.field(factory=dict)
    """Clients that joined, by path: told every update."""
    joining: dict[str, ActorRef] = attrs.field(factory=dict)
    """Clients waiting for the snapshot being fetched for them, by path, in the order they came.

    Both by path (a client's refs are not one object) so that a client that
    ends leaves in one step: when 5,000 clients left at once, filtering every
    member per departure took seconds of the hub, and their memory with it."""
    reports: dict[str, ActorRef] = attrs.field(factory=dict)
    """Clients that want report updates (``WantReports``), by path: only joined
    ones among them are told them."""


class HubActor(Actor):
    def __init__(self, topology_path: str, max_rate: int, members: HubMembers | None = None) -> None:
        self.topology_path = topology_path
        self.interval = 1.0 / max_rate
        self.members = members if members is not None else HubMembers()
        self.latest: LiveUpdate | None = None
        self.pending: TopologyDiff | None = None
        self.snapshot: TopologySnapshot | None = None
        self.reports: dict[str, ReportSeen] = {}
        self._lost = False
        """A version was missed: the next update carries no diff, only a reset."""
        self._boundaries: set[int] = set()
        """Versions clients joined at that the pending diff must end on."""
        self._last_flush = {"topology": -float("inf"), "reports": -float("inf")}

    async def on_start(self) -> None:
        # One pending flush of each kind at most, when its own rate allows (``_schedule``).
        self._flushes = {kind: self.context.alarm(_Flush(kind), minimum=0.0) for kind in self._last_flush}
        self.topology: ActorRef = self.context.system.lookup(self.topology_path)
        self._fetching = self.context.waiting()
        snapshot = await self.topology.ask(Subscribe(self.context.ref))
        self.snapshot = snapshot
        self.latest = LiveUpdate(None, snapshot)
        if self.members.clients:
            # Restarted: what the clients were owed died with the last
            # incarnation. They start again from this version (a reset each).
            log.warning("hub restarted: %d clients start again from version %d", len(self.members.clients),
                        snapshot.version)
            self._tell(self.members.clients, self.latest)
        self._fetch()  # clients that were joining when it crashed

    async def handle(self, message: Any) -> Any:
        if isinstance(message, TopologyPublished):
            self._merge(message)
            self._schedule("topology")
        elif isinstance(message, ReportSeen):
            self.reports[message.agent_id] = message
            self._schedule("reports")
        elif isinstance(message, Join):
            self.members.joining[message.client.path] = message.client
            self.context.watch(message.client)
            self._fetch()
        elif isinstance(message, _Current):
            self._welcome(message.snapshot)
        elif isinstance(message, WantReports):
            if message.wanted:
                self.members.reports[message.client.path] = message.client
                self.context.watch(message.client)  # idempotent: a client that joined is watched already
            else:
                self.members.reports.pop(message.client.path, None)
        elif isinstance(message, Terminated):
            self.members.clients.pop(message.path, None)
            self.members.joining.pop(message.path, None)
            self.members.reports.pop(message.path, None)
        elif isinstance(message, _Flush):
            self._flush(message.kind)
        elif isinstance(message, GetClients):
            return len(self.members.clients)
        else:
            return await super().handle(message)
        return None

    def _fetch(self) -> None:
        """Ask the topology for its current snapshot (one question for all the
        clients joining until it answers), in a task: the hub goes on
        handing out updates meanwhile."""
        if self.members.joining:
            self._fetching.start(self._fetch_current)

    async def _fetch_current(self) -> _Current:
        try:
            snapshot: TopologySnapshot | None = await self.topology.ask(GetSnapshot(), timeout=30)
        except (AskTimeout, ActorFailed, ActorStopped):
            snapshot = None
        return _Current(snapshot)

    def _welcome(self, current: TopologySnapshot | None) -> None:
        """Tell the clients that joined what they start from, and from then on
        every update."""
        joiners, self.members.joining = self.members.joining, {}
        update = self._current(current)
        for path, client in joiners.items():
            self.members.clients[path] = client
            try:
                client.tell(update)
            except MailboxFull:
                pass  # it starts from the next update instead
            except ActorStopped:
                del self.members.clients[path]
        self._fetch()

    def _current(self, current: TopologySnapshot | None) -> LiveUpdate:
        """What joining clients start from: everything accepted so far (the
        topology merged what was pending before answering, ``current``; or a
        newer version the hub has received since), shared by every client
        joining at the same version."""
        snapshot = current
        if snapshot is None or (self.snapshot is not None and self.snapshot.version > snapshot.version):
            snapshot = self.snapshot
        assert snapshot is not None
        # The joiner holds this version: no diff may straddle it, or it could
        # not apply the next one (from before its version to after it).
        if self.pending is not None and self.pending.version == snapshot.version:
            self._flush("topology")
        elif snapshot.version > self._known_version():
            self._boundaries.add(snapshot.version)  # its publication is still on its way to us
        if self.latest is None or self.latest.snapshot is not snapshot:
            self.latest = LiveUpdate(None, snapshot)  # joiners only use its reset
        return self.latest

    def _known_version(self) -> int:
        if self.pending is not None:
            return self.pending.version
        return self.snapshot.version if self.snapshot is not None else 0

    def _merge(self, published: TopologyPublished) -> None:
        diff = published.diff
        expected = self._known_version()
        self.snapshot = published.snapshot
        if diff.previous_version != expected:
            # We missed a version (our mailbox was full when it was published):
            # nothing to diff from, every client starts again from the snapshot.
            log.warning("hub missed topology versions %d..%d; clients will reset", expected, diff.previous_version)
            self.pending = None
            self._lost = True
            return
        self.pending = diff if self.pending is None else self.pending.then(diff)
        if self.pending.version in self._boundaries:
            self._boundaries = {v for v in self._boundaries if v > self.pending.version}
            self._flush("topology")

    def _schedule(self, kind: str) -> None:
        """Flush ``kind`` ("topology" or "reports") now, or as soon as its own
        rate allows: the two must not share a budget, or a report's update
        would hold back the topology change it caused."""
        due = self._last_flush[kind] + self.interval
        if due <= trio.current_time():
            self._flush(kind)
        else:
            self._flushes[kind].at(due)  # one set already is as soon or sooner: the last flush only moves on

    def _flush(self, kind: str) -> None:
        self._last_flush[kind] = trio.current_time()
        if kind == "topology":
            if self.pending is not None or self._lost:
                assert self.snapshot is not None
                previous, self.latest = self.latest, LiveUpdate(self.pending, self.snapshot)
                if previous is not None and self.pending is not None:
                    # The filtered clients' edge lookups of this version are
                    # made from the last one's, by what changed (on first use).
                    EdgeIndex.follow(previous.snapshot, self.pending, self.snapshot)
                self.pending, self._lost = None, False
                self._tell(self.members.clients, self.latest)
            return
        # Summarised here, once per agent per interval, not per report
        # received; and not at all while no joined client wants them (the
        # frames of 1,000 hosts cost ~0.1 ms of CPU a report, for nobody).
        clients = self.members.clients
        listeners = {path: client for path, client in self.members.reports.items() if path in clients}
        updates = [ReportUpdate(seen.agent_id,
                                report_frame(seen.agent_id, seen.host_name, rfc3339_seconds(seen.received_at) or "",
                                             seen.metrics))
                   for seen in self.reports.values()] if listeners else []
        self.reports.clear()
        self._tell(listeners, *updates)

    def _tell(self, targets: dict[str, ActorRef], *messages: Any) -> None:
        """Tell each of ``targets`` (members, by path) ``messages``; one that
        has stopped leaves the members."""
        for path, client in list(targets.items()):
            for message in messages:
                try:
                    client.tell(message)
                except MailboxFull:
                    pass  # the client is far behind; it resets when it catches up
                except ActorStopped:
                    self.members.clients.pop(path, None)
                    self.members.reports.pop(path, None)
                    break
