"""Queries: topology views, node details, agents' reports and time series, stats."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
from quart import Blueprint, Response, request

from trioscope.actors.agent import LatestReport, Timeseries
from trioscope.actors.topology import GetNodeDetails, GetSnapshot, GetStats
from trioscope.config import format_duration, parse_duration
from trioscope.domain.agents import rfc3339
from trioscope.domain.topology import CACHE_LIMIT, Node, TopologySnapshot, View
from trioscope.runtime import ActorRef

from . import _gate
from ._agents import agent_or_404
from ._errors import ApiError
from ._responses import JSON, json_bytes_response, json_response
from ._services import services

blueprint = Blueprint("query", __name__)
blueprint.before_request(_gate.protected_read)

_VIEWS = {v.value: v for v in View}
MAX_DURATION = 30 * 24 * 3600.0


def duration_param(default: str) -> tuple[str, float]:
    text = request.args.get("duration", default)
    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        raise ApiError(400, "invalid_parameter", f"duration: {exc}", details={"parameter": "duration"}) from None
    if not 0 < seconds <= MAX_DURATION:
        raise ApiError(400, "invalid_parameter", "duration: must be more than 0 and at most 720h",
                       details={"parameter": "duration"})
    return text, seconds


@blueprint.get("/api/v1/query/topology")
async def topology() -> Response:
    """Get the current topology (?view=hosts|containers|processes|pods|services)."""
    name = request.args.get("view")
    view = None
    if name is not None:
        view = _VIEWS.get(name)
        if view is None:
            raise ApiError(400, "invalid_parameter", f"view: unknown view {name!r}; use one of {', '.join(_VIEWS)}",
                           details={"parameter": "view", "allowed": list(_VIEWS)})
    snapshot: TopologySnapshot = await services().topology.ask(GetSnapshot(), timeout=30)
    visible = await _visible_nodes()
    if visible is None and snapshot.size(view) <= CACHE_LIMIT:
        return json_bytes_response(snapshot.json(view))

    # Large (or one tenant's) views are streamed from the nodes' cached
    # entries: no copy of a 100 MB document per version, and the first bytes
    # leave at once.
    async def body() -> AsyncIterator[bytes]:
        for chunk in snapshot.chunks(view, visible=visible):
            yield chunk

    return Response(body(), content_type=JSON)


async def _visible_nodes() -> Callable[[Node], bool] | None:
    """The reader's nodes (by the probe that reported them): None for all."""
    reporters = await _gate.visible_reporters()
    if reporters is None:
        return None
    return lambda node: node.agent_id is not None and reporters(node.agent_id)


@blueprint.get("/api/v1/query/nodes/<path:node_id>")
async def node(node_id: str) -> Response:
    """Get a node with its parents, children, connections and recent metrics."""
    _text, seconds = duration_param("15m")
    details = await services().topology.ask(GetNodeDetails(node_id, seconds), timeout=30)
    reporters = await _gate.visible_reporters()
    if details is None or (reporters is not None and not reporters(details["node"].get("agent_id") or "")):
        raise ApiError(404, "node_not_found", f"no node {node_id!r} in the topology", details={"node_id": node_id})
    if reporters is not None:
        # Parents, children and neighbours are named with their ids: another
        # tenant's are left out, as in the views.
        details = _without_hidden(details, reporters)
    return json_response(details)


def _without_hidden(details: dict[str, Any], reporters: Callable[[str], bool]) -> dict[str, Any]:
    """A node's details with the related nodes and agents the reader may not see left out."""
    def shown(brief: dict[str, Any]) -> bool:
        return bool(brief.get("agent_id")) and reporters(brief["agent_id"])

    return {**details, **{part: [b for b in details[part] if shown(b)]
                          for part in ("parents", "groups", "children", "connected")},
            "agents": [a for a in details.get("agents", ()) if reporters(a)]}


async def _visible_agent(agent_id: str) -> ActorRef:
    """The agent's actor, if the reader may see it; 404 otherwise (as if unknown)."""
    reporters = await _gate.visible_reporters()
    if reporters is not None and not reporters(agent_id):
        raise ApiError(404, "agent_not_found", f"no agent {agent_id!r} is known; register it or send a report",
                       details={"agent_id": agent_id})
    return agent_or_404(agent_id)


@blueprint.get("/api/v1/query/agents/<agent_id>/latest")
async def latest(agent_id: str) -> Response:
    """Get an agent's latest report."""
    found = await (await _visible_agent(agent_id)).ask(LatestReport())
    if found is None:
        raise ApiError(404, "no_report", f"agent {agent_id!r} has not sent a report yet",
                       details={"agent_id": agent_id})
    raw, received_at = found
    # The report as the agent sent it: it was parsed once already, it is valid JSON.
    return json_response({"agent_id": agent_id, "received_at": rfc3339(received_at), "report": orjson.Fragment(raw)})


@blueprint.get("/api/v1/query/agents/<agent_id>/timeseries")
async def timeseries(agent_id: str) -> Response:
    """Get an agent's metrics at 15 s resolution (?duration=1h)."""
    text, seconds = duration_param("1h")
    points = await (await _visible_agent(agent_id)).ask(Timeseries(seconds))
    rows = [{"timestamp": rfc3339(p.timestamp), **p.values} for p in points]
    return json_response({"agent_id": agent_id, "duration": text, "points": rows, "count": len(rows)})


@blueprint.get("/api/v1/query/stats")
async def stats() -> Response:
    """Get server statistics."""
    s = services()
    topology_stats = await s.topology.ask(GetStats(), timeout=30)
    runtime = s.system.snapshot()
    return json_response({
        "agents": len(s.agents),
        "websocket_clients": len(s.clients),
        "storage": topology_stats["storage"],
        "topology": topology_stats["topology"],
        "runtime": {"actors": runtime.actors, "dead_letters": runtime.dead_letters},
        "uptime": format_duration(round(time.monotonic() - s.started_monotonic)),
    })
