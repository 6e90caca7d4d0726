"""Who is asking, by address: the connection being handled (an HTTP request or
a WebSocket), its client's address (through trusted proxies) and the source
that per-address limits count it as."""

from __future__ import annotations

from typing import Any

from quart import has_request_context, request, websocket

from ._forwarded import source_of
from ._services import services


def current_connection() -> Any:
    """The HTTP request or WebSocket being handled (both have headers, path, address)."""
    return request if has_request_context() else websocket


def client_address() -> str:
    """The client's address, for rate limits, the audit log and the access
    log: the connection's peer, or the client a trusted proxy forwarded for
    (``server.trusted_proxies``; ``_forwarded``)."""
    return services().proxies.client_of(current_connection().scope)


def client_source() -> str:
    """What the client counts as for per-address limits: its address, or
    for IPv6 its /64 (``_forwarded.source_of``)."""
    return source_of(client_address())
