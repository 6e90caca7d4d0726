"""Agent presence at the edge: when each enrolled agent was last heard from
(``Gate.seen``, the heartbeat histogram, the alerts actor told), the long-polls
it holds and the commands it runs (heard from meanwhile), and what its
``connection_info`` shows (address, latency, last command)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import TypeVar

import attrs
import trio
from quart import Quart, current_app

from trioscope.actors.alerts import AgentSeen, sighting_resolution
from trioscope.config import Settings
from trioscope.domain.deployments import AgentDirectory, AgentRecord, AgentStatus

from ._directory import directory
from ._services import services

T = TypeVar("T")


async def note_delivery(agent_id: str, command_id: str, runs_for: float | None = None) -> None:
    """``command_id`` was handed to ``agent_id`` (``AgentPresence.last_commands``),
    to run for up to ``runs_for`` seconds (its ``timeout_seconds``; None: a cancel
    notice), in which the agent is heard from while it runs it (``running``):
    until the queue would fail it as timed out (``commands.timeout_grace`` later)."""
    found, known = presence(), await directory()
    note(found.last_commands, agent_id, command_id, known)
    if runs_for is not None:
        until = time.time() + runs_for + services().settings.commands.timeout_grace
        note(found.running, agent_id, {**found.running.get(agent_id, {}), command_id: until}, known)


def finished_running(agent_id: str, command_id: str) -> None:
    """``agent_id`` reported ``command_id``'s outcome (over HTTP or its socket):
    heard from by its own requests again, unless it runs another."""
    running = presence().running
    commands = running.get(agent_id)
    if commands is not None:
        commands.pop(command_id, None)
        if not commands:
            del running[agent_id]


async def note_latency(agent_id: str, seconds: float) -> None:
    """A ping on ``agent_id``'s socket was answered after ``seconds`` (``AgentPresence.latencies``)."""
    note(presence().latencies, agent_id, round(seconds * 1000, 1), await directory())


def note(table: dict[str, T], agent_id: str, value: T, known: AgentDirectory | None) -> None:
    """Record ``value`` for ``agent_id`` in one of ``AgentPresence``'s tables;
    past twice the agents ``known`` (and some), those no longer known
    (forgotten after their retirement) are dropped, as ``Gate.seen`` drops theirs."""
    table[agent_id] = value
    if known is not None and known.outgrown(len(table)):
        for gone in [a for a in table if a not in known.agents]:
            del table[gone]


async def heard_from(agent_id: str, *, as_request: bool = True) -> None:
    """An active agent proved it is there without a signed request (any
    message on the socket it authenticated): noted as a request of it would
    be (``as_request``: timed as one, too)."""
    await directory()
    _heard_again(agent_id, as_request=as_request)


def _heard_again(agent_id: str, *, as_request: bool = True) -> None:
    """``agent_id`` is heard from, if it is an active agent (by the directory
    as last read: the caller authenticated it before). ``as_request``: as a
    request of it, timed for the heartbeat histogram; else only noted as there."""
    published = services().gate.directory
    if published is None:
        return
    known = published.value
    agent = known.agents.get(agent_id)
    if agent is not None and agent.status is AgentStatus.ACTIVE:
        heard(agent, known, as_request=as_request)


@attrs.define(eq=False)
class AgentPresence:
    """What the edge knows of agents beside ``Gate.seen``, one per app (its
    extensions, ``presence``)."""

    polls: dict[str, list[trio.CancelScope]] = attrs.Factory(dict)
    """Agent id -> the long-polls it holds now, oldest first (``holding_poll``): it is there while they are held."""
    requested: dict[str, float] = attrs.Factory(dict)
    """Agent id -> when it last made a request (unix seconds): the heartbeat
    histogram times requests, which a held poll noted as there is not."""
    refreshing: trio.CancelScope | None = None
    """``keep_holders_heard``'s, cancelled when the app stops serving."""
    addresses: dict[str, str] = attrs.Factory(dict)
    """Agent id -> the client address of its latest request that passed every
    check (``agent``): the ``ip_address`` of its ``connection_info``."""
    latencies: dict[str, float] = attrs.Factory(dict)
    """Agent id -> milliseconds from the server's latest ping on its socket to
    the agent's pong: the ``latency_ms`` of its ``connection_info``."""
    last_commands: dict[str, str] = attrs.Factory(dict)
    """Agent id -> the command last handed to it (a poll's answer, or sent on
    its socket): the ``last_command_id`` of its ``connection_info``."""
    running: dict[str, dict[str, float]] = attrs.Factory(dict)
    """Agent id -> the commands handed to it that it runs, each with until
    when (unix seconds: its timeout and grace away) unless it reports the
    outcome first: heard from meanwhile (``keep_holders_heard``). The status
    agent sends nothing while it runs one (a deploy of minutes), and would be
    shown offline, with a critical AgentOffline alert, while it works."""


_PRESENCE = "trioscope.agent_presence"


def presence(app: Quart | None = None) -> AgentPresence:
    """The app's ``AgentPresence`` (the current app's if none is given)."""
    extensions = (app if app is not None else current_app).extensions
    found: AgentPresence | None = extensions.get(_PRESENCE)  # only this function puts it there
    if found is None:
        found = extensions[_PRESENCE] = AgentPresence()
    return found


MAX_POLLS_PER_AGENT = 32
"""Long-polls one agent holds at once on a serving process (~40 KB each); a
newer one ends its oldest (answered 204 at once), so an agent that reconnects
is never refused. Without it, one agent's request budget held ~1,260 (~47 MB)."""


@contextlib.contextmanager
def holding_poll(agent: AgentRecord) -> Iterator[None]:
    """``agent`` holds a long-poll for as long as this lasts: it is heard from
    while it waits (``keep_holders_heard``), and when the poll is answered
    (not when it ends otherwise: the client gone, the agent retired). Its start
    was heard from as the request it is. Beyond ``MAX_POLLS_PER_AGENT`` its
    oldest poll is cancelled: what waits in it ends there, as if nothing came."""
    polls = presence().polls
    held = polls.setdefault(agent.id, [])
    scope = trio.CancelScope()
    held.append(scope)
    if len(held) > MAX_POLLS_PER_AGENT:
        held.pop(0).cancel()
    try:
        with scope:
            yield
    finally:
        if scope in held:
            held.remove(scope)
        if not held and polls.get(agent.id) is held:
            del polls[agent.id]
    _heard_again(agent.id, as_request=False)


def hold_refresh_interval(settings: Settings) -> float:
    """How often agents holding a long-poll are heard from: within the alerts
    actor's ``sighting_resolution`` and a quarter of ``agents.heartbeat_timeout``,
    so neither AgentOffline nor the online gauge ever finds them silent; at
    most 15 s (a poll is held up to 120 s)."""
    interval = min(15.0, settings.agents.heartbeat_timeout / 4)
    if settings.alerts.agent_offline_after > 0:
        interval = min(interval, sighting_resolution(settings))
    return interval


HOLDERS_PER_STEP = 1000
"""Agents noted between two checkpoints of ``keep_holders_heard``: 20,000 held
polls are not one long step of the event loop."""


async def keep_holders_heard() -> None:
    """Until the app stops serving (``stop_keeping_holders_heard``): every
    ``hold_refresh_interval``, each agent holding a long-poll is heard from.
    One task for all held polls: a task (and a timer) of each would weigh on
    every one of 20,000 polls."""
    found = presence()
    interval = hold_refresh_interval(services().settings)
    with trio.CancelScope() as found.refreshing:
        while True:
            await trio.sleep(interval)
            now = time.time()
            for agent_id, commands in list(found.running.items()):
                left = {command_id: until for command_id, until in commands.items() if until > now}
                if left:
                    found.running[agent_id] = left
                else:
                    del found.running[agent_id]
            for done, agent_id in enumerate({*found.polls, *found.running}, 1):
                _heard_again(agent_id, as_request=False)
                if done % HOLDERS_PER_STEP == 0:
                    await trio.lowlevel.checkpoint()


def stop_keeping_holders_heard(app: Quart) -> None:
    """End ``app``'s ``keep_holders_heard`` (when it stops serving)."""
    scope = presence(app).refreshing
    if scope is not None:
        scope.cancel(reason="the app stopped serving")


def heard(agent: AgentRecord, known: AgentDirectory, *, as_request: bool = True) -> None:
    """An enrolled agent was heard from: when (``Gate.seen``), its heartbeat in
    /metrics (``as_request``: the time since its previous request), and the
    alerts actor told, at most once per ``sighting_resolution`` (not per request)."""
    s = services()
    seen = s.gate.seen
    now = time.time()
    seen[agent.id] = now
    requested = presence().requested
    previous = requested.get(agent.id) if as_request else None
    if as_request:
        requested[agent.id] = now
    if known.outgrown(len(seen)):  # agents forgotten after retirement: drop theirs
        for agent_id in [a for a in seen if a not in known.agents]:
            del seen[agent_id]
            s.gate.sighting_told.pop(agent_id, None)
            requested.pop(agent_id, None)
    deployment = known.deployments.get(agent.deployment_hash)
    if previous is not None and deployment is not None:
        s.metrics.observe_heartbeat(deployment.tenant, now - previous)
    if s.settings.alerts.agent_offline_after <= 0:
        return
    told = s.gate.sighting_told
    last = told.get(agent.id)
    if last is not None and now - last < sighting_resolution(s.settings):
        return
    if s.alerts.offer(AgentSeen(agent.id, now)):  # else told with the agent's next request
        told[agent.id] = now
