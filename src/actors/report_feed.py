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

Where it has read to is kept in ``BusProgress``, which outlives a restart of
this actor: a restarted feed goes on from there.
"""

from __future__ import annotations

import logging
from typing import Any

import trio

from trioscope.bus import BusUnavailable, ReportBus, unpack_report
from trioscope.bus._envelope import BadEnvelope
from trioscope.runtime import Actor, ActorRef, ActorSpec, ActorStopped, AskTimeout, MailboxFull

from .refusals import Refusal
from .roster import ReportArrived

log = logging.getLogger(__name__)

RETRY = 0.05
"""Seconds before a report the roster had no room for is offered again."""
UNAVAILABLE_WAIT = 1.0
"""Seconds between two attempts to read the stream while the bus is away."""


class ReportFeedActor(Actor):
    def __init__(self, bus: ReportBus, *, roster_path: str) -> None:
        self.bus = bus
        self.roster_path = roster_path

    async def on_start(self) -> None:
        self.roster: ActorRef = self.context.system.lookup(self.roster_path)
        self.context.start_soon(self._follow, name=f"{self.context.path} follow")

    async def handle(self, message: Any) -> Any:
        return await super().handle(message)

    async def _follow(self) -> None:
        progress = self.bus.progress
        await self.bus.ready.wait()
        unavailable = False
        while True:
            try:
                fetched = await self.bus.fetch(progress.merged)
            except BusUnavailable as exc:
                if not unavailable:
                    log.warning("cannot read the report stream: %s; retrying", exc,
                                extra={"event": "bus_read_failed"})
                unavailable = True
                await trio.sleep(UNAVAILABLE_WAIT)
                continue
            if unavailable:
                log.info("reading the report stream again from sequence %d", progress.merged + 1,
                         extra={"event": "bus_read_resumed"})
                unavailable = False
            history = not progress.caught_up
            for item in fetched:
                await self._hand_on(item.sequence, item.data, history)
                progress.handed_on(item.sequence)
            if progress.pending == 0 and not progress.caught_up:
                progress.caught_up = True
                log.info("report stream read to its end (sequence %d): topology and history rebuilt",
                         progress.merged, extra={"event": "bus_caught_up", "sequence": progress.merged})

    async def _hand_on(self, sequence: int, data: bytes, history: bool) -> None:
        # A report published here comes back decoded already.
        envelope = self.bus.published_here(sequence)
        if envelope is None:
            try:
                envelope = unpack_report(data)
            except BadEnvelope as exc:
                self.bus.progress.skipped += 1
                log.error("message %d on the report stream is not a report and was left out: %s", sequence, exc,
                          extra={"event": "bus_bad_message", "sequence": sequence})
                return
        message = ReportArrived(envelope.report, envelope.packed, envelope.received_at, enrolled=envelope.enrolled,
                                sequence=sequence, history=history)
        while True:
            try:
                await self.roster.ask(message, timeout=30.0)
                return
            except (MailboxFull, ActorStopped, AskTimeout):
                await trio.sleep(RETRY)  # the topology or the agent's actor is behind: wait, never drop
            except Refusal as exc:
                # Accepted by the replica that published it (TooManyAgents here, say): left out here.
                log.warning("report %d of agent %s left out here: %s", sequence, envelope.report.agent_id, exc,
                            extra={"event": "bus_report_refused", "agent_id": envelope.report.agent_id})
                return


def report_feed_spec(bus: ReportBus, *, roster_path: str) -> ActorSpec:
    """Permanent: a crash restarts it from where it had read to."""
    return ActorSpec(name="report_feed", factory=lambda: ReportFeedActor(bus, roster_path=roster_path),
                     mailbox_size=16)
