"""Cross-origin requests (CORS) and the WebSocket origin check, one policy for
both (``server.cors_origins``, ``server.cors_allow_credentials``).

Off by default: no ``Access-Control-*`` header is sent, preflights are
refused (403), and a browser may open a WebSocket, or send a request that
changes anything (any method but GET and HEAD), only from the server's own
pages. A page elsewhere can make a browser send such a request without asking
first (a form, or ``fetch`` in ``no-cors`` mode with a body of no type: no
preflight), and the routes that take no credentials (probes' reports,
registrations and heartbeats) would take it: refused 403 unless its origin
is allowed. A browser sends ``Origin`` on cross-origin requests and on every
WebSocket handshake; programs (probes, agents, curl) send none and are not
concerned. With origins listed, a preflight (``OPTIONS`` with
``Access-Control-Request-Method``) from one of them gets 204 and the allow
headers, answers to them carry ``Access-Control-Allow-Origin`` (always with
``Vary: Origin``: the answer depends on it), and their pages may open
WebSockets. An ASGI middleware, so refusals and errors carry the headers too
(a browser shows a script no status without them).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs

from ._access_log import ROUTE_KEY, App, Receive, Scope, Send
from ._errors import send_refusal

ALLOW_METHODS = "GET, POST, PUT, PATCH, DELETE"
ALLOW_HEADERS = "Authorization, Content-Type, Content-Encoding, If-None-Match, X-Request-Id"
"""What the API reads from a browser's request besides the CORS-safelisted headers."""
EXPOSE_HEADERS = "X-Request-Id, Retry-After, ETag, X-Total-Bytes, X-Next-Offset"
"""What the API's answers carry that a script may need to read."""
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
"""What a page elsewhere may have a browser send here: reads (their answers a
script there reads only where CORS allows it)."""
MAX_AGE = "600"
"""Seconds a browser may reuse a preflight's answer."""


@attrs.frozen
class CorsPolicy:
    """Which origins' pages may call the API and open its WebSockets (pure)."""

    origins: frozenset[str] = frozenset()
    any_origin: bool = False
    credentials: bool = False

    @classmethod
    def parse(cls, origins: Sequence[str], credentials: bool) -> CorsPolicy:
        """From checked configuration (``*`` never with credentials: refused there)."""
        return cls(frozenset(origins) - {"*"}, "*" in origins, credentials)

    def allows(self, origin: str) -> bool:
        return self.any_origin or origin.lower() in self.origins

    def allows_page(self, origin: str, host: str | None) -> bool:
        """A browser's WebSocket handshake, or request that changes something:
        from the server's own pages (the origin's host and port are those the
        request was sent to), or an allowed origin."""
        own = host is not None and origin.partition("://")[2].lower() == host.lower()
        return own or self.allows(origin)

    def answer_headers(self, origin: str) -> list[tuple[bytes, bytes]]:
        """Headers for an answer to ``origin`` (an allowed one: CORS headers; any: Vary)."""
        if not self.allows(origin):
            return [(b"vary", b"Origin")]
        return [*self._allow(origin), (b"access-control-expose-headers", EXPOSE_HEADERS.encode())]

    def preflight_headers(self, origin: str) -> list[tuple[bytes, bytes]]:
        return [*self._allow(origin), (b"access-control-allow-methods", ALLOW_METHODS.encode()),
                (b"access-control-allow-headers", ALLOW_HEADERS.encode()),
                (b"access-control-max-age", MAX_AGE.encode())]

    def _allow(self, origin: str) -> list[tuple[bytes, bytes]]:
        # Echo the origin rather than "*" even for any origin: one spelling, and Vary says it depends on it.
        headers = [(b"access-control-allow-origin", origin.encode("latin-1")), (b"vary", b"Origin")]
        if self.credentials:
            headers.append((b"access-control-allow-credentials", b"true"))
        return headers


def _read_headers(scope: Scope) -> tuple[bytes | None, bytes | None, bool]:
    """The request's ``Origin`` and ``Host``, and whether it carries
    ``Access-Control-Request-Method`` (a preflight). Only these are kept: the
    middleware's frame lives as long as the request, held long-polls too."""
    origin = host = None
    preflight = False
    for raw_name, value in scope.get("headers", ()):
        name = bytes(raw_name).lower()
        if name == b"origin":
            origin = bytes(value)
        elif name == b"host":
            host = bytes(value)
        elif name == b"access-control-request-method":
            preflight = True
    return origin, host, preflight


class Cors:
    """ASGI middleware applying a ``CorsPolicy``."""

    def __init__(self, app: App, policy: CorsPolicy) -> None:
        self.app = app
        self.policy = policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        raw_origin, host, preflight = _read_headers(scope)
        if raw_origin is None:
            await self.app(scope, receive, send)
            return
        origin = raw_origin.decode("latin-1")
        if scope["type"] == "websocket":
            if self.policy.allows_page(origin, None if host is None else host.decode("latin-1")):
                await self.app(scope, receive, send)
            else:
                await self._refuse_websocket(scope, send, origin)
            return
        if scope["method"] == "OPTIONS" and preflight:
            scope[ROUTE_KEY] = "(CORS preflight)"
            await self._preflight(scope, send, origin)
            return
        if scope["method"] not in SAFE_METHODS and not self.policy.allows_page(
                origin, None if host is None else host.decode("latin-1")):
            scope[ROUTE_KEY] = "(cross-origin request refused)"
            await send_refusal(scope, send, 403, "cors_origin_not_allowed", f"requests that change anything are not "
                               f"taken from pages of {origin[:200]} (server.cors_origins)", [(b"vary", b"Origin")])
            return
        extra = self.policy.answer_headers(origin)

        async def send_with_cors(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", ()), *extra]}
            await send(message)

        await self.app(scope, receive, send_with_cors)

    async def _preflight(self, scope: Scope, send: Send, origin: str) -> None:
        if self.policy.allows(origin):
            await send({"type": "http.response.start", "status": 204, "headers": self.policy.preflight_headers(origin)})
            await send({"type": "http.response.body", "body": b""})
            return
        await send_refusal(scope, send, 403, "cors_origin_not_allowed", f"cross-origin requests from {origin[:200]} "
                           "are not allowed (server.cors_origins)", [(b"vary", b"Origin")])

    async def _refuse_websocket(self, scope: Scope, send: Send, origin: str) -> None:
        scope[ROUTE_KEY] = "(WebSocket origin refused)"
        await send_refusal(scope, send, 403, "websocket_origin_not_allowed", f"WebSockets from pages of "
                           f"{origin[:200]} are not allowed (server.cors_origins)", [(b"vary", b"Origin")])
