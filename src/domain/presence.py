"""What a serving process observed of each enrolled agent: when it was last
heard from, when it last made a request, when the alerts were last told, its
address, its socket's latency, the command last handed to it and the
commands it runs. Pure: ``now`` (unix seconds, what is shown) and ``tick``
(a monotonic clock's, ``trio.current_time()``: what durations are measured by, so that the wall
clock set meanwhile is no time between two requests) are passed in.

Each table is keyed by agent id and stays within a bound of the directory's
size (``AgentDirectory.outgrown``): past it, the agents the directory forgot
after their retirement are dropped from it. A request of an agent is what
the edge observes; these tables are not stored and start empty with the
process.
"""

from __future__ import annotations

from typing import TypeVar

import attrs

from trioscope.domain.deployments import AgentDirectory
from trioscope.domain.wall_clock import WallSteps

T = TypeVar("T")


@attrs.define(eq=False)
class AgentSightings:
    seen: dict[str, float] = attrs.Factory(dict)
    """When each agent was last heard from: a request that passed every
    check, a message on its socket, a long-poll it holds, a command it runs."""
    requested: dict[str, float] = attrs.Factory(dict)
    """When each agent last made a request (a ``tick``): the heartbeat
    histogram times requests, which a held poll or a running command is not."""
    told: dict[str, float] = attrs.Factory(dict)
    """When the alerts were last told each agent was heard from (``AgentSeen``; a ``tick``)."""
    addresses: dict[str, str] = attrs.Factory(dict)
    """The client address of each agent's latest request that passed every
    check: the ``ip_address`` of its ``connection_info``."""
    latencies: dict[str, float] = attrs.Factory(dict)
    """Milliseconds from the latest ping on each agent's socket to its pong:
    the ``latency_ms`` of its ``connection_info``."""
    last_commands: dict[str, str] = attrs.Factory(dict)
    """The command last handed to each agent (a poll's answer, or sent on
    its socket): the ``last_command_id`` of its ``connection_info``."""
    running: dict[str, dict[str, float]] = attrs.Factory(dict)
    """The commands handed to each agent that it runs, each with until when
    (a ``tick``: its timeout and grace away) unless it reports the outcome first: heard
    from meanwhile (``holders``). The status agent sends nothing while it runs
    one (a deploy of minutes), and would be shown offline, with a critical
    AgentOffline alert, while it works."""

    wall: WallSteps = attrs.Factory(WallSteps)
    """The wall clock's steps, which ``seen`` follows (``follow_clock``)."""

    def follow_clock(self, now: float, tick: float) -> None:
        """Move ``seen`` by as much as the wall clock was set since the last
        look (``WallSteps``), in place (others hold the table): when an agent
        was heard from stays when it was, and whether it is online (heard
        from within ``agents.heartbeat_timeout`` of ``now``) stays true. Set
        back, an agent silent for half an hour was online for as long as the step."""
        moved = self.wall.step(now, tick)
        if moved:
            for agent_id in self.seen:
                self.seen[agent_id] += moved

    def heard(self, agent_id: str, now: float, known: AgentDirectory, *, tick: float,
              as_request: bool = True) -> float | None:
        """``agent_id`` was heard from at ``now`` (``tick`` on the monotonic
        clock; ``as_request``: by a request of its own); the seconds since its
        previous request, for the heartbeat histogram, if this is one and it
        made one before."""
        self.follow_clock(now, tick)
        self.seen[agent_id] = now
        previous = self.requested.get(agent_id) if as_request else None
        if as_request:
            self.requested[agent_id] = tick
        if known.outgrown(len(self.seen)):
            for gone in [a for a in self.seen if a not in known.agents]:
                del self.seen[gone]
                self.told.pop(gone, None)
                self.requested.pop(gone, None)
        return None if previous is None else tick - previous

    def alerts_due(self, agent_id: str, tick: float, every: float) -> bool:
        """Whether the alerts are to be told that ``agent_id`` was heard
        from: at most once per ``every`` seconds, not per request."""
        last = self.told.get(agent_id)
        return last is None or tick - last >= every

    def alerts_told(self, agent_id: str, tick: float) -> None:
        self.told[agent_id] = tick

    def handed(self, agent_id: str, command_id: str, known: AgentDirectory, *, runs_until: float | None) -> None:
        """``command_id`` was handed to ``agent_id``, which runs it until
        ``runs_until`` at most (a ``tick``; None: a notice it does not run, a cancel)."""
        note(self.last_commands, agent_id, command_id, known)
        if runs_until is not None:
            note(self.running, agent_id, {**self.running.get(agent_id, {}), command_id: runs_until}, known)

    def finished(self, agent_id: str, command_id: str) -> None:
        """``agent_id`` reported ``command_id``'s outcome: heard from by its
        own requests again, unless it runs another."""
        commands = self.running.get(agent_id)
        if commands is not None:
            commands.pop(command_id, None)
            if not commands:
                del self.running[agent_id]

    def busy(self, tick: float) -> list[str]:
        """The agents running a command at ``tick``; the commands whose time
        has passed are dropped."""
        for agent_id, commands in list(self.running.items()):
            left = {command_id: until for command_id, until in commands.items() if until > tick}
            if left:
                self.running[agent_id] = left
            else:
                del self.running[agent_id]
        return list(self.running)

    def address(self, agent_id: str, address: str, known: AgentDirectory) -> None:
        note(self.addresses, agent_id, address, known)

    def latency(self, agent_id: str, seconds: float, known: AgentDirectory) -> None:
        """A ping on ``agent_id``'s socket was answered after ``seconds``."""
        note(self.latencies, agent_id, round(seconds * 1000, 1), known)

    def no_socket(self, agent_id: str) -> None:
        """``agent_id`` has no socket left: no pong to time (its latency is null)."""
        self.latencies.pop(agent_id, None)


def note(table: dict[str, T], agent_id: str, value: T, known: AgentDirectory) -> None:
    """Record ``value`` for ``agent_id`` in ``table``; past the bound of the
    directory's size, those no longer ``known`` are dropped."""
    table[agent_id] = value
    if known.outgrown(len(table)):
        for gone in [a for a in table if a not in known.agents]:
            del table[gone]
