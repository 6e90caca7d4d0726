"""Liveness and introspection: ``/health``, ``/api/v1/ping``, ``/api/v1/runtime``."""

from __future__ import annotations

import ipaddress

import cattrs
from quart import Blueprint, Response, request

from ._errors import ApiError
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


def _from_loopback() -> bool:
    try:
        return ipaddress.ip_address(request.remote_addr or "").is_loopback
    except ValueError:
        return False


@blueprint.get("/api/v1/runtime")
async def runtime() -> Response:
    """The supervision tree with mailbox depths, restarts and dead letters (loopback only)."""
    # Until users and roles exist, the tree is only shown to this machine.
    if not _from_loopback():
        raise ApiError(403, "forbidden", "the runtime snapshot is only served to loopback clients")
    return json_response(_unstructure(services().system.snapshot()))
