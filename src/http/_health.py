"""Liveness, readiness and introspection: ``/health``, ``/health/ready``,
``/health/detailed``, ``/api/v1/ping``, ``/api/v1/runtime``.

``/health`` is liveness (restart the process when it fails): 200 while the
supervision tree runs. ``/health/ready`` is readiness (send traffic only when
it passes): 503 with the reasons while a component cannot serve or the server
is stopping. The components and their checks are in ``_health_checks``.
"""

from __future__ import annotations

import os
import time

import cattrs
from quart import Blueprint, Response

from trioscope import allocator
from trioscope.wire import rfc3339_seconds

from . import _gate
from ._openapi import Answer, Auth, documented
from ._responses import json_response
from ._services import services

blueprint = Blueprint("health", __name__)
_unstructure = cattrs.Converter().unstructure


@blueprint.get("/health")
@documented(answers={200: Answer("every component runs"), 503: Answer("a component is down")})
async def health() -> Response:
    """Health check: 200 while the supervision tree runs, 503 otherwise; ``services`` names each component's state."""
    s = services()
    healthy = s.system.root.alive
    components = await s.health.run(s) if healthy else {}
    body = {"status": "healthy" if healthy else "unhealthy", "timestamp": rfc3339_seconds(time.time()),
            "services": {name: found.status for name, found in components.items()}}
    return json_response(body, status=200 if healthy else 503)


@blueprint.get("/health/ready")
@documented(answers={200: Answer("ready to serve"), 503: Answer("not ready yet: the reasons")})
async def ready() -> Response:
    """Readiness: 200 when the server can serve (store open, actors up, topology loaded), else 503 with the reasons."""
    s = services()
    reasons = []
    if s.health.stopping:
        reasons.append("the server is stopping")
    components = {}
    if not s.system.root.alive:
        reasons.append("the supervision tree is not running")
    else:
        components = await s.health.run(s)
        reasons += [f"{name}: {found.reason or found.status}" for name, found in components.items() if not found.ready]
    body = {"status": "not_ready" if reasons else "ready", "timestamp": rfc3339_seconds(time.time()),
            "services": {name: found.status for name, found in components.items()}}
    if reasons:
        body["reason"] = "; ".join(reasons)
        return json_response(body, status=503, headers={"Retry-After": "5"})
    return json_response(body)


@blueprint.get("/health/detailed")
@documented(auth=Auth.USER, answers={200: Answer("every component's figures"), 503: Answer("a component is down")})
async def detailed() -> Response:
    """Every component's state and figures: mailboxes, restarts, store latency, clients, polls (ADMIN)."""
    await _gate.server_admin()
    s = services()
    alive = s.system.root.alive
    components = await s.health.run(s, detailed=True) if alive else {}
    ready = alive and not s.health.stopping and all(found.ready for found in components.values())
    body = {
        "status": "healthy" if alive else "unhealthy",
        "ready": ready,
        "stopping": s.health.stopping,
        "timestamp": rfc3339_seconds(time.time()),
        "uptime_seconds": round(time.monotonic() - s.started_monotonic, 3),
        "components": {name: {"status": found.status, "ready": found.ready,
                              **({"reason": found.reason} if found.reason else {}), **found.figures}
                       for name, found in components.items()},
        "clients": {"websockets": len(s.clients), "links": len(s.links), "polls_waiting": len(s.polls),
                    "agents": len(s.agents)},
    }
    return json_response(body, status=200 if alive else 503)


@blueprint.get("/api/v1/ping")
@documented()
async def ping() -> Response:
    """Simple ping: answers pong."""
    return json_response({"message": "pong", "timestamp": rfc3339_seconds(time.time())})


@blueprint.get("/api/v1/runtime")
@documented(auth=Auth.USER)
async def runtime() -> Response:
    """The supervision tree with mailbox depths, restarts and dead letters, and
    the allocator of the serving process (ADMIN)."""
    await _gate.server_admin()
    s = services()
    body = _unstructure(s.system.snapshot())
    running = allocator.current()
    body["allocator"] = {"name": running.allocator.value, "library": running.library,
                         "requested": s.settings.server.allocator}
    # With --workers, each request reaches one of several processes: say which.
    body["worker"] = None if s.worker is None else {"index": s.worker, "pid": os.getpid()}
    return json_response(body)
