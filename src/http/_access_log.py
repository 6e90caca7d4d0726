"""Request ids on every answer, and one access-log line per request when
``server.access_log`` is on: an ASGI middleware around the application, so it
sees every answer, refusals and CORS preflights included, with the bytes
actually sent.

A line has the method, the route *template* (``/ws/user/<user_id>``, never
the path as sent nor its query string: a WebSocket's ``?token=`` and ids in
paths stay out of logs), the status, the duration, the body bytes sent, the
client address (through trusted proxies) and the request id. No header value
but the request id is logged. In JSON log mode the fields are the object's
keys; WebSockets are logged when they end, with status 101 once accepted.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from trioscope.domain.metric_labels import method_label

from ._forwarded import TrustedProxies

log = logging.getLogger("trioscope.access")

ROUTE_KEY = "trioscope.route"
"""Where the application leaves the matched route template in the ASGI scope."""
REQUEST_ID_KEY = "trioscope.request_id"
_REQUEST_ID = re.compile(rb"[A-Za-z0-9._~:@+/=-]{1,128}")
"""A client's request id is echoed only when it is short and plain (it lands
in headers and logs); otherwise a new one is made."""

# ASGI's types, loosely: Quart's TypedDicts do not admit the keys we add.
Scope = Any
Receive = Callable[[], Awaitable[Any]]
Send = Callable[[Any], Awaitable[None]]
App = Callable[[Any, Any, Any], Awaitable[None]]


def name_route(scope: Scope, route: str) -> None:
    """Leave the matched route template for the access log."""
    scope[ROUTE_KEY] = route


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return bytes(value)
    return None


def request_id(scope: Scope) -> str:
    """The request's ``X-Request-Id`` if it is plain enough to echo, else a new one."""
    given = _header(scope, b"x-request-id")
    if given is not None and _REQUEST_ID.fullmatch(given):
        return given.decode("ascii")
    return uuid.uuid4().hex


def headers_below(scope: Scope | None) -> list[tuple[bytes, bytes]]:
    """What ``AccessLog`` puts on every answer, for the answers made below it
    (Hypercorn's own refusals of a request or a WebSocket handshake, which the
    middleware never sees): the request's id, the one the application was given
    if it was called, and ``nosniff``."""
    rid = (scope or {}).get(REQUEST_ID_KEY) or request_id(scope or {})
    return [(b"x-request-id", rid.encode("ascii")), _NOSNIFF]


class _Answer:
    """One request's answer on its way out: the request id header added, its
    status and body bytes counted. A small object rather than a closure over
    them: a held long-poll keeps it for its whole wait."""

    __slots__ = ("_send", "_rid", "_private", "_secure", "status", "sent")

    def __init__(self, send: Send, rid: str, private: bool, secure: bool) -> None:
        self._send = send
        self._rid = rid
        self._private = private
        """An answer of the API (``PRIVATE_PREFIXES``) or to a request with credentials: never kept by a cache."""
        self._secure = secure
        """Served over TLS by this server (``--tls-cert``): browsers are told to come back only so."""
        self.status = 0
        self.sent = 0

    async def send(self, message: dict[str, Any]) -> None:
        event = message["type"]
        if event in ("http.response.start", "websocket.http.response.start"):
            self.status = message["status"]
            # nosniff on every answer, not only the UI's: a JSON error echoing
            # what was asked must never be read as a page.
            headers = [*message.get("headers", ()), self._header(), _NOSNIFF]
            if self._secure:
                headers.append(_HSTS)
            if self._private and not any(name.lower() == b"cache-control" for name, _ in headers):
                # A browser kept signed-in answers in its cache: after signing
                # out, a script of the page read them back with no token.
                headers.append(_NO_STORE)
            message = {**message, "headers": headers}
        elif event == "websocket.accept":
            self.status = 101
            message = {**message, "headers": [*message.get("headers", ()), self._header()]}
        elif event in ("http.response.body", "websocket.http.response.body"):
            self.sent += len(message.get("body", b""))
        elif event == "websocket.send":
            self.sent += len(message.get("bytes") or b"") + _utf8_length(message.get("text") or "")
        elif event == "websocket.close" and not self.status:
            self.status = 403  # closed before accepting: Hypercorn answers the handshake 403
        await self._send(message)

    def _header(self) -> tuple[bytes, bytes]:
        return (b"x-request-id", self._rid.encode("ascii"))


_NOSNIFF = (b"x-content-type-options", b"nosniff")
_NO_STORE = (b"cache-control", b"no-store")
_HSTS = (b"strict-transport-security", b"max-age=31536000")
"""A year, without ``includeSubDomains``: the server speaks for its own name only."""
PRIVATE_PREFIXES = ("/api/", "/prometheus/")
"""Paths whose answers carry ``Cache-Control: no-store`` unless they say otherwise."""


def _private(scope: Scope) -> bool:
    """Whether ``scope``'s answer must not be cached: the API's, or one to credentials."""
    path = scope.get("path", "")
    return path.startswith(PRIVATE_PREFIXES) or any(
        name in (b"authorization", b"cookie") for name, _ in scope.get("headers", ()))


def _utf8_length(text: str) -> int:
    """Bytes of ``text`` in UTF-8, without encoding it where that is known: a
    shared frame's (``SharedFrame.nbytes``; a first view of 100 MB sent to
    each of many clients), or an ASCII string's (its length)."""
    known = getattr(text, "nbytes", 0)
    if known:
        return int(known)
    return len(text) if text.isascii() else len(text.encode())


class AccessLog:
    """ASGI middleware: an ``X-Request-Id`` on every HTTP answer (and on the
    WebSocket handshake's), ``X-Content-Type-Options: nosniff``, ``Cache-Control:
    no-store`` on the API's answers and those to credentials (unless set),
    ``Strict-Transport-Security`` when served over TLS, and the access-log line
    when ``enabled``."""

    def __init__(self, app: App, *, enabled: bool, proxies: TrustedProxies) -> None:
        self.app = app
        self.enabled = enabled
        self.proxies = proxies

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        rid = scope[REQUEST_ID_KEY] = request_id(scope)
        started = time.perf_counter()
        answer = _Answer(send, rid, _private(scope), scope.get("scheme") in ("https", "wss"))
        try:
            await self.app(scope, receive, answer.send)
        finally:
            if self.enabled:
                self._log(scope, answer.status, answer.sent, time.perf_counter() - started, rid)

    def _log(self, scope: Scope, status: int, sent: int, duration: float, rid: str) -> None:
        websocket = scope["type"] == "websocket"
        method = "GET" if websocket else method_label(scope.get("method", "?"))
        route = scope.get(ROUTE_KEY) or "(unmatched)"
        client = self.proxies.client_of(scope)
        duration_ms = round(duration * 1000, 3)
        log.info("%s %s%s %s %.1fms %dB client=%s request_id=%s", method, route, " (websocket)" if websocket else "",
                 status or "-", duration_ms, sent, client, rid,
                 extra={"method": method, "route": route, "status": status or None, "duration_ms": duration_ms,
                        "bytes": sent, "client": client, "request_id": rid, "websocket": websocket})
