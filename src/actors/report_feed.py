"""The report feed (``/root/report_feed``): the report stream, read to its end
and on, handed to the roster as if the reports had been posted here. Runs only
with a bus (``bus.url``).

Every replica reads every report (its own included: a replica that publishes a
report does not merge it until it comes back from the stream, so all replicas
merge the same reports in the same order). Each report goes to the roster with
its stream sequence (the topology's versions follow it) and, while the replica
is still reading what was on the stream when it started, marked as history:
the topology then merges each of an agent's reports in turn rather than only
its newest, so the metric history is rebuilt too.

Before it says it has read the stream to its end (``BusProgress.caught_up``,
which ``/health/ready`` waits for, and a worker of ``--workers`` started beside
a serving one before it takes connections: ``ServingWorker.hold``), the topology removes the nodes of agents
stale by then (``HistoryReplayed``): what it replayed may be older than the
stale threshold. So it does once it has read again to its end a stream that
was made again while it ran (the reader starts again from the stream's first
report: a sequence at or below the last one merged), which may as well hold
reports of agents every replica removed long ago: without it, this replica
would show them as up until its next cleanup, and the replicas disagree.

Where it has read to is kept in ``BusProgress``, which outlives a restart of
this actor: a restarted feed goes on from there.

Which enrolled agent reports under a probe agent id (its claim: ``_probe_vouching.vouch``)
is learnt from the stream too (``_vouched``): a signed report attaches its id
to its signer here as on the replica that took it, and an unsigned one under
an id an agent holds here is left out unless that claim lapsed. Learnt only
where a request arrived, the claim held on one replica: another answered 202
to an unsigned report under the id and every replica merged it, and showed the
agent's own tenant no details of its probe. Rebuilt from the stream, claims
outlive a replica's restart as the topology does.
"""

from __future__ import annotations

import functools
import logging
import math
import time
from typing import TYPE_CHECKING, Any

import trio

from trioscope.bus import BadEnvelope, BusUnavailable, unpack_report
from trioscope.domain.deployments import AgentDirectory
from trioscope.domain.rates import FirstSeen, Lull
from trioscope.domain.stream_claims import StreamClaims, Verdict
from trioscope.runtime import Actor, ActorRef, ActorSpec, ActorStopped, AskTimeout, MailboxFull, Published, Slicer

from .directory import AttachReporter, ReleaseReporter
from .refusals import ReporterTaken
from .roster import HISTORY_EXPIRY_TIMEOUT, HandedOn, HistoryReplayed, ReportArrived, ReportsArrived
from .topology import ReporterSilent

if TYPE_CHECKING:
    from trioscope.bus import ReportBus  # nats-py: the feed runs only with a bus, which imports it

log = logging.getLogger(__name__)

RETRY = 0.05
"""Seconds before a report the roster had no room for is offered again."""
YIELD_AFTER = 0.02
"""Seconds of decoding after which the feed lets requests run."""
OFF_LOOP_BYTES = 32 * 1024
"""Envelopes larger than this (compressed; a typical host's is ~5 KB, one of
the HTTP edge's off-loop reports, 256 KB of JSON, ~35 KB) are read in a worker
thread: a 10 MB report's takes tens of ms, which on the event loop would hold
up every request at once."""
GATHER = 0.005
"""Seconds the feed lets reports gather on the stream after it took fewer than
``FEW`` at once (once caught up): each take wakes the asyncio thread and then
Trio, and at a few hundred reports a second taken one by one that cost more
than reading them (~0.4 ms of CPU per report in the bridge, against ~0.03 ms
read in batches). A report is merged up to this much later."""
FEW = 8
HISTORY_WAIT = HISTORY_EXPIRY_TIMEOUT + 10.0
"""Seconds the feed waits for the roster to have the replayed history's stale agents removed."""
UNAVAILABLE_WAIT = 1.0
"""Seconds between two attempts to read the stream while the bus is away."""
CLAIMS_ASK_TIMEOUT = 10.0
UNSIGNED_SAID = 1024
"""Probe agent ids whose unsigned reports left out are logged at warning level
(once each) at most: past them, every one is logged at debug level."""


BAD_MESSAGES_SAID_EVERY = 60.0
"""Seconds between two log lines of messages on the stream that are no reports."""

class ReportFeedActor(Actor):
    def __init__(self, bus: ReportBus, *, roster_path: str, directory_path: str = "", topology_path: str = "",
                 directory: Published[AgentDirectory] | None = None, stale_after: float = math.inf) -> None:
        """``directory`` (and its actor's and the topology's paths): where
        claims are checked and told (``_vouched``), each lapsing ``stale_after``
        seconds (``agents.stale_threshold``) after its last signed report; None:
        not at all."""
        self.bus = bus
        self.roster_path = roster_path
        self.directory_path = directory_path
        self.topology_path = topology_path
        self.directory = directory
        self.heavy_work = trio.CapacityLimiter(1)
        """One large envelope read at a time: with the GIL a second thread adds memory, not speed."""
        self._bad_said = Lull(BAD_MESSAGES_SAID_EVERY)
        self.claims = StreamClaims(stale_after)
        """When each claimed id's last signed report read here was received (``_vouched``)."""
        self._unsigned_said: FirstSeen[str] = FirstSeen(UNSIGNED_SAID)
        """Ids whose unsigned reports were said left out (once each, then at debug level)."""

    async def on_start(self) -> None:
        system = self.context.system
        self.roster: ActorRef = system.lookup(self.roster_path)
        self.directory_ref = system.lookup(self.directory_path) if self.directory is not None else None
        self.topology = system.lookup(self.topology_path) if self.directory is not None else None
        self.context.start_soon(self._follow, name=f"{self.context.path} follow")

    async def handle(self, message: Any) -> Any:
        return await super().handle(message)  # everything happens in the follow task

    async def _follow(self) -> None:
        progress = self.bus.progress
        await self.bus.ready.wait()
        unavailable: int | None = None
        """While reading fails: how many reconnections the bus had made when it began."""
        started = False
        rereading: int | None = None
        """While a stream made again is read from its start: the sequence the re-read began at."""
        while True:
            try:
                fetched = await self.bus.fetch(progress.merged)
            except BusUnavailable as exc:
                if unavailable is None:
                    log.warning("cannot read the report stream: %s; retrying", exc,
                                extra={"event": "bus_read_failed"})
                    unavailable = progress.reconnects
                await trio.sleep(UNAVAILABLE_WAIT)
                continue
            # A read that merely timed out without failing (the bus still away)
            # is no resumption: reports came, or the bus reconnected since.
            if unavailable is not None and (fetched or (progress.connected and progress.reconnects > unavailable)):
                # From the first report read (a stream made again meanwhile is read from its start, not
                # on from the last one merged); none read yet: from after it, if the stream has one.
                if fetched:
                    log.info("reading the report stream again from sequence %d", fetched[0].sequence,
                             extra={"event": "bus_read_resumed", "sequence": fetched[0].sequence})
                else:
                    log.info("reading the report stream again (no new report on it yet)",
                             extra={"event": "bus_read_resumed"})
                unavailable = None
            history = not progress.caught_up
            if fetched and progress.caught_up and fetched[0].sequence <= progress.merged and rereading is None:
                rereading = fetched[0].sequence  # the stream made again: read from its start (see the docstring)
            if history and not started and fetched:
                started = True
                log.info("rebuilding topology and metric history from the report stream: %d reports from "
                         "sequence %d", len(fetched) + progress.pending, fetched[0].sequence,
                         extra={"event": "bus_catching_up", "reports": len(fetched) + progress.pending})
            batch: list[ReportArrived] = []
            decoding = Slicer(YIELD_AFTER)
            for item in fetched:
                arrived = await self._arrived(item.sequence, item.data, history)
                if arrived is not None and await self._vouched(arrived):
                    batch.append(arrived)
                await decoding.pause()  # a batch is up to 1,024 reports to decode
            await self._hand_on(batch)
            if fetched:
                progress.handed_on(fetched[-1].sequence)
            if 0 < len(fetched) < FEW and progress.caught_up:
                await trio.sleep(GATHER)
            if progress.lag == 0 and rereading is not None:
                await self._expire_replayed()
                log.info("report stream read again to its end, from sequence %d to %d: agents stale by now removed",
                         rereading, progress.merged, extra={"event": "bus_reread", "sequence": progress.merged})
                rereading = None
            if progress.lag == 0 and not progress.caught_up:  # a known 0, read while connected
                await self._expire_replayed()
                progress.caught_up = True
                log.info("report stream read to its end (sequence %d): topology and history rebuilt",
                         progress.merged, extra={"event": "bus_caught_up", "sequence": progress.merged})

    async def _expire_replayed(self) -> None:
        """Have the topology merge what was replayed and remove the agents
        stale by now (``HistoryReplayed``), before the replica says it is
        caught up (or, running, once it read a stream made again to its end):
        until its next cleanup it would otherwise show every host of the
        stream, those the running replicas removed long ago included."""
        while True:
            try:
                if await self.roster.ask(HistoryReplayed(), timeout=HISTORY_WAIT):
                    return
            except (MailboxFull, ActorStopped, AskTimeout):
                pass
            await trio.sleep(RETRY)

    async def _arrived(self, sequence: int, data: bytes, history: bool) -> ReportArrived | None:
        """The roster's message for a report on the stream; None (logged) for anything else."""
        # A report published here comes back decoded already. A large one is
        # read whole, off the loop: its connections, were they decoded when the
        # merge asks, would be decoded on it.
        envelope = self.bus.published_here(data)
        if envelope is None:
            try:
                # Received no further ahead of this replica's clock than clocks may differ (``MAX_RECEIVED_AHEAD``).
                now = time.time()
                if len(data) > OFF_LOOP_BYTES:
                    envelope = await trio.to_thread.run_sync(
                        functools.partial(unpack_report, data, self.bus.max_unpacked, now=now), limiter=self.heavy_work)
                else:
                    envelope = unpack_report(data, self.bus.max_unpacked, defer_connections=True, now=now)
            except BadEnvelope as exc:
                self.bus.progress.skipped += 1
                # Anyone who may publish on the stream's subjects can put thousands
                # there, read again at every restart: said once a minute, counted.
                unsaid = self._bad_said.due(time.monotonic())
                if unsaid is not None:
                    log.error("message %d on the report stream is not a report and was left out: %s (%d more left "
                              "out since this was last said; all counted in /api/v1/query/stats bus.skipped_messages)",
                              sequence, exc, unsaid, extra={"event": "bus_bad_message", "sequence": sequence})
                return None
        return ReportArrived(envelope.report, envelope.packed, envelope.received_at, shape=envelope.shape,
                             enrolled=envelope.enrolled, sequence=sequence, history=history, address=envelope.address,
                             signer=envelope.signer, scope=envelope.scope)

    async def _vouched(self, arrived: ReportArrived) -> bool:
        """Whether ``arrived`` is handed on, with this replica's directory told
        of the claim it makes (see the module docstring; the rule:
        ``StreamClaims.judge``): a signed report's id attached to its signer
        (its publisher vouched for it: ``lapsed``, so it takes the id from an
        agent whose claim lapsed there); an unsigned one under an id an
        enrolled agent holds here is left out unless that claim lapsed, else
        the claim is released, as its publisher did."""
        if self.directory is None or self.directory_ref is None or self.topology is None:
            return True
        agent_id = arrived.report.agent_id
        try:
            step = self.claims.judge(self.directory.value, agent_id, enrolled=arrived.enrolled,
                                     signer=arrived.signer, received_at=arrived.received_at)
            if step.verdict is Verdict.ASK:
                # Not read here (this actor restarted, or the claim came from the
                # edge before its report came back): the topology's word, as the edge's.
                assert step.holder is not None
                lapsed = await self.topology.ask(ReporterSilent(agent_id), timeout=CLAIMS_ASK_TIMEOUT)
                step = self.claims.settle(agent_id, step.holder, lapsed=bool(lapsed))
            if step.verdict is Verdict.ATTACH:
                assert step.signer is not None
                await self.directory_ref.ask(AttachReporter(agent_id, step.signer, lapsed=True),
                                             timeout=CLAIMS_ASK_TIMEOUT)
            elif step.verdict is Verdict.RELEASE:
                await self.directory_ref.ask(ReleaseReporter(agent_id), timeout=CLAIMS_ASK_TIMEOUT)
        except (ReporterTaken, MailboxFull, ActorStopped, AskTimeout) as exc:
            # As the publisher decided: it vouched for the report (the next one tells the claim again).
            log.warning("the claim on probe agent id %s could not be told here (%s): its report %d is merged",
                        agent_id[:80], type(exc).__name__, arrived.sequence,
                        extra={"event": "bus_claim_unchecked", "agent_id": agent_id[:80]})
            return True
        if step.verdict is not Verdict.LEAVE_OUT:
            return True
        first = self._unsigned_said.first(agent_id)
        log.log(logging.WARNING if first else logging.DEBUG,
                "unsigned report %d of probe agent id %s left out: enrolled agent %s reports under it (the "
                "replica that took it did not know yet)", arrived.sequence, agent_id[:80], step.holder,
                extra={"event": "bus_unsigned_report_left_out", "agent_id": agent_id[:80], "holder": step.holder})
        self.bus.progress.skipped += 1
        return False

    async def _hand_on(self, batch: list[ReportArrived]) -> None:
        """The batch to the roster in one ask, the rest again while it has no
        room for some (never dropped); each report's 202 waits for its sequence."""
        progress = self.bus.progress
        while batch:
            try:
                answer: HandedOn = await self.roster.ask(ReportsArrived(tuple(batch)), timeout=30.0)
            except (MailboxFull, ActorStopped, AskTimeout):
                answer = HandedOn(0)
            done = answer.count
            progress.skipped += answer.left_out  # logged by the roster (bus_report_failed)
            progress.refused(answer.refused)  # before handed on: a publisher waiting for it answers 503
            if done:
                progress.handed_on(batch[done - 1].sequence)
                batch = batch[done:]
            if batch:
                await trio.sleep(RETRY)  # the topology or an agent's actor is behind: wait, never drop


def report_feed_spec(bus: ReportBus, *, roster_path: str, directory_path: str = "", topology_path: str = "",
                     directory: Published[AgentDirectory] | None = None, stale_after: float = math.inf) -> ActorSpec:
    """Permanent: a crash restarts it from where it had read to."""
    return ActorSpec(name="report_feed", factory=lambda: ReportFeedActor(
        bus, roster_path=roster_path, directory_path=directory_path, topology_path=topology_path,
        directory=directory, stale_after=stale_after), mailbox_size=16)
