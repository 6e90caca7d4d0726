"""Queries: topology views, node details, agents' reports and time series, stats."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Hashable, Iterator
from functools import partial
from typing import Any, TypeVar

import orjson
import trio
from quart import Blueprint, Response, g, request

from trioscope.actors.agent import LatestReport, Timeseries
from trioscope.actors.topology import GetNodeDetails, GetSnapshot, GetStats
from trioscope.config import format_duration, parse_duration
from trioscope.domain.principals import Permission, Principal
from trioscope.domain.topology import (
    CACHE_LIMIT,
    BadListing,
    MAX_PAGE,
    NODE_FIELDS,
    SUMMARY_FIELDS,
    Listing,
    Node,
    NodeKind,
    TopologySnapshot,
    View,
    id_order_steps,
    visible_counts_steps,
)
from trioscope.runtime import ActorRef, in_steps
from trioscope.wire import rfc3339_seconds

from . import _directory, _gate, _tokens
from ._catching_up import views_caught_up
from ._compression import (
    INLINE_BYTES, MAX_KEPT, MIN_SIZE, STREAM_LEVELS, accepted_encoding, compressed, headers, json_body_response,
    streamed_response,
)
from ._control_rule import controllers
from ._errors import ApiError
from ._openapi import Answer, Auth, boolean, choice, documented, integer, text
from ._probe_actors import agent_or_404
from ._responses import JSON, json_response
from ._services import services

blueprint = Blueprint("query", __name__)
blueprint.before_request(_gate.protected_read)

_VIEWS = {v.value: v for v in View}
_VIEW_NAMES = ("all", *_VIEWS)
"""What ``?view=`` may be, as on the live view (``all``: the whole topology, as no ``view``)."""
T = TypeVar("T")
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
@documented(auth=Auth.READ, query=(choice("view", _VIEW_NAMES), integer("limit", 1, MAX_PAGE), text("cursor", "next_cursor of the page before"),
                                    text("fields", "node fields, comma-separated"), boolean("summary")),
            answers={200: Answer("the topology"), 304: Answer("unchanged since the ETag given", media=None)})
async def topology() -> Response:
    """Get the current topology (?view=all|hosts|containers|processes|pods|services|processes-by-name; ?limit=&cursor=, ?fields=, ?summary=true)."""
    views_caught_up()
    name = request.args.get("view")
    view = None
    if name is not None and name != "all":
        view = _VIEWS.get(name)
        if view is None:
            raise ApiError(400, "invalid_parameter",
                           f"view: unknown view {name[:80]!r}; use one of {', '.join(_VIEW_NAMES)}",
                           details={"parameter": "view", "allowed": list(_VIEW_NAMES)})
    limit, after = _page_params()
    fields = _fields_param()
    encoding = accepted_encoding()
    snapshot: TopologySnapshot = await services().topology.ask(GetSnapshot(), timeout=30)
    visible = await _visible_nodes()
    # A version is one body per URL; not so for a tenant's view, which also
    # changes when an agent joins or leaves its deployments.
    tag = f"{snapshot.version}-{int(snapshot.timestamp * 1000)}"
    tagged = {"ETag": f'W/"{tag}"'} if visible is None else {}
    if tagged and request.if_none_match.contains_weak(tag):
        return Response(b"", status=304, content_type=JSON, headers={**headers(None), **tagged})
    if limit is None and fields is None and visible is None and snapshot.size(view) <= CACHE_LIMIT:
        body = snapshot.json(view)
        if encoding is not None and len(body) >= MIN_SIZE:
            key = ("body", view, encoding)
            if len(body) <= INLINE_BYTES:
                body = snapshot.derived(key, partial(compressed, body, encoding, STREAM_LEVELS))
            else:
                body = await _once_per_version(snapshot, key, compressed, body, encoding)
        else:
            encoding = None
        return Response(body, content_type=JSON, headers={**headers(encoding), **tagged})

    whole = limit is None and fields is None and visible is None
    if whole and encoding is not None and (kept := snapshot.kept(("body", view, encoding))) is not None:
        return Response(kept, content_type=JSON, headers={**headers(encoding), **tagged})
    try:
        listing = Listing(snapshot, view, limit=limit, after=after, fields=fields, visible=visible, batch=PIECE)
    except BadListing as exc:
        raise ApiError(400, "invalid_parameter", str(exc), details={"parameter": exc.parameter}) from None
    await _ordered(listing)

    def keep(body: bytes) -> None:
        # A whole view compressed is small enough to keep for the version's
        # next readers (UIs polling a topology at rest); as it is (80 MB), not.
        held = snapshot.kept("kept bytes") or 0
        if held + len(body) <= MAX_KEPT:
            snapshot.keep(("body", view, encoding), body)
            snapshot.keep("kept bytes", held + len(body))

    # Large, paged, partial or one tenant's views are streamed from the nodes'
    # cached entries (or their fields): no copy of a 100 MB document per
    # version, the first bytes leave at once, and the loop serves other
    # requests between pieces.
    return streamed_response(_document(listing), encoding, tagged, sent=keep if whole else None)


PIECE = 1024
"""Nodes or edges per piece of a streamed listing: ~400 KB of nodes or ~200 KB
of edges, 1-3 ms of CPU each (bench/listing_scale.py)."""

DEFAULT_PAGE = 1000
"""The page size when a request gives a cursor but no limit."""

MAX_CURSOR = 1024


def _document(listing: Listing) -> Iterator[bytes]:
    yield b'{"topology":'
    yield from listing.chunks()
    if listing.paged:
        cursor = base64.urlsafe_b64encode(listing.next_after.encode()).rstrip(b"=").decode() \
            if listing.next_after is not None else None
        yield b',"page":' + orjson.dumps({"limit": listing.limit, "count": listing.count, "next_cursor": cursor})
    yield b"}"


def _page_params() -> tuple[int | None, str | None]:
    """``limit`` and the id ``cursor`` names (both None: no paging)."""
    text, cursor = request.args.get("limit"), request.args.get("cursor")
    limit = None
    if text is not None:
        limit = int(text) if text.isascii() and text.isdigit() and len(text) <= 6 else 0
        if not 1 <= limit <= MAX_PAGE:
            raise ApiError(400, "invalid_parameter", f"limit: must be a whole number from 1 to {MAX_PAGE}",
                           details={"parameter": "limit"})
    if cursor is None:
        return limit, None
    try:
        if len(cursor) > MAX_CURSOR:
            raise ValueError
        after = base64.b64decode(cursor + "=" * (-len(cursor) % 4), altchars=b"-_", validate=True).decode()
    except ValueError:  # binascii.Error and UnicodeDecodeError are ValueErrors
        raise ApiError(400, "invalid_parameter", "cursor: not a cursor from this API (use a page's next_cursor)",
                       details={"parameter": "cursor"}) from None
    return limit if limit is not None else DEFAULT_PAGE, after


def _fields_param() -> tuple[str, ...] | None:
    """The node fields to show: ``fields=a,b`` or ``summary=true``; None: all."""
    summary, text = request.args.get("summary"), request.args.get("fields")
    if summary not in (None, "true", "false"):
        raise ApiError(400, "invalid_parameter", "summary: must be true or false", details={"parameter": "summary"})
    if text is None:
        return SUMMARY_FIELDS if summary == "true" else None
    if summary == "true":
        raise ApiError(400, "invalid_parameter", "fields: give either fields or summary=true, not both",
                       details={"parameter": "fields"})
    names = tuple(dict.fromkeys(name.strip() for name in text.split(",") if name.strip()))
    unknown = [name for name in names if name not in NODE_FIELDS]
    if unknown or not names:
        raise ApiError(400, "invalid_parameter",
                       f"fields: unknown field {unknown[0][:80]!r}" if unknown else "fields: name at least one field",
                       details={"parameter": "fields", "allowed": list(NODE_FIELDS)})
    return names


async def _once_per_version(snapshot: TopologySnapshot, key: Hashable, make: Callable[..., T], *args: Any) -> T:
    """``make(*args)``, kept with the version for all its readers under
    ``key``: computed once, in a worker thread so that the loop goes on
    serving (compressing a cached view over ``INLINE_BYTES`` takes ~10-30 ms)."""
    async with services().view_builds:
        value = snapshot.kept(key)
        if value is None:
            value = snapshot.keep(key, await trio.to_thread.run_sync(make, *args))
    return value


async def _ordered(listing: Listing) -> None:
    """The id orders a page is cut from, built once per version, in steps
    with checkpoints in between (sorting 200,000 edges at once would hold the
    loop 60-120 ms; a worker thread would not help: a sort holds the GIL)."""
    for kind in listing.unordered():
        async with services().view_builds:
            await in_steps(id_order_steps(listing.snapshot, kind))


async def _visible_nodes() -> Callable[[Node], bool] | None:
    """The reader's nodes (``_gate.visible_nodes``): None for all."""
    seen = await _gate.visible_nodes()
    if seen is None:
        return None
    return lambda node: seen(node.id, node.agent_id)


@blueprint.get("/api/v1/query/nodes/<path:node_id>")
@documented(auth=Auth.READ, query=(text("duration", "metrics window, e.g. 15m (at most 720h)"),))
async def node(node_id: str) -> Response:
    """Get a node with its parents, children, connections, recent metrics and the controls the reader may use."""
    views_caught_up()
    _text, seconds = duration_param("15m")
    details = await services().topology.ask(GetNodeDetails(node_id, seconds), timeout=30)
    seen = await _gate.visible_nodes()
    if details is None or (seen is not None and not seen(details["node"]["id"], details["node"].get("agent_id"))):
        raise ApiError(404, "node_not_found", f"no node {node_id!r} in the topology", details={"node_id": node_id})
    reporters = await _gate.visible_reporters()
    if seen is not None and reporters is not None:
        # Parents, children and neighbours are named with their ids: another
        # tenant's are left out, as in the views.
        details = _without_hidden(details, seen, reporters)
    reader = await _signed_in_reader()
    deployment_hash = await _reporters_deployment(reader, details["node"].get("agent_id") or "")
    controllable, controls = await _reader_controls(reader, details["node"])
    return json_response({**details, "deployment_hash": deployment_hash,
                          "controllable": controllable, "controls": controls})


async def _signed_in_reader() -> Principal | None:
    """Who asks, if they sent a valid user token (the reader where reads are
    protected); None for an open read without one (or with a bad one: the
    read is open, a bad token only loses what is the reader's own)."""
    reader: Principal | None = g.get("reader")
    if reader is None and _tokens.bearer() is not None:
        try:
            reader = await _gate.user(Permission.READ)
        except ApiError:
            reader = None
    return reader


async def _reader_controls(reader: Principal | None, node: dict[str, Any]) -> tuple[bool, list[dict[str, Any]]]:
    """Whether ``reader`` may control the container ``node`` at all, and which
    of the controls its state offers they may run, by the control endpoint's
    own rule (``_control_rule``: an enrolled agent reported it, in a
    deployment of the reader's tenant they own or administer, and it runs the
    action). Its controllers are read once for the node, not once per
    control. Not a container, no enrolled reporter, no OPERATE permission or
    no token: (False, [])."""
    offered: list[dict[str, Any]] | None = node.get("metadata", {}).get("controls")
    if reader is None or offered is None or node.get("type") != NodeKind.CONTAINER.value \
            or not reader.may(Permission.OPERATE):
        return False, []
    found = await controllers(reader, node["id"])
    # Theirs even if its agents run none of the controls its state offers.
    return bool(found), [control for control in offered
                         if any(controller.may_run(control["id"]) for controller in found)]


async def _reporters_deployment(reader: Principal | None, reporter_id: str) -> str | None:
    """The deployment the node's probe is enrolled in, for a signed-in user of
    its tenant (None otherwise): the label its agent's points carry in the
    metrics API, which the details panel lists beside the host's own series
    (a metrics engine behind ``--metrics-url`` holds only the written ones)."""
    if reader is None or not reporter_id:
        return None
    found = await _directory.directory()
    agent = found.reporting_agent(reporter_id)
    deployment = found.deployments.get(agent.deployment_hash) if agent is not None else None
    if agent is None or deployment is None or deployment.tenant != reader.tenant:
        return None
    return agent.deployment_hash


def _without_hidden(details: dict[str, Any], seen: Callable[[str, str | None], bool],
                    reporters: Callable[[str], bool]) -> dict[str, Any]:
    """A node's details with the related nodes (``seen``) and agents (``reporters``) the reader may not see left out."""
    def shown(brief: dict[str, Any]) -> bool:
        return seen(brief["id"], brief.get("agent_id") or None)

    return {**details, **{part: [b for b in details[part] if shown(b)]
                          for part in ("parents", "groups", "children", "connected")},
            "agents": [a for a in details.get("agents", ()) if reporters(a)]}


async def _visible_agent(agent_id: str) -> ActorRef:
    """The agent's actor, if the reader may see it and what it keeps
    (``_gate.keeps_readers``); 404 otherwise (as if unknown)."""
    reporters = await _gate.visible_reporters()
    if reporters is not None and not (reporters(agent_id) and await _gate.keeps_readers(agent_id)):
        raise ApiError(404, "agent_not_found", f"no agent {agent_id!r} is known; register it or send a report",
                       details={"agent_id": agent_id})
    return agent_or_404(agent_id)


@blueprint.get("/api/v1/query/agents/<agent_id>/latest")
@documented(auth=Auth.READ)
async def latest(agent_id: str) -> Response:
    """Get an agent's latest report."""
    views_caught_up()
    found = await (await _visible_agent(agent_id)).ask(LatestReport())
    if found is None:
        raise ApiError(404, "no_report", f"agent {agent_id!r} has not sent a report yet",
                       details={"agent_id": agent_id})
    # The report as the agent sent it: it was parsed once already, it is valid JSON.
    return await json_body_response(orjson.dumps({"agent_id": agent_id, "received_at": rfc3339_seconds(
        found.received_at), "report": orjson.Fragment(found.raw)}))


@blueprint.get("/api/v1/query/agents/<agent_id>/timeseries")
@documented(auth=Auth.READ, query=(text("duration", "window, e.g. 1h (at most 720h)"),))
async def timeseries(agent_id: str) -> Response:
    """Get an agent's metrics at 15 s resolution (?duration=1h)."""
    views_caught_up()
    text, seconds = duration_param("1h")
    points = await (await _visible_agent(agent_id)).ask(Timeseries(seconds))
    rows = [{"timestamp": rfc3339_seconds(p.timestamp), **p.values} for p in points]
    return json_response({"agent_id": agent_id, "duration": text, "points": rows, "count": len(rows)})


@blueprint.get("/api/v1/query/stats")
@documented(auth=Auth.READ)
async def stats() -> Response:
    """Get server statistics (protected reads: the reader's tenant's agents and nodes, and the topology's version; an ADMIN's has `server`)."""
    s = services()
    topology_stats = await s.topology.ask(GetStats(), timeout=30)
    agents = len(s.agents)
    counts = topology_stats["topology"]
    whole = None
    runtime = s.system.snapshot()
    # The server's own figures: how it runs, not what any tenant reports.
    server_figures: dict[str, Any] = {
        "storage": topology_stats["storage"],
        # With a bus: how far this replica has read the report stream (lag: reports to go).
        **({"bus": s.bus.progress.as_dict()} if s.bus is not None else {}),
        "runtime": {"actors": runtime.actors, "dead_letters": runtime.dead_letters},
    }
    clients = len(s.clients)
    reporters = await _gate.visible_reporters()
    seen = await _gate.visible_nodes()
    if reporters is not None and seen is not None:
        # What the reader's views hold, not the server's (nor other tenants') figures; an
        # admin of the server, who may read the whole server's (``readable_tenant``), has them apart.
        admin = _gate.readable_tenant() is None
        if admin:
            whole = {"server": {"agents": agents, "topology": counts}}
        prefix = f"{s.agents.path}/"
        agents = sum(1 for ref in s.agents.children() if reporters(ref.path.removeprefix(prefix)))
        snapshot: TopologySnapshot = await s.topology.ask(GetSnapshot(), timeout=30)
        # The version, whoever reads: the web UI tells from it that its live
        # view is behind. It tells no more of other tenants than the live
        # view does, which is sent every version, as a diff holding nothing
        # of theirs (``diff_frame``).
        counts = {**await in_steps(visible_counts_steps(snapshot, seen, PIECE)), "agents": agents, "version": snapshot.version}
        if not admin:
            # Each of them tells how much the other tenants report (the series
            # stored, the actors, one per probe; the merge's counters), and the
            # server's live views how many other tenants' users watch: the
            # tenant's own are told.
            server_figures = {}
            tenant = _gate.readable_tenant()
            clients = s.live_views.count(tenant) if tenant is not None else 0
    return json_response({
        "agents": agents,
        "websocket_clients": clients,
        "topology": counts,
        **server_figures,
        **(whole or {}),
        "uptime": format_duration(round(time.monotonic() - s.started_monotonic)),
    })
