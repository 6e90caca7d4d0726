"""Agent management: register, heartbeat, configuration, list."""

from __future__ import annotations

from typing import Any

from quart import Blueprint, Response

from trioscope.actors.agent import Describe, Heartbeat, Register, agent_spec
from trioscope.actors.topology import PROCESS_HISTORY
from trioscope.config import Settings, format_duration
from trioscope.domain.agents import rfc3339
from trioscope.domain.report import InvalidDocument, decode_registration
from trioscope.domain.timeseries import RESOLUTION
from trioscope.domain.topology import MemoryBudget
from trioscope.runtime import ActorFailed, ActorRef, ActorStopped, AskTimeout, MailboxFull, TooManyChildren

from . import _gate
from ._bodies import invalid, read_json
from ._errors import ApiError
from ._responses import json_response
from ._services import services

blueprint = Blueprint("agents", __name__)


def agent_or_404(agent_id: str) -> ActorRef:
    ref = services().agents.child(agent_id)
    if ref is None:
        raise ApiError(404, "agent_not_found", f"no agent {agent_id!r} is known; register it or send a report",
                       details={"agent_id": agent_id})
    return ref  # type: ignore[no-any-return]


def ensure_agent(agent_id: str) -> ActorRef:
    """The agent's actor, started if it is new."""
    s = services()
    known = s.agents.child(agent_id)  # the common case: no spec to build
    if known is not None:
        return known  # type: ignore[no-any-return]
    try:
        return s.agents.ensure_child(agent_spec(agent_id, s.settings))  # type: ignore[no-any-return]
    except TooManyChildren as exc:
        raise ApiError(503, "too_many_agents",
                       f"the server already tracks its limit of {exc.limit} agents (agents.max_agents)",
                       headers={"Retry-After": "60"}) from None


@blueprint.post("/api/v1/agents/register")
async def register() -> Response:
    """Register a new agent (201)."""
    document = await read_json(services().settings)
    try:
        registration = decode_registration(document)
    except InvalidDocument as exc:
        raise invalid("invalid_registration", exc) from None
    agent = ensure_agent(registration.agent_id)
    await agent.ask(Register(registration))
    return json_response(
        {"status": "registered", "message": f"Agent {registration.agent_id} registered successfully",
         "agent_id": registration.agent_id},
        status=201,
    )


@blueprint.post("/api/v1/agents/heartbeat/<agent_id>")
async def heartbeat(agent_id: str) -> Response:
    """Send a heartbeat (404 for unknown agents)."""
    await read_json(services().settings, required=False)  # optional {agent_id, timestamp}
    at = await agent_or_404(agent_id).ask(Heartbeat())
    return json_response({"status": "ok", "timestamp": rfc3339(at)})


def memory_budget(settings: Settings) -> MemoryBudget:
    """What one agent's report may take (``agents.memory_budget``), with the
    metric history the server keeps for its nodes."""
    history = settings.storage.max_data_age
    return MemoryBudget(limit=settings.agents.memory_budget, history=history,
                        process_history=min(history, PROCESS_HISTORY))


@blueprint.get("/api/v1/agents/config/<agent_id>")
async def config(agent_id: str) -> Response:
    """Get an agent's configuration (404 for unknown agents)."""
    agent_or_404(agent_id)
    s = services().settings
    interval = RESOLUTION
    return json_response({
        "agent_id": agent_id,
        "report_interval": format_duration(interval),
        "report_interval_seconds": interval,
        "heartbeat_interval_seconds": s.agents.heartbeat_timeout / 4,
        "stale_threshold_seconds": s.agents.stale_threshold,
        "max_report_bytes": s.server.max_body_size,
        **memory_budget(s).as_dict(),
        "compression": ["gzip"],
    })


async def describe_all() -> list[dict[str, Any]]:
    rows = []
    for ref in services().agents.children():
        try:
            rows.append(await ref.ask(Describe(), timeout=2.0))
        except (ActorStopped, AskTimeout, MailboxFull, ActorFailed):
            # Stopped, stuck, swamped or failing while we asked: not listed,
            # rather than no list for anyone (a crash is logged by the actor).
            continue
    return sorted(rows, key=lambda row: row["agent_id"])


@blueprint.get("/api/v1/agents/list")
async def list_agents() -> Response:
    """List all agents with their status."""
    await _gate.protected_read()
    agents = await describe_all()
    return json_response({"agents": agents, "count": len(agents)})
