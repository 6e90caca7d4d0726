"""Quart-Trio's application, with a cancelled handler's exception left in no
reference cycle (and a ``path`` converter that matches any character).

Quart-Trio ends a WebSocket handler by cancelling it, and a handler whose
nursery is cancelled raises a group of ``Cancelled``. Quart-Trio 0.12 re-raises
that group from frames that keep it in a local variable (``error`` in
``handle_user_exception``, ``filtered_error`` in ``handle_websocket``), and
those frames are in the group's own traceback: a reference cycle. Through the
frames below it (the handler's) it held the whole connection: Hypercorn's
stream, the handler's tasks, the client actor's link and whatever its outbox
still held, ~270 objects per WebSocket, until the cyclic collector's oldest
generation came by (rarely, with ``server.tune_interpreter``'s
thresholds). HTTP handlers cancelled mid-request go the same way.

Clearing the finished frames of the group's traceback as it leaves Quart-Trio
breaks the cycle, so the connection is freed when the last reference goes.
The traceback itself (files, lines) is kept for whoever logs it.

An HTTP request is handled in the task Hypercorn runs the application in:
Quart-Trio starts two tasks per request (one waits for the client to
disconnect, one handles the request) while that task only waits for both; a
held long-poll kept the third task for its whole wait (~2 KiB of its ~40).
"""

from __future__ import annotations

import traceback
from contextvars import ContextVar
from typing import Any, cast

import attrs
import orjson
import trio
from quart import current_app
from quart_trio import QuartTrio
from quart_trio.asgi import TrioASGIHTTPConnection
from werkzeug.routing import PathConverter

from trioscope.runtime import Cutoff

from . import _client_gone


class AnyPathConverter(PathConverter):
    """Werkzeug's ``path`` converter, matching any character: its regex
    (``[^/].*?``) has no DOTALL, so an id with a newline in it (a process's
    or container's name may have one) matched no route and its node read as
    gone. Registered as ``path``: every ``<path:...>`` of the app takes it."""

    regex = r"[^/][\s\S]*?"


class _HTTPConnection(TrioASGIHTTPConnection):
    """Quart-Trio's, with the request handled in the task that runs the
    application, beside the one that waits for the client's disconnect (which
    cancels the nursery, and so the handling, as before); and cut, answered,
    before the server's graceful phase ends (``TrioscopeApp.cut_requests``)."""

    async def __call__(self, receive: Any, send: Any) -> None:
        request = self._create_request_from_scope(send)
        app = cast("TrioscopeApp", self.app)
        answered = False

        async def sending(message: Any) -> None:
            nonlocal answered
            answered = answered or message["type"] == "http.response.start"
            await send(message)

        state = _Handling()
        handling = _HANDLING.set(state)
        try:
            with app.requests.scope() as scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self.handle_messages, nursery, request, receive)
                    await self.handle_request(nursery, request, sending)
        finally:
            _HANDLING.reset(handling)
        if scope.cancelled_caught and not answered:
            # Quart-Trio's body says whether it all came (not public: unknown, it may have: a 504).
            complete = getattr(getattr(request.body, "_complete", None), "is_set", None)
            await _answer_cut(send, request.method, complete() if complete is not None else True, state.under_way)


@attrs.define
class _Handling:
    """What the handler of one HTTP request says of it (``work_under_way``)."""

    under_way: bool = False


_HANDLING: ContextVar[_Handling | None] = ContextVar("trioscope_handling", default=None)
"""The request being handled in this task (``_HTTPConnection``; None: a WebSocket, or no request)."""


def work_under_way() -> None:
    """Say that the current request's work is under way, though it reads
    (an agent's poll whose command may be being handed out): cut from now on
    (``TrioscopeApp.cut_requests``), it is answered 504 ``outcome_unknown``,
    not 503 ``shutting_down``. Nothing outside an HTTP request."""
    state = _HANDLING.get()
    if state is not None:
        state.under_way = True


def requests_cutoff() -> Cutoff:
    """When the requests of the current application are cut (``TrioscopeApp.cut_requests``):
    for a wait a handler shields, which must end by then."""
    return cast("TrioscopeApp", current_app).requests


SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


async def _answer_cut(send: Any, method: str, body_received: bool, under_way: bool = False) -> None:
    """Answer a request the server stopped handling as it shut down (Hypercorn
    would send an empty 500): 503 ``shutting_down`` where nothing can have
    been done (a read, or a body not all received), else 504
    ``outcome_unknown``: its work was under way (a command may be stored, or
    ``under_way``: handed out to a poll, ``work_under_way``), so the client
    checks before sending it again rather than doing it twice."""
    if not under_way and (method in SAFE_METHODS or not body_received):
        status, code, message = 503, "shutting_down", "the server is stopping; nothing was done: send it again shortly"
    else:
        status, code, message = 504, "outcome_unknown", ("the server stopped before it finished; the request may "
                                                         "have taken effect: check before sending it again")
    body = orjson.dumps({"error": {"code": code, "message": message}})
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
               (b"connection", b"close")]
    if status == 503:
        headers.append((b"retry-after", b"1"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


class TrioscopeApp(QuartTrio):
    """``QuartTrio`` whose request and WebSocket handlers leave no cycle when
    they end with an exception group (a cancelled handler), HTTP requests
    handled without a task of their own, and handlers whose client has gone
    only cancelled, with any Quart (``_client_gone``)."""

    asgi_http_class = _HTTPConnection
    request_class = _client_gone.Request
    websocket_class = _client_gone.Websocket

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Before any route is added: each rule takes its converters as it is bound.
        self.url_map.converters["path"] = AnyPathConverter
        self.requests = Cutoff()
        """When every HTTP request still handled is cut (``cut_requests``)."""

    def cut_requests(self, deadline: float) -> None:
        """Cut every HTTP request still handled at ``deadline`` (Trio's clock),
        and any that starts from now on: the server is stopping, and Hypercorn
        cancels what is left when its graceful phase ends, answering an empty
        500 (a command still being stored was stored, and its client told it
        failed: it would send it again). Cut before that, a request is answered
        what happened to it (``_answer_cut``)."""
        self.requests.cut(deadline)

    async def handle_request(self, request: Any) -> Any:
        try:
            return await super().handle_request(request)
        except BaseExceptionGroup as group:
            traceback.clear_frames(group.__traceback__)  # frames still running (this one) are skipped
            raise

    async def handle_websocket(self, websocket: Any) -> Any:
        try:
            return await super().handle_websocket(websocket)
        except BaseExceptionGroup as group:
            traceback.clear_frames(group.__traceback__)
            raise
