"""The probes' actors as the edge reaches them: the roster (which starts a
probe's actor and hands its reports on) and each probe's own actor, so that a
probe refused for want of room is counted, and one nobody knows is a 404, the
same way on every route."""

from __future__ import annotations

from typing import Any

from trioscope.actors.refusals import TooManyAgents
from trioscope.runtime import ActorRef

from ._errors import ApiError
from ._services import services


async def ask_roster(message: Any) -> Any:
    """A probe's report, registration or heartbeat, to the roster actor (which
    starts the probe's actor and hands the report on); its answer. A probe
    refused for want of room (``TooManyAgents``, 503) is counted."""
    s = services()
    try:
        # Making room for a new probe waits for a forgotten one's actor to stop.
        return await s.roster.ask(message, timeout=10.0)
    except TooManyAgents:
        s.metrics.refused("agents_full")
        raise


def agent_or_404(agent_id: str) -> ActorRef:
    """The actor of probe ``agent_id``, to ask what it holds; 404 if there is none."""
    ref = services().agents.actor(agent_id)
    if ref is None:
        raise ApiError(404, "agent_not_found", f"no agent {agent_id!r} is known; register it or send a report",
                       details={"agent_id": agent_id})
    return ref
