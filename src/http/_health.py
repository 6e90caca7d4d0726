"""Liveness and introspection: ``/health``, ``/api/v1/ping``, ``/api/v1/runtime``."""

from __future__ import annotations

import os

import cattrs
from quart import Blueprint, Response

from trioscope.domain.principals import Permission

from . import _gate
from ._responses import json_response, rfc3339, utc_now
from ._services import services

blueprint = Blueprint("health", __name__)
_unstructure = cattrs.Converter().unstructure


@blueprint.get("/health")
async def health() -> Response:
    """Health check: 200 while the supervision tree runs, 503 otherwise."""
    healthy = services().system.root.alive
    body = {"status": "healthy" if healthy else "unhealthy", "timestamp": rfc3339(utc_now())}
    return json_response(body, status=200 if healthy else 503)


@blueprint.get("/api/v1/ping")
async def ping() -> Response:
    """Simple ping: answers pong."""
    return json_response({"message": "pong", "timestamp": rfc3339(utc_now())})


@blueprint.get("/api/v1/runtime")
async def runtime() -> Response:
    """The supervision tree with mailbox depths, restarts and dead letters (ADMIN)."""
    await _gate.user(Permission.ADMINISTER)
    s = services()
    body = _unstructure(s.system.snapshot())
    # With --workers, each request reaches one of several processes: say which.
    body["worker"] = None if s.worker is None else {"index": s.worker, "pid": os.getpid()}
    return json_response(body)
