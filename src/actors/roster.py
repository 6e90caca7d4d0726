"""The roster actor (``/root/roster``): the probes the server tracks, and the
one owner of their actors.

Every report, registration and heartbeat of a probe is one message to this
actor. It starts the probe's actor under ``/root/agents`` when the probe is new
(making room at ``agents.max_agents``), and hands a report on to the three
actors that use it: the topology actor (to merge), the probe's own actor
(latest report, liveness, host metrics) and the hub (a live
``report_update``). So the HTTP edge sends one message per request, never
decides when an agent actor starts or goes, and never builds the other
actors' messages.

What it cannot do is answered as a refusal raised at the asker: no room for a
new probe (``TooManyAgents``), an unknown probe's heartbeat (``UnknownProbe``),
a full mailbox of the topology or the probe's actor (``MailboxFull``: the
probe resends, and merging a report twice changes nothing).
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Callable
from typing import Any

import attrs

from trioscope.config import Settings
from trioscope.domain.agents import PackedReport, host_metrics
from trioscope.domain.clocks import ClockOffsets
from trioscope.domain.deployments import AgentDirectory
from trioscope.domain.metrics import RESOLUTION
from trioscope.domain.rates import FirstSeen, Lull
from trioscope.wire import AgentRegistration, Report
from trioscope.domain.roster import AgentRoster
from trioscope.domain.topology import Partition
from trioscope.domain.wall_clock import WallSteps
from trioscope.runtime import (
    Actor, ActorNotFound, ActorRef, ActorStopped, AskTimeout, MailboxFull, Published, SupervisorRef,
    TooManyChildren,
)

from .agent import Heartbeat, Register, ReportReceived, agent_spec
from .hub import ReportSeen
from .metrics import NODE_BUCKETS_WAITING, ForgetNode, NodeSamples
from .refusals import REFUSALS, TooManyAgents, UnknownProbe
from .topology import ExpireStale, ForgetAgent, MergeReport

log = logging.getLogger(__name__)

HISTORY_EXPIRY_TIMEOUT = 60.0
"""Seconds the topology may take to merge the replayed reports still pending
and remove the stale agents' nodes (``HistoryReplayed``)."""
ROOM_ATTEMPTS = 3
"""Places made for one new probe before it is refused: between making a place
and taking it, a probe whose actor was starting may take it first."""
RECLAIMS_SAID_EVERY = 60.0
"""Seconds between two info lines of probes forgotten to make room (each counts
those said at debug level since): new agent ids are any client's to send."""
FAILURE_CAUSES_SAID = 64
"""Causes of reports left out whose traceback is logged (``RosterActor._left_out``) at most:
past them, every one is logged at debug level."""


@attrs.frozen
class ReportArrived:
    """A probe's validated report. Answered with None once the topology, the
    probe's actor and the hub have it queued."""

    report: Report
    packed: PackedReport
    """The report's JSON as received (kept as the probe's latest report)."""
    received_at: float
    partition: Partition | None = None
    """The report's topology partition, when the sender built it (off the event loop)."""
    shape: bytes | None = None
    """The report's ``report_shape``, when the sender found it (see ``MergeReport.shape``)."""
    enrolled: bool = False
    """Signed by an enrolled agent: such a probe always has room (see
    ``AgentRoster.reclaimable``), and its containers offer controls
    (``MergeReport.enrolled``; a ``partition`` is built with it)."""
    sequence: int = 0
    """Its sequence on the report stream (with a bus; see ``MergeReport.sequence``)."""
    history: bool = False
    """Replayed from the stream at start (see ``MergeReport.history``)."""
    address: str | None = None
    """Where the client that sent it counts as from (``_client_address.client_source``:
    its address, an IPv6 one's /64; None: not known): see ``AgentRoster``."""
    signer: str | None = None
    """The enrolled agent that signed it (None: unsigned, or from a replica of
    a version that did not say): see ``RosterActor._touch``. Said by the
    request, not looked up when the roster takes it: by then the agent may
    report under another id."""
    scope: str | None = None
    """The ``node_scope`` of the signer's tenant, which the report's node ids
    carry (None: unsigned; ``MergeReport.scope``). Found where the report was
    received, so that every replica names its nodes alike."""


@attrs.frozen
class ReportsArrived:
    """Reports read from the report stream (``bus.url``), in order: one message
    for a batch, not one ask per report. Answered with ``HandedOn``: fewer than
    all when the topology or a probe's actor had no room (the feed offers the
    rest again; merging a report twice changes nothing). A report refused here
    (``TooManyAgents``) is logged and counts as handed on: the replica that
    published it accepted it. So does a report whose handing on failed (left
    out, see ``RosterActor``)."""

    reports: tuple[ReportArrived, ...]


@attrs.frozen
class HandedOn:
    """The answer to ``ReportsArrived``."""

    count: int
    """How many of the batch's reports, from its first, were dealt with
    (handed on, refused or left out): the feed offers the rest again."""
    left_out: int = 0
    """Of those, how many were left out because handing them on failed."""
    refused: tuple[int, ...] = ()
    """The sequences of those refused for want of a place for a new agent
    (``TooManyAgents``): their publisher answers 503, not 202."""


@attrs.frozen
class RegisterProbe:
    """A probe registers (``POST /api/v1/agents/register``). Answered with None
    once its actor has the registration queued."""

    registration: AgentRegistration
    enrolled: bool = False
    address: str | None = None
    """Where the client that sent it counts as from (as ``ReportArrived.address``)."""
    signer: str | None = None
    """The enrolled agent that signed it (see ``ReportArrived.signer``)."""
    scope: str | None = None
    """Its signer's tenant's ``node_scope`` (None: unsigned)."""


@attrs.frozen
class CheckAdmission:
    """A new probe's report is about to go on the report stream (``bus.url``):
    answered with None when the probe would have a place here (room made by
    the same rule as for a report), refused with ``TooManyAgents`` when it
    would not, so that, as without a bus, the probe gets 503 rather than a
    202 for a report every replica leaves out. No actor is started or
    stopped, no probe forgotten for it: the probe is admitted as each
    replica, this one too, reads its report from the stream
    (``ReportsArrived``), so a report the bus did not take leaves no trace,
    and every replica makes room by the same rule from the same reports."""

    agent_id: str
    enrolled: bool = False
    address: str | None = None
    """Where the client that sent it counts as from (as ``ReportArrived.address``)."""
    signer: str | None = None
    """The enrolled agent that signed it (see ``ReportArrived.signer``)."""


@attrs.frozen
class HistoryReplayed:
    """The report feed handed on every report that was on the stream when the
    replica started. Answered with None once the topology has merged them and
    removed the agents' nodes stale by then (``ExpireStale``): what the
    replicas that were running meanwhile removed as the agents went silent,
    gone before this replica says it is caught up."""


@attrs.frozen
class ProbeHeartbeat:
    """Answered with the server time the heartbeat was recorded at; refused
    with ``UnknownProbe`` for a probe that has no actor."""

    agent_id: str


class _Prune:
    """Forget the probes whose actors stopped by themselves (silent past
    ``storage.max_data_age``): an actor does not tell the roster, and each
    probe id ever seen stayed (~0.6 KB) until the roster held twice
    ``agents.max_agents``."""


def clock_offsets_kept(settings: Settings) -> int:
    """Agents whose clock offsets the roster keeps at most: as many as it
    tracks before it lets go of those whose actors stopped."""
    return 2 * settings.agents.max_agents


class RosterActor(Actor):
    """The probes' roster and the owner of their actors (see the module docstring)."""

    refusals = (*REFUSALS, MailboxFull, ActorStopped)
    """Besides its own refusals, a full mailbox of the topology or the probe's
    actor, and a probe actor that stopped itself just then (silent too long) or
    a server that is stopping: answered 503 at the edge, and the probe resends."""

    def __init__(self, settings: Settings, *, agents_path: str, topology_path: str, hub_path: str,
                 directory: Published[AgentDirectory], clock: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic, metrics_path: str | None = None,
                 roster: AgentRoster | None = None, clocks: ClockOffsets | None = None) -> None:
        """``roster``, ``clocks``: what an earlier incarnation knew (the spec's
        ``Kept``); None: a roster, and clock offsets, of its own."""
        self.settings = settings
        self.agents_path = agents_path
        self.topology_path = topology_path
        self.hub_path = hub_path
        self.metrics_path = metrics_path
        self.directory = directory
        """What the directory actor publishes: which probes are enrolled (never forgotten for another)."""
        self.clock = clock
        self.monotonic = monotonic
        self.roster = roster if roster is not None else AgentRoster()
        self.clocks = clocks if clocks is not None else ClockOffsets(clock_offsets_kept(settings))
        """Each agent's clock offset, from its reports in the order this actor
        hands them on (with a bus, the stream's: the same on every replica):
        what turns a report's own time into the server's, for the topology,
        the agent's actor and the metrics API alike."""
        self._wall = WallSteps()
        """See ``_wall_offset``."""
        self._failures_said: FirstSeen[tuple[str, str, int]] = FirstSeen(FAILURE_CAUSES_SAID)
        """The causes of those failures logged with their traceback already."""
        self._reclaims_said = Lull(RECLAIMS_SAID_EVERY)
        self._counted: AgentDirectory | None = None
        self._enrolled_count = 0
        """See ``_enrolled_agents``."""

    async def on_start(self) -> None:
        system = self.context.system
        self.agents: SupervisorRef = system.lookup(self.agents_path)
        self.topology: ActorRef = system.lookup(self.topology_path)
        self.hub: ActorRef = system.lookup(self.hub_path)
        self.metrics: ActorRef | None = system.lookup(self.metrics_path) if self.metrics_path else None
        self.context.every(self.settings.storage.cleanup_interval, _Prune())
        now = self.monotonic()
        for agent in self.agents.children():  # a restarted roster knows the probes still running
            agent_id = agent.path.rsplit("/", 1)[-1]
            if agent_id not in self.roster:  # (kept ones, with their addresses, as they were)
                self.roster.touch(agent_id, now)

    async def handle(self, message: Any) -> Any:
        if isinstance(message, ReportsArrived):
            left_out = 0
            refused: list[int] = []
            for done, arrived in enumerate(message.reports):
                try:
                    await self._arrived(arrived)
                except (MailboxFull, ActorStopped):
                    return HandedOn(done, left_out, tuple(refused))
                except TooManyAgents as exc:
                    if arrived.sequence is not None:
                        refused.append(arrived.sequence)
                    log.warning("report %d of agent %s left out here: %s", arrived.sequence, arrived.report.agent_id,
                                exc, extra={"event": "bus_report_refused", "agent_id": arrived.report.agent_id})
                except Exception as exc:  # noqa: BLE001  # that report's failure, not the batch's: see _left_out
                    left_out += 1
                    self._left_out(arrived, exc)
            return HandedOn(len(message.reports), left_out, tuple(refused))
        if isinstance(message, ReportArrived):
            await self._arrived(message)
            return None
        if isinstance(message, CheckAdmission):
            self._check_admission(message)
            return None
        if isinstance(message, HistoryReplayed):
            try:
                await self.topology.ask(ExpireStale(), timeout=HISTORY_EXPIRY_TIMEOUT)
            except (MailboxFull, ActorStopped, AskTimeout):
                return False  # the feed asks again
            return True
        if isinstance(message, RegisterProbe):
            agent = await self._agent(message.registration.agent_id, enrolled=message.enrolled,
                                      source=message.address, signer=message.signer)
            agent.tell(Register(message.registration, message.scope))
            return None
        if isinstance(message, _Prune):
            self.roster.retain(lambda a: self.agents.child(a) is not None)
            return None
        if isinstance(message, ProbeHeartbeat):
            agent = self.agents.child(message.agent_id)
            if agent is None:
                raise UnknownProbe(message.agent_id)
            self.roster.touch(message.agent_id, self.monotonic())
            at = self.clock()
            agent.tell(Heartbeat(at))
            return at
        return await super().handle(message)

    def _left_out(self, arrived: ReportArrived, exc: Exception) -> None:
        """A report from the stream whose handing on raised what no refusal
        says: left out (counted in the answer, ``HandedOn.left_out``), and
        the next report handed on.

        Crashing would drop the whole batch, and the restarted feed would
        offer it again, with the same report in it: every replica reading the
        stream would crash on it for as long as the stream keeps it (an agent
        id no actor can be named after did that). The report is input from
        the stream, not this actor's state: what it had done of it is undone
        where it would stay (the place it took, without an actor), as the
        topology leaves out a report it cannot merge (``merge_failed``).
        Logged with its traceback once per cause (the exception's type and
        where it was raised), then at debug level: one bad message may be
        one of thousands alike."""
        frames = traceback.extract_tb(exc.__traceback__)
        where = (frames[-1].filename, frames[-1].lineno or 0) if frames else ("", 0)
        cause = (type(exc).__name__, *where)
        first = self._failures_said.first(cause)
        log.log(logging.ERROR if first else logging.DEBUG,
                "report %d of agent %r on the report stream could not be handed on and was left out: %s: %s%s",
                arrived.sequence, arrived.report.agent_id[:80], type(exc).__name__, exc,
                " (reports failing alike are logged at debug level from now on)" if first else "",
                exc_info=exc if first else None, extra={"event": "bus_report_failed", "sequence": arrived.sequence})

    async def _arrived(self, message: ReportArrived) -> None:
        """Hand a report to the topology, the probe's actor and the hub (see the module docstring)."""
        report = message.report
        agent = await self._agent(report.agent_id, enrolled=message.enrolled, source=message.address,
                                  signer=message.signer,
                                  received_at=message.received_at)
        # Found once, here, for every history (one window: max_data_age). A
        # report handed on again after a full mailbox is counted again, which
        # changes no estimate.
        times = self.clocks.times(report, message.received_at, self.settings.storage.max_data_age, message.scope)
        # Topology first: when its mailbox is full the probe gets 503 and
        # resends; merging the same report twice changes nothing.
        self.topology.tell(MergeReport(report, message.received_at, message.partition, message.shape,
                                       sequence=message.sequence, history=message.history,
                                       enrolled=message.enrolled, scope=message.scope, times=times))
        values = host_metrics(report)  # once, for the probe's actor, the hub and the metrics API alike
        agent.tell(ReportReceived(report, message.packed, message.received_at, values, enrolled=message.enrolled,
                                  scope=message.scope, times=times))
        try:
            self.hub.tell(ReportSeen(report.agent_id, report.host_name, message.received_at, values))
        except MailboxFull:
            pass  # a live "report_update" is a courtesy; the report itself is accepted
        if self.metrics is not None and values:
            at = times.metrics
            samples = NodeSamples(report.agent_id, report.host_name, at, values)
            # Keyed by the store's bucket: while a metrics read holds the actor, an
            # agent's samples wait once a bucket (the store keeps one a bucket anyway)
            # rather than filling the mailbox and being dropped. Only the last
            # ``NODE_BUCKETS_WAITING`` buckets before it was received: older ones (a
            # probe's buffered reports, or made-up times) would each take a key.
            # Dropped when there is no room: counted (app_actor_mailbox_full_total);
            # the report itself is accepted.
            if message.received_at - at < NODE_BUCKETS_WAITING * RESOLUTION:
                self.metrics.offer_keyed((report.agent_id, int(at // RESOLUTION)), samples)
            else:
                self.metrics.offer(samples)

    async def _agent(self, agent_id: str, *, enrolled: bool, source: str | None = None,
                     received_at: float | None = None, signer: str | None = None) -> ActorRef:
        """The probe's actor, started if it is new, and the probe noted as heard
        from at ``received_at`` (wall clock; None: now).

        A report is heard from when it was received, not when it reaches this
        actor: a report replayed from the report stream at start may be an
        hour old, and an agent silent since then is stale here as it is on the
        replicas that were running, so it neither keeps its place from a new
        agent nor counts as seen at the restart (an actor it starts has been
        seen first then, too).

        At ``agents.max_agents`` a new probe takes the place of an unenrolled one:
        of one silent for ``agents.stale_threshold``, or, for a probe enrolled in a
        deployment (its report signed), of the one heard from longest ago.
        Enrolled probes are never forgotten for another, so they always have room
        while unenrolled ones take it. A new unenrolled probe from ``source``
        (its client address) takes the place of one from an address holding
        more (``AgentRoster.reclaimable``); with no room it is refused
        (``TooManyAgents``).
        """
        now = self.monotonic()
        heard = now if received_at is None else min(now, received_at - self._wall_offset(now))
        self._touch(agent_id, heard, source, enrolled, signer)
        if len(self.roster) > 2 * self.settings.agents.max_agents:
            # Actors that stopped by themselves; not this probe, whose actor may be about to start.
            self.roster.retain(lambda a: a == agent_id or self.agents.child(a) is not None)
        known = self.agents.actor(agent_id)  # the common case: no spec to build
        if known is not None:
            return known
        limit = self.settings.agents.max_agents
        for _ in range(ROOM_ATTEMPTS):
            try:
                return self.agents.ensure_actor(agent_spec(agent_id, self.settings, first_seen=received_at))
            except TooManyChildren as exc:
                limit = exc.limit
            except Exception:
                self.roster.forget(agent_id)  # no actor: no place either (the roster tracks only probes with one)
                raise
            if not await self._make_room(for_enrolled=enrolled, source=source):
                break
        self.roster.forget(agent_id)
        raise TooManyAgents(limit)

    def _touch(self, agent_id: str, heard: float, source: str | None, enrolled: bool,
               signer: str | None = None) -> None:
        """Note ``agent_id`` heard from, with the enrolled agent that signed it.

        The signer is the one the report stream names (``signer``), else the
        agent the directory says reports under ``agent_id``: a signed request
        attaches its probe id to its agent before it reaches the roster
        (``_probe_vouching.vouch``), so it is known for every request this replica
        served. A report another replica of an earlier version published names
        no signer, and this replica's directory does not know whom that replica
        attached it to: it counts as signed by an agent not named, bounded by
        the number of enrolled agents (``AgentRoster.touch``)."""
        if not enrolled:
            self.roster.touch(agent_id, heard, source, False)
            return
        directory = self.directory.value
        if signer is None:
            record = directory.reporting_agent(agent_id)
            signer = None if record is None else record.id
        if signer is not None:
            self.roster.touch(agent_id, heard, source, True, signer=signer)
        else:
            self.roster.touch(agent_id, heard, source, True, signers=self._enrolled_agents(directory))

    def _enrolled_agents(self, directory: AgentDirectory) -> int:
        """How many active enrolled agents ``directory`` holds (counted once per published directory)."""
        if self._counted is not directory:
            self._counted = directory
            self._enrolled_count = sum(len(directory.active_agents(h)) for h in directory.deployments)
        return self._enrolled_count

    def _wall_offset(self, now: float) -> float:
        """The wall clock less the monotonic one (``now``): what turns a report's
        ``received_at`` into the roster's monotonic times. Kept while it holds
        within ``wall_clock.STEP``: read anew each time, the two clocks' readings a
        few microseconds apart would order reports received at the same time
        by chance (and with them, which probe makes room for another)."""
        return self._wall.offset(self.clock(), now)

    def _check_admission(self, message: CheckAdmission) -> None:
        """Refuse (``TooManyAgents``) a new probe that ``_agent`` would refuse
        now; start and stop nothing (see ``CheckAdmission``). Probes whose
        actors stopped by themselves are forgotten on the way, as
        ``_make_room`` forgets them: they hold no place."""
        limit = self.settings.agents.max_agents  # the agents supervisor's max_children
        if self.agents.actor(message.agent_id) is not None or len(self.agents) < limit:
            return
        while True:
            victim = self._reclaimable(for_enrolled=message.enrolled, source=message.address,
                                       newcomer=message.agent_id)
            if victim is None:
                raise TooManyAgents(limit)
            if self.agents.child(victim) is not None:
                return
            # Its actor stopped by itself: not a place (``_make_room`` forgets it too, and looks again).
            self.roster.forget(victim)

    def _reclaimable(self, *, for_enrolled: bool, source: str | None, newcomer: str | None = None) -> str | None:
        """``AgentRoster.reclaimable`` now, with what this replica counts as enrolled."""
        directory = self.directory.value
        roster = self.roster

        def enrolled(agent_id: str) -> bool:
            # Attached here to an active agent, or signed by one this replica
            # cannot name (a report of the stream) and counted as enrolled.
            return directory.reporting_agent(agent_id) is not None or roster.enrolled_unnamed(agent_id)

        return roster.reclaimable(self.monotonic(), stale_after=self.settings.agents.stale_threshold,
                                  for_enrolled=for_enrolled, enrolled=enrolled, source=source, newcomer=newcomer)

    async def _make_room(self, *, for_enrolled: bool, source: str | None) -> bool:
        """Forget one unenrolled probe (``AgentRoster.reclaimable``); whether one was."""
        while True:
            victim = self._reclaimable(for_enrolled=for_enrolled, source=source)
            if victim is None:
                return False
            held_by = self.roster.source_of(victim)
            holding = self.roster.held_by(held_by) if held_by is not None else 0
            superseded = self.roster.superseded(victim)
            self.roster.forget(victim)
            try:
                await self.agents.stop_child(victim)
            except (ActorNotFound, ActorStopped):
                continue  # it had stopped by itself: look again
            self._forgotten(victim)
            unsaid = self._reclaims_said.due(self.monotonic())
            log.log(logging.DEBUG if unsaid is None else logging.INFO,
                    "forgot agent %s (%s) to make room for a new one from %s (agents.max_agents)%s", victim,
                    "its enrolled agent reports under another agent id now" if superseded else
                    f"of {holding} from {held_by or 'an unknown address'}", source or "an unknown address",
                    f"; {unsaid} more since the last such line" if unsaid else "",
                    extra={"event": "agent_reclaimed", "agent_id": victim, "address": held_by,
                           "for_address": source, "superseded": superseded})
            return True

    def _forgotten(self, agent_id: str) -> None:
        """Tell the actors that keep what a probe reported that it was forgotten:
        its nodes and its host metrics' series go now, rather than once stale or
        past ``storage.max_data_age``, so the probe taking its place has room
        for its own (the Metrics API keeps at most ``agents.max_agents`` probes'
        host series)."""
        try:
            self.topology.tell(ForgetAgent(agent_id))
        except MailboxFull:
            pass  # its nodes go once stale instead
        if self.metrics is not None:
            self.metrics.offer(ForgetNode(agent_id))  # dropped: its series go past storage.max_data_age instead
