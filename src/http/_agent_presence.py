"""Agent presence at the edge: the clock read and the tables kept
(``domain.presence.AgentSightings``, the gate's) as agents are heard from,
the long-polls each holds and the task that keeps their holders heard from,
the heartbeat histogram and the alerts actor told."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

import attrs
import trio
from quart import Quart, current_app

from trioscope.actors.alerts import AgentSeen, sighting_resolution
from trioscope.config import Settings
from trioscope.domain.deployments import AgentDirectory, AgentRecord, AgentStatus
from trioscope.domain.presence import AgentSightings

from ._directory import directory
from ._services import services


def sightings() -> AgentSightings:
    """The current app's (kept by its gate)."""
    return services().gate.sightings


async def note_delivery(agent_id: str, command_id: str, runs_for: float | None = None) -> None:
    """``command_id`` was handed to ``agent_id`` (its ``last_command_id``), to
    run for up to ``runs_for`` seconds (its ``timeout_seconds``; None: a cancel
    notice), in which the agent is heard from while it runs it: until the
    queue would fail it as timed out (``commands.timeout_grace`` later)."""
    known = await directory()
    runs_until = None if runs_for is None else trio.current_time() + runs_for + services().settings.commands.timeout_grace
    sightings().handed(agent_id, command_id, known, runs_until=runs_until)


def finished_running(agent_id: str, command_id: str) -> None:
    """``agent_id`` reported ``command_id``'s outcome (over HTTP or its socket)."""
    sightings().finished(agent_id, command_id)


async def note_latency(agent_id: str, seconds: float) -> None:
    """A ping on ``agent_id``'s socket was answered after ``seconds``."""
    sightings().latency(agent_id, seconds, await directory())


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
    """The long-polls agents hold, one per app (its extensions, ``presence``)."""

    polls: dict[str, list[trio.CancelScope]] = attrs.Factory(dict)
    """Agent id -> the long-polls it holds now, oldest first (``holding_poll``): it is there while they are held."""
    refreshing: trio.CancelScope | None = None
    """``keep_holders_heard``'s, cancelled when the app stops serving."""


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
            sightings().follow_clock(time.time(), trio.current_time())  # no agent heard from meanwhile: looked at here
            for done, agent_id in enumerate({*found.polls, *sightings().busy(trio.current_time())}, 1):
                _heard_again(agent_id, as_request=False)
                if done % HOLDERS_PER_STEP == 0:
                    await trio.lowlevel.checkpoint()


def stop_keeping_holders_heard(app: Quart) -> None:
    """End ``app``'s ``keep_holders_heard`` (when it stops serving)."""
    scope = presence(app).refreshing
    if scope is not None:
        scope.cancel(reason="the app stopped serving")


def heard(agent: AgentRecord, known: AgentDirectory, *, as_request: bool = True) -> None:
    """An enrolled agent was heard from: when, its heartbeat in /metrics
    (``as_request``: the time since its previous request), and the alerts
    actor told, at most once per ``sighting_resolution`` (not per request)."""
    s = services()
    tick = trio.current_time()  # durations: the wall clock set meanwhile is no time between two requests
    table = s.gate.sightings
    since = table.heard(agent.id, time.time(), known, tick=tick, as_request=as_request)
    deployment = known.deployments.get(agent.deployment_hash)
    if since is not None and deployment is not None:
        s.metrics.observe_heartbeat(deployment.tenant, since)
    if s.settings.alerts.agent_offline_after <= 0 or not table.alerts_due(agent.id, tick, sighting_resolution(s.settings)):
        return
    if s.alerts.offer(AgentSeen(agent.id, tick)):  # else told with the agent's next request
        table.alerts_told(agent.id, tick)
