"""One actor per known agent, under the ``/root/agents`` dynamic supervisor,
started by the roster actor (``roster.py``), which also hands it the agent's
reports, registration and heartbeats.

It holds the agent's registration, liveness, latest report and host-level
metric history, and stops itself once the agent has been silent for
``max_data_age``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import attrs
import trio

from trioscope.config import Settings
from trioscope.domain.agents import AgentState, PackedReport
from trioscope.domain.clocks import ReportTimes
from trioscope.runtime import Actor, ActorSpec, Kept, Restart
from trioscope.wire import AgentRegistration, Report

log = logging.getLogger(__name__)


@attrs.frozen
class Register:
    registration: AgentRegistration
    scope: str | None = None
    """The ``node_scope`` of the tenant of the enrolled agent that signed it (None: unsigned)."""


@attrs.frozen
class Heartbeat:
    """Answered with the server time it was recorded at."""

    at: float | None = None
    """When the server heard it (None: now, by this actor's clock)."""


@attrs.frozen
class ReportReceived:
    report: Report
    packed: PackedReport
    """The report's JSON as received (kept as the latest report)."""
    received_at: float
    metrics: Mapping[str, float] | None = None
    """``host_metrics(report)``, if the sender has it already."""
    enrolled: bool = False
    """Signed by an enrolled agent (``ReportArrived.enrolled``): kept with the
    latest report, so that a topology rebuilt from it offers the same controls."""
    scope: str | None = None
    """The ``node_scope`` its nodes' ids carry (``ReportArrived.scope``), kept alike."""
    times: ReportTimes | None = None
    """Its times on the server's clock, by its agent's clock offset (the
    roster's ``ClockOffsets``: one rule for every history); None: its own
    time believed as it is."""


@attrs.frozen
class Describe:
    """Answered with the agent's summary (``AgentState.describe``)."""


@attrs.frozen
class ReportScope:
    """Answered with the ``node_scope`` the latest report's nodes carry (None:
    unsigned, or no report yet): whose tenant what the actor keeps is."""


@attrs.frozen
class LatestReport:
    """Answered with the agent's ``Latest`` report, or None before its first."""


@attrs.frozen
class Latest:
    raw: bytes
    """The report's JSON, as the agent sent it."""
    received_at: float
    enrolled: bool
    """Whether an enrolled agent signed it (``ReportReceived.enrolled``)."""
    scope: str | None = None
    """The ``node_scope`` its nodes' ids carry (``ReportReceived.scope``)."""
    times: ReportTimes | None = None
    """Its ``ReportReceived.times`` (as found then: a topology rebuilt from it
    records its metrics where they were recorded)."""


@attrs.frozen
class Timeseries:
    """Answered with the metric points within the last ``seconds``."""

    seconds: float


@attrs.frozen
class _Tick:
    """Time to expire old points, and to stop if the agent went silent."""


class AgentActor(Actor):
    def __init__(self, agent_id: str, settings: Settings, clock: Callable[[], float] = time.time,
                 state: AgentState | None = None, monotonic: Callable[[], float] = trio.current_time) -> None:
        """``state``: what an earlier incarnation kept (``agent_spec``'s ``Kept``); None: a state of its own."""
        self.agent_id = agent_id
        self.settings = settings
        self.clock = clock
        self.monotonic = monotonic
        self.state = state if state is not None else AgentState(agent_id, clock(), settings.storage.max_data_age)

    async def on_start(self) -> None:
        self.context.every(self.settings.storage.cleanup_interval, _Tick())

    async def handle(self, message: Any) -> Any:
        now = self.clock()
        moved = self.state.wall.step(now, self.monotonic())
        if moved:
            self.state.clock_set(moved, reports_too=not self.settings.bus.url)
        if isinstance(message, ReportReceived):
            self.state.receive(message.report, message.packed, message.received_at, message.metrics,
                               enrolled=message.enrolled, scope=message.scope, times=message.times)
        elif isinstance(message, Heartbeat):
            at = now if message.at is None else message.at
            self.state.heartbeat(at)
            return at
        elif isinstance(message, Describe):
            return self.state.describe(now, self.settings.agents.stale_threshold)
        elif isinstance(message, LatestReport):
            raw, received_at = self.state.latest_raw, self.state.latest_received_at
            if raw is None or received_at is None:
                return None
            return Latest(raw, received_at, self.state.latest_enrolled, self.state.latest_scope,
                          self.state.latest_times)
        elif isinstance(message, ReportScope):
            return self.state.latest_scope
        elif isinstance(message, Timeseries):
            return self.state.points(now - message.seconds)
        elif isinstance(message, Register):
            self.state.register(message.registration, now, scope=message.scope)
            return self.state.describe(now, self.settings.agents.stale_threshold)
        elif isinstance(message, _Tick):
            self.state.history.expire(now)
            if self.state.expired(now, self.settings.storage.max_data_age):
                log.info("agent %s silent for more than %ss: forgetting it", self.agent_id,
                         int(self.settings.storage.max_data_age),
                         extra={"event": "agent_removed", "agent_id": self.agent_id})
                self.context.stop()
        else:
            return await super().handle(message)
        return None


def agent_spec(agent_id: str, settings: Settings, clock: Callable[[], float] = time.time,
               first_seen: float | None = None) -> ActorSpec:
    """How ``/root/agents`` starts the actor of ``agent_id``: transient, so that
    it is restarted after a crash but gone for good once it stops itself. Its
    state is made here, with the spec the supervisor keeps while the actor is
    its child: a restart goes on with the agent's registration, latest report
    and metric history (the topology rebuilds from those latest reports),
    until the supervisor gives up on it (``Kept``).

    ``first_seen``: when the server first heard from the agent (the time its
    first report was received; None: now). A report replayed from the report
    stream at start was received long before its actor starts, and an agent
    silent since then must not count as seen at the restart (``last_seen``)."""
    state = Kept(lambda: AgentState(agent_id, clock() if first_seen is None else first_seen,
                                    settings.storage.max_data_age))
    return ActorSpec(
        name=agent_id,
        factory=lambda: AgentActor(agent_id, settings, clock, state.take()),
        restart=Restart.TRANSIENT,
        mailbox_size=256,
        shutdown_timeout=2.0,
    )
