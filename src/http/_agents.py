"""Agent management: register, heartbeat, configuration, list."""

from __future__ import annotations

import logging
import time
from typing import Any

import attrs
from quart import Blueprint, Response, request

from trioscope.actors.agent import Describe, Heartbeat, Register, agent_spec
from trioscope.actors.topology import PROCESS_HISTORY
from trioscope.config import Settings, format_duration
from trioscope.domain.agents import rfc3339
from trioscope.domain.timeseries import RESOLUTION
from trioscope.actors.topology import ForgetAgent
from trioscope.runtime import (
    ActorFailed, ActorNotFound, ActorRef, ActorStopped, AskTimeout, MailboxFull, TooManyChildren,
)
from trioscope.wire import InvalidDocument, MemoryBudget, decode_registration

from . import _gate
from ._bodies import invalid, parse_json, read_body_and_raw, read_json
from ._errors import ApiError
from ._responses import json_response
from ._services import services

log = logging.getLogger(__name__)
blueprint = Blueprint("agents", __name__)


def agent_or_404(agent_id: str) -> ActorRef:
    ref = services().agents.child(agent_id)
    if ref is None:
        raise ApiError(404, "agent_not_found", f"no agent {agent_id!r} is known; register it or send a report",
                       details={"agent_id": agent_id})
    return ref  # type: ignore[no-any-return]  # a supervisor's refs are untyped (children of any kind); this one holds actors


async def ensure_agent(agent_id: str, *, enrolled: bool) -> ActorRef:
    """The agent's actor, started if it is new, and noted as heard from now.

    At ``agents.max_agents`` a new probe takes the place of an unenrolled one:
    of one silent for ``agents.stale_threshold``, or, for a probe enrolled in a
    deployment (its report signed), of the one heard from longest ago.
    Enrolled probes are never forgotten for another, so they always have room
    while unenrolled ones take it; a new unenrolled probe with no room gets 503.
    """
    s = services()
    s.roster.touch(agent_id, time.monotonic())
    if len(s.roster) > 2 * s.settings.agents.max_agents:
        s.roster.retain(lambda a: s.agents.child(a) is not None)  # agents that went silent and stopped
    known = s.agents.child(agent_id)  # the common case: no spec to build
    if known is not None:
        return known  # type: ignore[no-any-return]  # a supervisor's refs are untyped (children of any kind); this one holds actors
    for _ in range(3):  # a place made may be taken by a request in between
        try:
            return s.agents.ensure_child(agent_spec(agent_id, s.settings))  # type: ignore[no-any-return]  # (see above)
        except TooManyChildren as exc:
            limit = exc.limit
        if not await _make_room(for_enrolled=enrolled):
            break
    s.roster.forget(agent_id)
    s.metrics.refused("agents_full")
    raise ApiError(503, "too_many_agents",
                   f"the server already tracks its limit of {limit} agents (agents.max_agents) and none is "
                   "silent long enough to be forgotten; enrolled probes always have room",
                   headers={"Retry-After": "60"})


async def _make_room(*, for_enrolled: bool) -> bool:
    """Forget one unenrolled probe (``AgentRoster.reclaimable``); whether one was."""
    s = services()
    directory = await _gate.directory()
    stale_after = s.settings.agents.stale_threshold
    while True:
        victim = s.roster.reclaimable(time.monotonic(), stale_after=stale_after, for_enrolled=for_enrolled,
                                      enrolled=lambda a: directory.reporting_agent(a) is not None)
        if victim is None:
            return False
        s.roster.forget(victim)
        try:
            await s.agents.stop_child(victim)
        except (ActorNotFound, ActorStopped):
            continue  # it had stopped by itself: look again
        try:
            s.topology.tell(ForgetAgent(victim))
        except MailboxFull:
            pass  # its nodes go once stale instead
        log.info("forgot agent %s to make room for a new one (agents.max_agents)", victim,
                 extra={"event": "agent_reclaimed", "agent_id": victim})
        return True


@blueprint.post("/api/v1/agents/register")
async def register() -> Response:
    """Register a new agent (201)."""
    await _gate.check_registration_rate()
    body, raw = await read_body_and_raw(services().settings)
    signer = await _gate.probe_credentials(raw)
    try:
        registration = decode_registration(parse_json(body))
    except InvalidDocument as exc:
        raise invalid("invalid_registration", exc) from None
    claimed = registration.metadata.get("deployment_hash")
    await _gate.vouch(registration.agent_id, signer, claimed)
    if signer is None and "command_agent_id" in registration.metadata:
        raise ApiError(400, "invalid_registration", "$.metadata.command_agent_id: only a signed registration "
                       "may name its command agent", details={"errors": [{"path": "$.metadata.command_agent_id",
                                                                          "message": "needs a signature"}]})
    if signer is not None:
        # What the credentials prove, not what the body says.
        registration = attrs.evolve(registration, metadata={
            **registration.metadata, "deployment_hash": signer.deployment_hash, "command_agent_id": signer.id})
    agent = await ensure_agent(registration.agent_id, enrolled=signer is not None)
    await agent.ask(Register(registration))
    return json_response(
        {"status": "registered", "message": f"Agent {registration.agent_id} registered successfully",
         "agent_id": registration.agent_id},
        status=201,
    )


@blueprint.post("/api/v1/agents/heartbeat/<agent_id>")
async def heartbeat(agent_id: str) -> Response:
    """Send a heartbeat (404 for unknown agents)."""
    await _gate.check_report_rate()
    await read_json(services().settings, required=False)  # optional {agent_id, timestamp}
    agent = agent_or_404(agent_id)
    services().roster.touch(agent_id, time.monotonic())
    at = await agent.ask(Heartbeat())
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
    await _gate.check_address_rate()
    await _may_read_agent(agent_id)
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


async def _may_read_agent(agent_id: str) -> None:
    """With ``auth.protect_reads``, whether a probe's configuration is the
    caller's to read: the probe itself, signing with the enrolled agent
    credentials it reports with, or a user who may see it. 404 otherwise, as for
    an unknown agent, so that nobody can test which agent ids exist."""
    if not services().settings.auth.protect_reads:
        return
    if "X-Agent-Id" in request.headers:
        signer = await _gate.probe_credentials(b"")
        holder = (await _gate.directory()).reporting_agent(agent_id)
        if signer is not None and holder is not None and holder.id == signer.id:
            return
    else:
        await _gate.protected_read()
        reporters = await _gate.visible_reporters()
        if reporters is not None and reporters(agent_id):
            return
    raise ApiError(404, "agent_not_found", f"no agent {agent_id!r} is known; register it or send a report",
                   details={"agent_id": agent_id})


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
    await _gate.check_address_rate()
    await _gate.protected_read()
    agents = await describe_all()
    reporters = await _gate.visible_reporters()
    if reporters is not None:
        agents = [row for row in agents if reporters(row["agent_id"])]
    return json_response({"agents": agents, "count": len(agents)})
