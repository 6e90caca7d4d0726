"""The topology actor: owns the graph, merges reports in batches, publishes versions.

Reports arrive as ``MergeReport`` messages. Only each agent's newest report
matters to the graph, so the actor keeps the newest pending report per agent and
merges the pending set at most every ``MERGE_EVERY`` and publishes a version
at most every ``MERGE_INTERVAL`` (both at once when asked for a snapshot, so a
client reads its own writes). Under load this bounds the
merge work by the number of agents, not the number of reports; the full metric
history of every report is kept by the agent actors. A backlog (a burst of
reports from a thousand hosts) is merged in slices of ``SLICE_BUDGET``, with
the messages that came meanwhile handled in between and a version published at
least every ``MERGE_INTERVAL``, and a read waits for ``READ_BUDGET`` of merging
at most: it is answered like any other, with the newest version.

Faults: a report that makes the merge fail is logged and left out (the graph is
rebuilt from the other agents' reports), it does not crash the actor. If the
actor crashes anyway and restarts, it rebuilds the graph from the agent actors'
latest reports, and the reports queued in its mailbox are still there.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime
from collections.abc import Callable
from operator import attrgetter
from typing import Any

import attrs
import orjson
import trio

from trioscope.config import Settings
from trioscope.domain.clocks import ReportTimes, newer, report_times
from trioscope.domain.block_history import BlockHistory
from trioscope.domain.deployments import AgentDirectory
from trioscope.domain.timeseries import MetricHistory, Point
from trioscope.domain.wall_clock import WallSteps
from trioscope.domain.topology import (
    Expired, Node, NodeKind, Partition, TopologyDiff, TopologyGraph, TopologySnapshot, allowed_actions, kind_of,
)
from trioscope.runtime import (
    Actor,
    ActorFailed,
    ActorRef,
    ActorStopped,
    AskTimeout,
    MailboxFull,
    Published,
    Slicer,
    SupervisorRef,
    Terminated,
    in_steps,
)
from trioscope.wire import Report, decode_report, rfc3339_seconds

from .agent import LatestReport

log = logging.getLogger(__name__)
_ID = attrgetter("id")
_METRICS = attrgetter("metrics")

MERGE_INTERVAL = 0.25
"""Least seconds between two published versions (a read publishes at once);
live updates are coalesced to a few per second anyway."""
MERGE_EVERY = 0.05
"""Least seconds between merges of pending reports, shorter than between
versions: a decoded report is ~3,000 objects, and the pile waiting for a merge
was what set the collector's young collections off and what each one walked
(at 300 reports/s, ~75 reports at 0.25 s)."""
MAX_PENDING = 256
"""Merge at once when this many agents' reports are waiting. A decoded report is
~300 small objects (~100 KB): when a thousand agents report together, letting
them all wait for the next merge made a heap peak that fragmentation kept as
resident memory (measured: 437 vs 479 MB at 1,000 hosts). High enough that
agents reporting faster than the merge interval still coalesce."""
MERGE_SHARE = 0.2
"""Under load the interval grows so that merging takes at most this share of
the time (a merge of 1,000 agents' reports must not starve the requests)."""
READ_BUDGET = 0.02
"""Seconds of merging a read (a snapshot, details, stats) waits for at most,
once ``READ_AT_LEAST`` reports are merged: it sees every report accepted
before it unless a backlog is pending (a burst of a thousand hosts' reports is
seconds of merging), and then the newest version, the rest following in the
background."""
READ_AT_LEAST = 32
"""Pending reports a read has merged before it is answered, however long they
take (a slow machine): what a client sends before reading, it reads, unless
it sent more than this at once."""
SLICE_BUDGET = 0.03
"""Seconds of merging between two looks at the mailbox when merging in the background,
so that a read arriving meanwhile waits for no more than this."""
YIELD_AFTER = 0.02
"""Seconds of merging after which a flush lets other tasks (requests) run: one
large agent's report takes ~0.1 s to merge and as long to publish."""
SETTLE_SLICE = 256
"""Groups (pods, services, process groups) rebuilt between two chances for
other tasks to run: ~3 ms at 100 processes a host, more for services spanning
many hosts."""
STALE_CHECK_SHARE = 0.1
"""Share of ``agents.stale_threshold`` between two looks for stale agents
(``_ExpireNodes``): their nodes go at most this share of the threshold late,
not at the next cleanup, minutes later (the agent list showed them stale
while the topology still showed them up). A look is one pass over the
partitions (~0.5 ms at 10,000 agents), so it is a timer, never per report."""
STALE_CHECK_LEAST = 1.0
"""Least seconds between two looks for stale agents, whatever the threshold."""
PROCESS_HISTORY = 15 * 60.0
"""Seconds of per-process metric history. Hosts and containers keep the full
``max_data_age``; a full hour for 100,000 processes would alone take ~250 MB."""


EVERY_BUCKET_BELOW = 64
"""Reports waiting below which an agent's report waiting is merged, not
replaced, when its next one is for another bucket of the history (``handle``)."""


@attrs.frozen
class MergeReport:
    report: Report
    received_at: float
    partition: Partition | None = None
    """The report's partition, when the sender built it (off the event loop)."""
    shape: bytes | None = None
    """The report's ``report_shape``, when the sender found it (where the report
    was decoded: the actor, which every report's merge waits for, need not)."""
    sequence: int = 0
    """The report's sequence on the report stream (``bus.url``), 0 without a bus:
    versions published after merging it are at least this, so that every replica
    numbers the topology alike."""
    history: bool = False
    """Replayed from the stream at start: merged in turn with the agent's other
    reports rather than replaced by a newer one, so its metrics are recorded."""
    enrolled: bool = False
    """Signed by an enrolled agent (``ReportArrived.enrolled``): only then do
    its containers offer controls (after a restart of this actor too: the
    agents' actors keep it with their latest reports, ``_recover``)."""
    scope: str | None = None
    """The ``node_scope`` of the enrolled agent's tenant (``ReportArrived.scope``),
    which its nodes' ids carry (kept with the latest reports alike)."""
    times: ReportTimes | None = None
    """Its times on the server's clock, by its agent's clock offset (the
    roster's ``ClockOffsets``; kept with the latest reports alike): which of
    the agent's reports is newest, its nodes' ``last_seen`` and where its
    metrics go. None: its own time believed as it is (``TopologyActor._times``)."""


@attrs.frozen
class GetSnapshot:
    """Answered with the current ``TopologySnapshot`` (pending reports merged first)."""


@attrs.frozen
class GetNodeDetails:
    """Answered with the node's details and metric points, or None."""

    node_id: str
    seconds: float


@attrs.frozen
class GetNodeSources:
    """Answered with the ids of the agents whose reports describe the node
    (``()`` if none): a control goes to one of them, never to a node's merged
    metadata, which any reporter can add to."""

    node_id: str
    offering_controls: bool = False
    """Only the agents whose version of the node offers controls (``TopologyGraph.controllers``)."""


@attrs.frozen
class ReporterSilent:
    """Answered with whether nothing was reported under probe agent id
    ``reporter_id`` for ``agents.stale_threshold``: its partition is gone or
    that old, and no report of it waits to be merged. What an enrolled agent's
    claim on the id lasts for (``_probe_vouching.vouch``)."""

    reporter_id: str


@attrs.frozen
class ForgetAgent:
    """The server stopped tracking this agent (to make room for another): its
    nodes go now rather than once stale, and with them their metric history
    (``TopologyActor._forget_history``), also when they were removed as stale
    before."""

    agent_id: str


@attrs.frozen
class ExpireStale:
    """Answered with None once every report sent before is merged and the
    agents not heard from for ``agents.stale_threshold`` are removed (what a
    cleanup does, now): sent once a replica has replayed the report stream,
    whose oldest reports may describe agents silent for long."""


@attrs.frozen
class GetStats:
    """Answered with counts of nodes, edges, agents and metric history."""


@attrs.frozen
class Subscribe:
    """``listener`` is told ``TopologyPublished`` after every new version."""

    listener: ActorRef


@attrs.frozen
class TopologyPublished:
    snapshot: TopologySnapshot
    diff: TopologyDiff


@attrs.frozen
class _Flush:
    pass


@attrs.frozen
class _Cleanup:
    pass


@attrs.frozen
class _ExpireNodes:
    """Remove the stale agents' nodes (``_expire_nodes``), between cleanups."""


@attrs.frozen
class Departed:
    """An agent whose nodes were removed as stale: their metric history is
    kept while it holds its place (its actor lives on for ``max_data_age``,
    as long as the history; back by then, it finds it), and goes at once if
    it is forgotten to make room for another (``ForgetAgent``)."""

    series: frozenset[str]
    """Its nodes' keys in ``TopologyHistory.nodes`` (its processes' and process
    groups' rows are found by the agent)."""
    received_at: float
    """When its last report was received: past the history's retention, the
    series have expired and the record goes (``TopologyActor._cleanup``)."""


@attrs.frozen(eq=False)
class TopologyHistory:
    """The metric history the topology records, kept for the actor's spec
    (``Kept``), not made by the actor: a crash restarts the actor with its
    graph rebuilt from the agents' latest reports, and the history is still
    what it was. Recording a report's metrics again after a restart changes
    nothing: a bucket keeps its last value."""

    nodes: MetricHistory
    processes: BlockHistory
    """Processes' metrics, a row per report (recording ~100 series one by
    one was a sixth of a metrics-only merge), written by their agents."""
    process_groups: BlockHistory
    """Process groups' sums of their processes' two metrics (CPU, memory), a
    row per report as the processes' (a series each cost ~1.7 KB a group
    and ~1.5 us a group per report) and kept as long: there are as many
    groups as names, at most one a process, each at most a process's history."""
    departed: dict[str, Departed] = attrs.field(factory=dict)
    """Agents removed as stale whose nodes' history is kept, by agent id."""
    began: float | None = None
    """When it began, for a server with no report bus: it is this process's
    memory, so nothing before then is known (a restart starts it empty), and
    the UI says so rather than draw a node as if it had no past. None: rebuilt
    from the report stream at start, as far back as the stream keeps."""

    @classmethod
    def for_settings(cls, settings: Settings, now: float) -> TopologyHistory:
        retention = settings.storage.max_data_age
        process_retention = min(retention, PROCESS_HISTORY)
        return cls(MetricHistory(retention), BlockHistory(process_retention), BlockHistory(process_retention),
                   began=None if settings.bus.url else now)


@attrs.define(eq=False)
class TopologyListeners:
    """Who is told each version (the hub: ``Subscribe``), and the last version
    told, kept for the actor's spec (``Kept``) as its history is: the hub
    subscribes once, and is told nothing when the topology restarts. A
    restarted topology tells them its rebuilt graph as a version that follows
    none they have (they start again from it: the clients get a reset), its
    versions going on from the last told (a client ignores a version it has
    seen, and would have ignored every one up to it)."""

    refs: dict[ActorRef, None] = attrs.Factory(dict)
    """Each once whatever how often it subscribed (a restarted hub subscribes
    again with the same ref), in subscription order."""
    version: int = 0


class TopologyActor(Actor):
    def __init__(self, settings: Settings, agents_path: str | None = None,
                 clock: Callable[[], float] = time.time, history: TopologyHistory | None = None,
                 directory: Published[AgentDirectory] | None = None,
                 listeners: TopologyListeners | None = None,
                 monotonic: Callable[[], float] = trio.current_time) -> None:
        """``history``: what an earlier incarnation recorded (the spec's
        ``Kept``); None: a history of its own, lost with it. ``directory``:
        what the directory actor publishes, where an enrolled agent's
        capabilities say which controls its containers offer (None: all).
        ``listeners``: an earlier incarnation's (the spec's ``Kept``); None:
        its own."""
        self.settings = settings
        self.directory = directory
        self.agents_path = agents_path
        self.clock = clock
        self.monotonic = monotonic
        self._wall = WallSteps()
        self._moved: dict[tuple[str, float], float] = {}
        """(Agent, receipt) of each report taken in when the clock was set ->
        by how much it was set since (``_follow_clock``)."""
        self.graph = TopologyGraph(clock())
        self.snapshot = self.graph.current
        if history is None:
            history = TopologyHistory.for_settings(settings, clock())
        self.history_began = history.began
        self.history = history.nodes
        self.process_history = history.processes
        self.group_history = history.process_groups
        self.departed = history.departed
        self.pending: dict[str, MergeReport] = {}
        self.told = listeners if listeners is not None else TopologyListeners()
        self.listeners = self.told.refs
        # Its first version (from an empty snapshot, version 0) follows none a
        # listener of an earlier incarnation has, and is numbered after them.
        self.graph.version = self.told.version
        self.merge_failures = 0
        self.sequence = 0
        """Stream sequence of the newest report merged (0 without a bus)."""
        self._last_flush = -float("inf")
        self._last_flush_duration = 0.0
        self._slices = Slicer(YIELD_AFTER)
        """Its ``pause``: a checkpoint once a flush has run ``YIELD_AFTER`` without one, so that
        requests get in between merges (and their parts) of large reports."""
        self._last_publish = -float("inf")
        self._groups: dict[str, set[float]] = {}
        """Pods and services of the reports merged since the last version,
        with those reports' metric times: recorded once the version is settled."""
        self._grouped: dict[str, set[float]] = {}
        """The agents whose reports were merged since the last version, with
        those reports' metric times: their process groups are recorded, a
        row per report, once the version is settled."""
        self._unrecorded: set[str] = set()
        """The agents of those reports: one merged again before its groups
        are recorded has them recorded first (``_flush``)."""

    async def on_start(self) -> None:
        self._flush_alarm = self.context.alarm(_Flush(), minimum=0.0)
        await self._recover()
        cleanup = self.settings.storage.cleanup_interval
        self.context.every(cleanup, _Cleanup())
        period = stale_check_period(self.settings)
        if period < cleanup:  # else each cleanup removes them in time
            self.context.every(period, _ExpireNodes())

    async def _recover(self) -> None:
        """After a restart: rebuild the graph from the agents' latest reports."""
        if self.agents_path is None:
            return
        agents: SupervisorRef = self.context.system.lookup(self.agents_path)
        for ref in agents.children():
            try:
                latest = await ref.ask(LatestReport(), timeout=2.0)
            except (ActorStopped, ActorFailed, AskTimeout, MailboxFull):
                continue
            if latest is not None:
                report = decode_report(orjson.loads(latest.raw))
                self.pending[report.agent_id] = MergeReport(report, latest.received_at, enrolled=latest.enrolled,
                                                            scope=latest.scope, times=latest.times)
        if self.pending:
            log.warning("topology rebuilt from %d agents' latest reports", len(self.pending))
            await self._flush(None)

    async def handle(self, message: Any) -> Any:
        self._follow_clock()  # before a report received after a step is taken for one received before
        if isinstance(message, MergeReport):
            agent = message.report.agent_id
            current = self.pending.get(agent)
            if current is not None and message.history:
                # Rebuilding history from the stream: the pending report is
                # merged (and its metrics recorded) before the next one comes.
                await self._flush(None, publish=False)
                current = None
            elif (current is not None and len(self.pending) < EVERY_BUCKET_BELOW
                    and self._another_bucket(current, message)):
                # A probe sending what it buffered back to back: its pending
                # report is merged before the next one replaces it, which would
                # leave its bucket without a point. Not when many wait: a newer
                # report replacing the older is how the actor sheds load when
                # behind (at the probes' default interval, each report of an
                # agent is in another bucket than its last).
                await self._take(self.pending.pop(agent))
                current = None
            if current is None or newer(self._times(message).seen, message.received_at, self._times(current).seen):
                self.pending[agent] = message
            if len(self.pending) >= MAX_PENDING:
                await self._flush(SLICE_BUDGET, publish=False)
            return None
        if isinstance(message, GetSnapshot):
            await self._flush(READ_BUDGET, at_least=READ_AT_LEAST)
            return self.snapshot
        if isinstance(message, GetNodeDetails):
            await self._flush(READ_BUDGET, at_least=READ_AT_LEAST)
            return self._details(message.node_id, message.seconds)
        if isinstance(message, ForgetAgent):
            self.pending.pop(message.agent_id, None)
            partition = self.graph.partitions.get(message.agent_id)
            if self.graph.remove_agent(message.agent_id):
                self._publish()
            self._forget_history(message.agent_id, partition)
            return None
        if isinstance(message, ReporterSilent):
            if message.reporter_id in self.pending:
                return False
            partition = self.graph.partitions.get(message.reporter_id)
            now = self.clock()
            if partition is None:
                return True
            moved = self._moved.get((message.reporter_id, partition.received_at), 0.0)
            return partition.received_at + moved < now - self.settings.agents.stale_threshold
        if isinstance(message, GetNodeSources):
            await self._flush(READ_BUDGET, at_least=READ_AT_LEAST)
            if message.offering_controls:
                return self.graph.controllers(message.node_id)
            return self.graph.sources(message.node_id)
        if isinstance(message, _Flush):
            await self._flush(SLICE_BUDGET, publish=False)
            return None
        if isinstance(message, _Cleanup):
            await self._flush(SLICE_BUDGET)
            await self._cleanup()
            return None
        if isinstance(message, _ExpireNodes):
            await self._expire_nodes()
            return None
        if isinstance(message, ExpireStale):
            await self._flush(None, publish=False)
            await self._cleanup()
            return None
        if isinstance(message, GetStats):
            await self._flush(READ_BUDGET, at_least=READ_AT_LEAST)
            return self._stats()
        if isinstance(message, Subscribe):
            self.listeners[message.listener] = None
            self.context.watch(message.listener)
            return self.snapshot
        if isinstance(message, Terminated):
            for listener in [listener for listener in self.listeners if listener.path == message.path]:
                del self.listeners[listener]
            return None
        return await super().handle(message)

    async def on_idle(self) -> None:
        if self.pending and self._next_flush() <= 0:
            await self._flush(SLICE_BUDGET, publish=False)
        else:
            self._schedule(at_once=False)

    def _next_flush(self) -> float:
        """Seconds until the next merge of pending reports is due."""
        interval = max(MERGE_EVERY, self._last_flush_duration / MERGE_SHARE)
        return self._last_flush + interval - trio.current_time()

    def _schedule(self, at_once: bool) -> None:
        """A ``_Flush`` for the reports still pending: ``at_once`` for a
        backlog (a flush stopped at its budget), else when they are due; or,
        none pending, for what is merged and not yet published, when the next
        version is due. No message may come to wake us otherwise. One set
        already stays as it is, even for later (a backlog then waits for it,
        while reads get in; what it leaves, it schedules)."""
        if self._flush_alarm.armed:
            return
        if self.pending:
            delay = 0.0 if at_once else max(0.0, self._next_flush())
        elif self.graph.dirty:
            delay = max(0.0, self._last_publish + MERGE_INTERVAL - trio.current_time())
        else:
            return
        self._flush_alarm.after(delay)

    async def on_stop(self) -> None:
        # Every report accepted before shutdown is merged before we go.
        merged = len(self.pending)
        await self._flush(None)
        log.info("final topology: version %d, %d nodes from %d agents (%d reports merged at shutdown)",
                 self.snapshot.version, len(self.graph.nodes), len(self.graph.partitions), merged,
                 extra={"event": "final_topology", "version": self.snapshot.version,
                        "nodes": len(self.graph.nodes), "agents": len(self.graph.partitions)})

    async def _flush(self, budget: float | None, publish: bool = True, at_least: int = 1) -> None:
        """Merge pending reports, oldest first, for about ``budget`` seconds
        (None: all of them) or until ``at_least`` are merged; what is left is merged by a ``_Flush`` sent at
        once, after the messages that came meanwhile (a read among them), or by the one set already
        (``_schedule``: at most ``MERGE_EVERY``, or the publish interval, from the last merge).
        Then publish, unless not ``publish`` and the last version is younger
        than ``MERGE_INTERVAL`` (a version of 1,000 hosts costs ~5 ms to
        publish, too much for every merge; ``_schedule`` sends the ``_Flush``
        that publishes it when due)."""
        if self.pending:
            self._last_flush = trio.current_time()  # merging nothing does not start an interval
            started = time.perf_counter()
            self._slices.restart()
            merged = 0
            while self.pending and (budget is None or merged < at_least or time.perf_counter() - started < budget):
                merged += 1
                await self._take(self.pending.pop(next(iter(self.pending))))
            self._last_flush_duration = time.perf_counter() - started
        if publish or trio.current_time() >= self._last_publish + MERGE_INTERVAL:
            await self._record_settled_groups()
            await self._publish_in_steps()
            self._last_publish = trio.current_time()
        self._schedule(at_once=True)

    async def _take(self, merge: MergeReport) -> None:
        """Merge one report taken from ``pending`` and record its metrics."""
        self.sequence = max(self.sequence, merge.sequence)
        if merge.report.agent_id in self._unrecorded:
            # Its groups' sums at its previous report's time are
            # recorded before this one changes them: a bucket must hold
            # the sum after the report of its time, whatever the
            # batches (a replica rebuilding history from the stream
            # merges each agent's reports in turn, a live one mostly
            # one per version: they recorded different sums, and a pod
            # gone by the batch's end lost its points).
            await self._record_settled_groups()
        if self._merge(merge):
            await self._slices.pause()
            self._record(merge, self._groups, self._grouped)
            self._unrecorded.add(merge.report.agent_id)
        await self._slices.pause()

    def _another_bucket(self, pending: MergeReport, newer: MergeReport) -> bool:
        """Whether ``newer``'s metrics go in another history bucket than those
        of ``pending``, the agent's report waiting to be merged (in the same
        one, the last written wins anyway: ``pending`` may go unmerged)."""
        resolution = self.history.resolution
        return self._times(pending).metrics // resolution != self._times(newer).metrics // resolution

    def _times(self, merge: MergeReport) -> ReportTimes:
        """``merge``'s times on the server's clock: as the roster found them,
        else (no clock offset known) by the report's own time, with the one
        history window every history's times are found with."""
        if merge.times is not None:
            return merge.times
        return report_times(merge.report, merge.received_at, self.settings.storage.max_data_age)

    async def _record_settled_groups(self) -> None:
        """Rebuild the groups once for all the reports merged since they were
        last recorded, in slices between which requests get in (a backlog of a
        thousand hosts: thousands of groups), and record their sums."""
        self._slices.restart()
        while not self.graph.settle(SETTLE_SLICE):
            await self._slices.pause()
        self._record_groups(self._groups, self._grouped)
        self._groups, self._grouped, self._unrecorded = {}, {}, set()

    def _merge(self, merge: MergeReport) -> bool:
        """Merge one report into the graph: False if it changed nothing (an
        older report) or could not be merged (then logged and left out)."""
        agent = merge.report.agent_id
        try:
            applied = self.graph.apply(merge.report, merge.received_at, merge.partition, merge.shape,
                                       enrolled=merge.enrolled, allowed=self._allowed(merge), scope=merge.scope,
                                       seen=self._times(merge).seen)
        except Exception as exc:
            self.merge_failures += 1
            log.error("report from agent %s could not be merged and was left out: %s: %s",
                      agent, type(exc).__name__, exc, exc_info=exc,
                      extra={"event": "merge_failed", "agent_id": agent})
            self.graph = self.graph.without(agent)
            return False
        return applied

    def _allowed(self, merge: MergeReport) -> frozenset[str] | None:
        """The controls the enrolled agent that signed ``merge`` runs, from the
        capabilities it enrolled with (its ``--allow``); None: all of them (an
        unsigned report offers none anyway). Read at each merge: an agent
        enrolled again with others shows them from its next report."""
        if not merge.enrolled or self.directory is None:
            return None
        record = self.directory.value.reporting_agent(merge.report.agent_id)
        return allowed_actions(record.capabilities, record.version) if record is not None else None

    def _record(self, merge: MergeReport, groups: dict[str, set[float]], grouped: dict[str, set[float]]) -> None:
        """Record the metrics of a merged report's nodes; add the pods and
        services they belong to, with the report's metric time, to
        ``groups``, and its agent, with that time, to ``grouped`` if its
        processes are in groups (recorded once the batch is settled:
        ``_record_groups``)."""
        at = self._times(merge).metrics
        partition = self.graph.partitions[merge.report.agent_id]
        nodes = partition.nodes.values()
        process = NodeKind.PROCESS
        processes = [node for node in nodes if node.kind is process]
        self.process_history.record(merge.report.agent_id, at, tuple(map(_ID, processes)),
                                    list(map(_METRICS, processes)))
        self.history.record_many(
            at, [(node.id, node.metrics) for node in nodes if node.kind is not process and node.metrics])
        for group_id in (*partition.pods, *partition.services):  # sums over their containers
            groups.setdefault(group_id, set()).add(at)
        if partition.process_groups:
            grouped.setdefault(partition.agent_id, set()).add(at)

    def _record_groups(self, groups: dict[str, set[float]], grouped: dict[str, set[float]]) -> None:
        """Record the pods' and services' sums, as settled after a batch, at
        the metric times of the batch's reports that touched them (a bucket
        holds its last value: the group's sum once the batch is merged); and
        the sums of the process groups of the agents in ``grouped``, a row
        per report."""
        nodes = self.graph.nodes
        for group_id, times in groups.items():
            group = nodes.get(group_id)
            if group is not None:
                for at in sorted(times):
                    self.history.record(group_id, at, group.metrics)
        partitions = self.graph.partitions
        for agent, times in grouped.items():
            partition = partitions.get(agent)
            if partition is None:  # gone since (forgotten)
                continue
            keys = partition.process_groups  # one tuple for all its rows while they stay
            found = list(map(nodes.get, keys))
            # A process's two metrics, summed: a group's history costs at most
            # what one process's does (the memory budget counts processes).
            metrics = [{"cpu_percent": node.metrics["cpu_percent"], "memory_mb": node.metrics["memory_mb"]}
                       for node in found if node is not None]
            if len(metrics) < len(keys):
                # A process another agent describes too is grouped by its
                # newest name, maybe not the one this agent's report gives.
                keys = tuple(key for key, node in zip(keys, found, strict=True) if node is not None)
            for at in sorted(times):
                self.group_history.record(agent, at, keys, metrics)

    async def _publish_in_steps(self) -> None:
        """``_publish``, letting requests run between its steps: a version of
        many new hosts (a burst of probes after a restart) compares ~130
        nodes and ~300 edges of each."""
        self._number_version()
        self._announce(*await in_steps(self.graph.publishing(self.clock()), self._slices.pause))

    def _publish(self) -> None:
        self._number_version()
        self._announce(*self.graph.publish(self.clock()))

    def _number_version(self) -> None:
        if self.sequence > self.graph.version:
            # With a bus the version is the stream sequence of what is merged:
            # the same on every replica that merged as far.
            self.graph.version = self.sequence - 1

    def _announce(self, snapshot: TopologySnapshot, diff: TopologyDiff | None) -> None:
        self.snapshot = snapshot
        if diff is None:
            return
        self.told.version = snapshot.version
        for listener in list(self.listeners):
            try:
                listener.tell(TopologyPublished(snapshot, diff))
            except MailboxFull:
                # The listener is behind: it will see a later diff whose
                # previous_version does not match, and resynchronise.
                pass
            except ActorStopped:
                self.listeners.pop(listener, None)

    def _forget_history(self, agent_id: str, partition: Partition | None) -> None:
        """Drop the metric history of a forgotten agent's nodes, ``partition``'s
        (its last, None if it was removed before) and those it had when
        removed as stale (``Departed``): what no node of the graph still is
        (a pod or service another host's containers are in, a host another
        agent id reports) goes, with the rows its processes and process
        groups were written in. Without this a forgotten agent's series
        stayed for ``max_data_age``, beyond what ``max_agents`` agents hold
        (replicas at 10,000 agents held ~21,000 more for each 1,000 new
        hosts that took places).

        A node two agents removed as stale both described goes with the
        first of them forgotten."""
        series: set[str] = set()
        departed = self.departed.pop(agent_id, None)
        if departed is not None:
            series.update(departed.series)
        if partition is not None:
            series.update(_series_of(partition))
        for key in series:
            if not self.graph.agents_of(key):  # (the graph need not be settled for this)
                self.history.drop(key)
        self.process_history.forget(agent_id)
        self.group_history.forget(agent_id)

    def _depart(self, expired: Expired, now: float) -> None:
        """Note the agents ``expired`` removed as stale as ``Departed`` (their
        partitions as they were), and forget the notes whose history has
        expired by ``now``."""
        for agent, partition in expired.partitions.items():
            before = self.departed.get(agent)
            series = frozenset(_series_of(partition))
            self.departed[agent] = Departed(series if before is None else before.series | series,
                                            partition.received_at)
        horizon = now - self.history.retention
        for agent in [a for a, d in self.departed.items() if d.received_at < horizon]:
            del self.departed[agent]

    async def _remove_stale(self, now: float) -> Expired:
        """Remove the nodes of the agents not heard from for ``agents.stale_threshold``
        by ``now``, letting requests run between agents; their metric history stays
        (``Departed``). An agent whose newer report waits in ``pending`` stays: removed
        now, its nodes would come back with that report a moment later."""
        self._slices.restart()
        expiring = self.graph.expiring(now, self.settings.agents.stale_threshold, keep=self.pending,
                                       moved=self._moves())
        expired = await in_steps(expiring, self._slices.pause)
        self._depart(expired, now)
        return expired

    def _follow_clock(self) -> None:
        """Look whether the wall clock was set since the last message: if so,
        every report taken in before (merged, or pending) is moved by the step
        (``_moves``), and one line says so. Looked at each message, so that a
        report received after the step is never taken for one before it (set
        back, it would have been moved back with the others, and its agent
        removed as silent at once). Not with a bus: every receive time is then
        the stream's, stamped by whichever replica took the report, on clocks
        the replicas keep alike (NTP); a replica whose clock was set agrees with
        theirs now, and moving their times by its step kept a silent agent on
        its graph for as long."""
        if self.settings.bus.url:
            return
        step = self._wall.step(self.clock(), self.monotonic())
        if not step:
            return
        taken = [(agent, p.received_at) for agent, p in self.graph.partitions.items()]
        taken += [(agent, m.received_at) for agent, m in self.pending.items()]
        for key in taken:
            self._moved[key] = self._moved.get(key, 0.0) + step
        # Said at warning level by the alerts actor, which follows it in every mode.
        log.info("topology: the clock was set %s by %.0f s: no agent is stale for it", "forward" if step > 0
                 else "back", abs(step), extra={"event": "clock_set_topology", "seconds": round(step, 3)})

    def _moves(self) -> dict[str, float]:
        """Seconds the wall clock was set by since each agent's partition was
        received (``TopologyGraph.stale``'s ``moved``); what no partition or
        pending report holds any more is forgotten (a newer report replaced
        it, received on the clock as set)."""
        if not self._moved:
            return {}
        held = {(agent, p.received_at) for agent, p in self.graph.partitions.items()}
        held.update((agent, m.received_at) for agent, m in self.pending.items())
        self._moved = {key: moved for key, moved in self._moved.items() if key in held}
        partitions = self.graph.partitions
        return {agent: moved for (agent, at), moved in self._moved.items()
                if (p := partitions.get(agent)) is not None and p.received_at == at}

    async def _expire_nodes(self) -> None:
        """What a cleanup does to the graph, between cleanups: the stale agents'
        nodes go at about ``agents.stale_threshold``; the version that shows
        it is published as any merge's is (``_schedule``). Each replica does
        this by its own clock, as its cleanups."""
        expired = await self._remove_stale(self.clock())
        if not expired.agents:
            return
        self._schedule(at_once=False)
        log.info("removed %d stale agents (%d nodes); %d agents remain",
                 len(expired.agents), expired.nodes, len(self.graph.partitions),
                 extra={"event": "stale_removed", "agents_removed": len(expired.agents),
                        "nodes_removed": expired.nodes})

    async def _cleanup(self) -> None:
        now = self.clock()
        expired = await self._remove_stale(now)
        points = self.history.expire(now)
        process_points = self.process_history.expire(now)
        group_points = self.group_history.expire(now)
        await self._publish_in_steps()
        log.info(
            "cleanup: removed %d stale agents (%d nodes), %d metric points and %d series; %d nodes remain",
            len(expired.agents), expired.nodes,
            points.points_removed + process_points.points_removed + group_points.points_removed,
            points.groups_removed + process_points.groups_removed + group_points.groups_removed,
            len(self.graph.nodes),
            extra={"event": "cleanup", "agents_removed": len(expired.agents), "nodes_removed": expired.nodes,
                   "points_removed": (points.points_removed + process_points.points_removed
                                      + group_points.points_removed)},
        )

    def _details(self, node_id: str, seconds: float) -> dict[str, Any] | None:
        details = self.graph.details(node_id)
        if details is None:
            return None
        try:
            kind = kind_of(node_id)
        except ValueError:
            return None
        history: MetricHistory | BlockHistory = (
            self.process_history if kind is NodeKind.PROCESS
            else self.group_history if kind is NodeKind.PROCESS_GROUP else self.history)
        points = history.points(node_id, self.clock() - seconds)
        if kind is NodeKind.PROCESS:
            points = _since_started(points, self.graph.nodes.get(node_id), history.resolution)
        details["metrics_history"] = {
            "resolution_seconds": history.resolution,
            "points": [_point(p) for p in points],
        }
        if self.history_began is not None:
            details["metrics_history"]["since"] = rfc3339_seconds(self.history_began)
        details["agents"] = self.graph.agents_of(node_id)
        return details

    def _stats(self) -> dict[str, Any]:
        nodes = self.history.stats()
        processes = self.process_history.stats()
        process_groups = self.group_history.stats()
        edges = self.graph.edge_cache.stats()
        return {
            "topology": {**self.snapshot.counts(), "agents": len(self.graph.partitions),
                         "pending_reports": len(self.pending), "merge_failures": self.merge_failures,
                         "stream_sequence": self.sequence},
            "storage": {
                "metric_series": nodes.groups + processes.groups + process_groups.groups,
                "metric_points": nodes.points + processes.points + process_groups.points,
                "metric_bytes": nodes.bytes + processes.bytes + process_groups.bytes,
                # The encoded edges kept for big listings (bounded: edge_cache_limit).
                "edge_cache_bytes": edges.bytes,
                "edge_cache_limit": edges.limit,
                "edge_cache_runs": edges.runs,
            },
        }


def stale_check_period(settings: Settings) -> float:
    """Seconds between two looks for stale agents: ``STALE_CHECK_SHARE`` of the
    threshold, at least ``STALE_CHECK_LEAST``; none is needed when that is not
    shorter than ``storage.cleanup_interval`` (each cleanup looks too)."""
    return max(STALE_CHECK_LEAST, settings.agents.stale_threshold * STALE_CHECK_SHARE)


def _series_of(partition: Partition) -> list[str]:
    """The keys ``partition``'s nodes may have in ``TopologyHistory.nodes``:
    its nodes but processes (``processes``), and its pods and services."""
    process = NodeKind.PROCESS
    return [*(i for i, node in partition.nodes.items() if node.kind is not process),
            *partition.pods, *partition.services]


def _since_started(points: list[Point], node: Node | None, resolution: float) -> list[Point]:
    """A process's ``points`` from the bucket it started in: a pid taken again is
    the same node id, and the points of the process that had it before (a burst
    of CPU before this one existed) are not this one's. All of them when none
    is that late: its start is on its probe's clock, and the points of a probe
    whose clock is off are on the server's (shifted by its offset: ``report_times``)."""
    started = node.metadata.get("started_at") if node is not None else None
    if not isinstance(started, str) or not points:
        return points
    start = datetime.fromisoformat(started.replace("Z", "+00:00")).timestamp()
    start -= start % resolution
    kept = [p for p in points if p.timestamp >= start]
    return kept or points


def _point(point: Point) -> dict[str, Any]:
    return {"timestamp": rfc3339_seconds(point.timestamp), **point.values}
