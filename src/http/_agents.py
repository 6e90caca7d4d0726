"""Agent management: register, heartbeat, configuration, list."""

from __future__ import annotations

from typing import Any

import attrs
from quart import Blueprint, Response, request

from trioscope.actors.agent import Describe
from trioscope.actors.roster import ProbeHeartbeat, RegisterProbe
from trioscope.config import format_duration
from trioscope.domain.timeseries import RESOLUTION
from trioscope.runtime import ActorFailed, ActorStopped, AskTimeout, MailboxFull
from trioscope.wire import (
    AgentHeartbeat, AgentRegistration, InvalidDocument, decode_heartbeat, decode_registration, rfc3339_seconds,
)

from . import _client_address, _directory, _gate, _probe_vouching, _rate_checks
from ._bodies import invalid, parse_json, parse_object, read_body_and_raw
from ._catching_up import views_caught_up
from ._errors import ApiError, field_error
from ._memory_budget import memory_budget
from ._openapi import STRING, TIME, Answer, Auth, documented, fields
from ._probe_actors import agent_or_404, ask_roster
from ._responses import json_response
from ._services import services

blueprint = Blueprint("agents", __name__)

MAX_REGISTRATION_BODY = 512 * 1024
"""Bytes of a probe registration's body: its metadata (64 entries at most, of
keys up to 256 characters and values up to 4,096: ~280 KiB) and the rest; a
larger one is refused (413) before it is read, not parsed and checked first."""
MAX_HEARTBEAT_BODY = 64 * 1024
"""Bytes of a heartbeat's optional body (``agent_id`` is all it is read for)."""


def _registration(body: bytes) -> AgentRegistration:
    try:
        return decode_registration(parse_json(body))
    except InvalidDocument as exc:
        raise invalid("invalid_registration", exc) from None


@blueprint.post("/api/v1/agents/register")
@documented(auth=Auth.PROBE, body=AgentRegistration, answers={201: Answer("registered", schema=fields(
                status={"const": "registered"}, message=STRING, agent_id=STRING))},
            errors={409: "the agent id belongs to another enrolled agent"})
async def register() -> Response:
    """Register a new agent (201)."""
    await _rate_checks.check_registration_rate()
    body, raw = await read_body_and_raw(services().settings, limit=MAX_REGISTRATION_BODY)
    signer = await _probe_vouching.probe_credentials(raw)
    registration = _registration(body)  # here: a body of at most 512 KiB, and no credentials to spend a worker thread
    claimed = registration.metadata.get("deployment_hash")
    await _probe_vouching.vouch(registration.agent_id, signer, claimed)
    if signer is None and "command_agent_id" in registration.metadata:
        raise ApiError(400, "invalid_registration", "$.metadata.command_agent_id: only a signed registration "
                       "may name its command agent", details={"errors": [{"path": "$.metadata.command_agent_id",
                                                                          "message": "needs a signature"}]})
    if signer is not None:
        # What the credentials prove, not what the body says.
        registration = attrs.evolve(registration, metadata={
            **registration.metadata, "deployment_hash": signer.deployment_hash, "command_agent_id": signer.id})
    await ask_roster(RegisterProbe(registration, enrolled=signer is not None, address=_client_address.client_source(),
                                   signer=None if signer is None else signer.id,
                                   scope=await _probe_vouching.signer_scope(signer)))
    return json_response(
        {"status": "registered", "message": f"Agent {registration.agent_id} registered successfully",
         "agent_id": registration.agent_id},
        status=201,
    )


@blueprint.post("/api/v1/agents/heartbeat/<agent_id>")
@documented(auth=Auth.PROBE, body=AgentHeartbeat, body_required=False,
            answers={200: Answer("alive", schema=fields(status={"const": "ok"}, timestamp=TIME))})
async def heartbeat(agent_id: str) -> Response:
    """Send a heartbeat (404 for unknown agents; signed, as its reports, for a probe of an enrolled agent)."""
    await _rate_checks.check_report_rate()
    body, raw = await read_body_and_raw(services().settings, limit=MAX_HEARTBEAT_BODY)
    signer = await _probe_vouching.probe_credentials(raw)
    document = parse_object(body)
    if document:
        try:
            beat = decode_heartbeat(document)
        except InvalidDocument as exc:
            raise invalid("invalid_heartbeat", exc) from None
        if beat.agent_id is not None and beat.agent_id != agent_id:
            raise field_error("invalid_heartbeat", "$.agent_id", f"{beat.agent_id!r} is not the path's agent")
    # Someone else keeping an enrolled agent's probe alive would hide that it went away.
    await _probe_vouching.vouch(agent_id, signer, attach=False)
    at = await ask_roster(ProbeHeartbeat(agent_id))
    return json_response({"status": "ok", "timestamp": rfc3339_seconds(at)})


@blueprint.get("/api/v1/agents/config/<agent_id>")
@documented(auth=Auth.READ)
async def config(agent_id: str) -> Response:
    """Get an agent's configuration (404 for unknown agents)."""
    await _rate_checks.check_address_rate()
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
        signer = await _probe_vouching.probe_credentials(b"")
        holder = (await _directory.directory()).reporting_agent(agent_id)
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
@documented(auth=Auth.READ)
async def list_agents() -> Response:
    """List all agents with their status."""
    await _rate_checks.check_address_rate()
    await _gate.protected_read()
    views_caught_up()
    agents = await describe_all()
    reporters = await _gate.visible_reporters()
    if reporters is not None:
        agents = [row for row in agents if reporters(row["agent_id"]) and await _gate.keeps_readers(row["agent_id"])]
    return json_response({"agents": agents, "count": len(agents)})
