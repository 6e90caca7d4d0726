"""Errors on the wire: ``{"error": {"code", "message", "details"}}`` with the right
status. Every exception that can reach a client is translated here, in one place;
a traceback never leaves the server."""

from __future__ import annotations

import difflib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import attrs
import orjson
from quart import Quart, Response, current_app, g, has_request_context, has_websocket_context, request, websocket
from werkzeug.exceptions import HTTPException


from trioscope.actors.refusals import (
    STORAGE_FAILING, DatabaseUnavailable, EnrollmentRefused, IdempotencyKeyTaken, NotRecorded, OutcomeUnknown,
    QuotaExceeded, ReportConflict, ReporterTaken, StoreFailing, StoreFull, TooManyAgents, UnknownAgent,
    UnknownCommand, UnknownProbe,
)
from trioscope.domain.commands import IllegalTransition
from trioscope.domain.rates import Lull, Lulls
from trioscope.runtime import ActorFailed, ActorStopped, AskTimeout, MailboxFull
from trioscope.store import Conflict, database_busy, database_down, store_failing, store_full

from ._responses import json_response

log = logging.getLogger(__name__)

# Seconds a client is asked to wait after an overload (503) before retrying.
RETRY_AFTER_SECONDS = 1


class ApiError(Exception):
    """Raise from a handler to answer with a JSON error."""

    def __init__(self, status: int, code: str, message: str, details: Any = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.headers = headers or {}


def field_error(code: str, path: str, message: str, status: int = 400) -> ApiError:
    """An error naming one bad field, in the shape ``_bodies.invalid`` gives for many."""
    return ApiError(status, code, f"{path}: {message}",
                    details={"errors": [{"path": path, "message": message}], "total": 1})


def key_path(parent: str, key: str) -> str:
    """``parent.key``, or ``parent["key"]`` for a key that is no plain name
    (its first 80 characters: a body may have a key of 60 KiB)."""
    return f"{parent}.{key}" if key.isidentifier() and len(key) <= 80 else f"{parent}[{orjson.dumps(key[:80]).decode()}]"


def closest(key: str, known: Sequence[str]) -> str:
    """`` (did you mean X?)`` for the known name closest to a misspelt ``key``, or nothing."""
    close = difflib.get_close_matches(key[:80], list(known), n=1)
    return f" (did you mean {close[0]}?)" if close else ""


def unknown_keys(code: str, body: Mapping[str, Any], known: Sequence[str], what: str, at: str = "$") -> None:
    """400 ``code`` naming the first key of ``body`` (found at path ``at``)
    not in ``known``, with the closest it may have (a misspelt key was
    ignored: ``priorty`` ran a command at normal priority, ``paramters`` a
    control without any, ``metadata.requires_confirmaton`` one unconfirmed)."""
    for key in body:
        if key not in known:
            raise field_error(code, key_path(at, key), f"unknown key{closest(key, known)}; {what} has {', '.join(known)}")


def error_wire(code: str, message: str) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    """The JSON error's body and its content headers, for the answers made
    below Quart (ASGI middleware, Hypercorn's own refusals)."""
    body = orjson.dumps({"error": {"code": code, "message": message}})
    return body, [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]


async def send_refusal(scope: dict[str, Any], send: Callable[[dict[str, Any]], Awaitable[None]], status: int,
                       code: str, message: str, headers: Sequence[tuple[bytes, bytes]] = ()) -> None:
    """Answer a request from ASGI middleware, before Quart, with the JSON error
    shape: an HTTP request's answer, or a WebSocket handshake's (a close,
    1008, where the server cannot answer a handshake with a body)."""
    body, content = error_wire(code, message)
    start = [*content, *headers]
    if scope["type"] == "websocket":
        if "websocket.http.response" not in (scope.get("extensions") or {}):
            await send({"type": "websocket.close", "code": 1008})
            return
        await send({"type": "websocket.http.response.start", "status": status, "headers": start})
        await send({"type": "websocket.http.response.body", "body": body})
        return
    await send({"type": "http.response.start", "status": status, "headers": start})
    await send({"type": "http.response.body", "body": body})


def error_response(status: int, code: str, message: str, details: Any = None,
                   headers: dict[str, str] | None = None) -> Response:
    error: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        error["details"] = details
    return json_response({"error": error}, status=status, headers=headers)


def _http_code(status: int) -> str:
    return {
        400: "bad_request",
        401: "unauthorized",
        403: "forbidden",
        404: "not_found",
        405: "method_not_allowed",
        408: "request_timeout",
        413: "payload_too_large",
        414: "uri_too_long",
        415: "unsupported_media_type",
        429: "too_many_requests",
    }.get(status, "http_error")


MAX_PATH_SHOWN = 256
"""Characters of a path an error message or log line repeats (a path may have 8,192)."""
MAX_METHOD_SHOWN = 16
"""Characters of a method an error message repeats (the longest real one, OPTIONS, has 7)."""


def _where() -> tuple[str, str]:
    """Method and path of what failed: an HTTP request or a WebSocket (whose
    handlers raise into these handlers too, with no request context); each
    cut (``MAX_METHOD_SHOWN``, ``MAX_PATH_SHOWN``)."""
    if has_request_context():
        method, path = request.method, request.path
    elif has_websocket_context():
        method, path = "WEBSOCKET", websocket.path
    else:
        return "-", "-"
    method = method if len(method) <= MAX_METHOD_SHOWN else method[:MAX_METHOD_SHOWN] + "..."
    return method, path if len(path) <= MAX_PATH_SHOWN else path[:MAX_PATH_SHOWN] + "..."


def _has_unread_body() -> bool:
    if not has_request_context():
        return False  # a WebSocket has no body
    declared = request.headers.get("Content-Length", "0") not in ("", "0") or "Transfer-Encoding" in request.headers
    return declared and not g.get("body_read", False)


DATABASE_RETRY_AFTER = 2
"""Seconds a client waits before retrying while the database is away (the
store tries to connect again every 0.25-1 s)."""
STORE_FAILING_RETRY_AFTER = 5
"""Seconds a client waits before retrying while the store's disk fails (it is opened again every 0.5-5 s)."""
STORE_FULL_RETRY_AFTER = 60
"""Seconds a client waits before sending again what a full disk refused (room is made by people, or by the prune)."""

AGENTS_FULL_RETRY_AFTER = 60
"""Seconds a probe refused for want of room waits: a place frees up as probes go silent."""


@attrs.frozen
class ErrorAnswer:
    """How one kind of exception is answered."""

    status: int
    code: str
    retry_after: int | None = None
    """Seconds for a Retry-After header (None: none)."""
    message: str | None = None
    """Said instead of the exception's own text (None: the text, which refusals write for clients)."""


ANSWERS: dict[type[Exception], ErrorAnswer] = {
    # What actors refuse.
    QuotaExceeded: ErrorAnswer(403, "quota_exceeded"),
    UnknownCommand: ErrorAnswer(404, "command_not_found"),
    UnknownAgent: ErrorAnswer(404, "agent_not_found"),
    UnknownProbe: ErrorAnswer(404, "agent_not_found"),
    ReportConflict: ErrorAnswer(409, "report_conflict"),
    IllegalTransition: ErrorAnswer(409, "invalid_transition"),
    EnrollmentRefused: ErrorAnswer(401, "invalid_enrollment_token"),
    ReporterTaken: ErrorAnswer(409, "agent_id_taken"),
    Conflict: ErrorAnswer(409, "concurrent_update"),
    # Answered as the request that stored the key first was, where the edge sees it (``_idempotency``).
    IdempotencyKeyTaken: ErrorAnswer(409, "idempotency_key_in_use"),
    TooManyAgents: ErrorAnswer(503, "too_many_agents", AGENTS_FULL_RETRY_AFTER),
    NotRecorded: ErrorAnswer(503, "not_recorded", RETRY_AFTER_SECONDS),
    # The database away (every error that says so is answered as this: ``answer_to``).
    StoreFull: ErrorAnswer(507, "insufficient_storage", STORE_FULL_RETRY_AFTER),
    StoreFailing: ErrorAnswer(503, "store_failing", STORE_FAILING_RETRY_AFTER),
    DatabaseUnavailable: ErrorAnswer(503, "database_unavailable", DATABASE_RETRY_AFTER),
    OutcomeUnknown: ErrorAnswer(504, "outcome_unknown"),
    # Overload and unavailability: shed, never queue; the client retries.
    MailboxFull: ErrorAnswer(503, "overloaded", RETRY_AFTER_SECONDS, "the server is busy; retry shortly"),
    AskTimeout: ErrorAnswer(503, "timeout", RETRY_AFTER_SECONDS,
                            "the server did not take the request in time (it was not carried out); retry shortly"),
    ActorStopped: ErrorAnswer(503, "unavailable", RETRY_AFTER_SECONDS,
                              "the server is shutting down or restarting a component"),
}
"""Every exception a client may be answered with but a 500, by type (a
subclass is answered as its nearest class here). The one place a status,
code and Retry-After are chosen for them."""

DATABASE_AWAY = "the database is unavailable; retry shortly"
"""What a request that met the database away is told (a refusal of the
store says more: nothing was written)."""
STORE_FULL = "the server's storage is full; nothing was written, send it again later"
TAKEN_TOO_LONG = ("the server did not finish in time; the request may have taken effect: check before "
                  "sending it again")


def answer_to(exc: Exception) -> tuple[ErrorAnswer, str] | None:
    """How ``exc`` is answered, and with what message; None: it is unexpected (a 500).

    Besides the types of ``ANSWERS``: a database that is away or refusing
    statements for now (``database_down``, ``database_busy``), met by the
    request, by the actor that crashed on it (``ActorFailed``) or by one whose
    start it failed (``ActorStopped.cause``: nothing was handled), is answered
    as ``DatabaseUnavailable``; an ask that timed out while its work was under
    way as ``OutcomeUnknown`` (not "retry": it may have been done).
    """
    if isinstance(exc, AskTimeout) and exc.taken:
        return ANSWERS[OutcomeUnknown], TAKEN_TOO_LONG
    if isinstance(exc, ActorFailed):  # the actor crashed on it: a 500, unless for want of the database
        if isinstance(exc.cause, StoreFull) or store_full(exc.cause):
            return ANSWERS[StoreFull], STORE_FULL
        if store_failing(exc.cause):
            return ANSWERS[StoreFailing], STORAGE_FAILING
        return (ANSWERS[DatabaseUnavailable], DATABASE_AWAY) if _database_away(exc.cause) else None
    if isinstance(exc, ActorStopped) and exc.cause is not None and _database_away(exc.cause):
        # It could not start for want of the database (a queue reads its
        # commands as it starts): nothing was done, retry when it is back.
        return ANSWERS[DatabaseUnavailable], DATABASE_AWAY
    if store_full(exc):
        return ANSWERS[StoreFull], STORE_FULL
    if store_failing(exc):  # a read that met the file or its disk failing (a damaged page, an I/O error)
        return ANSWERS[StoreFailing], STORAGE_FAILING
    if database_down(exc) or database_busy(exc):
        return ANSWERS[DatabaseUnavailable], DATABASE_AWAY
    for kind in type(exc).__mro__:
        answer = ANSWERS.get(kind)
        if answer is not None:
            return answer, answer.message if answer.message is not None else str(exc)
    return None


def _database_away(error: BaseException) -> bool:
    return isinstance(error, DatabaseUnavailable) or database_down(error) or database_busy(error)


def _details(exc: Exception) -> dict[str, Any] | None:
    if isinstance(exc, QuotaExceeded):
        details: dict[str, Any] = {"limit": exc.limit, "setting": exc.setting}
        if exc.in_use is not None:
            details["in_use"] = exc.in_use
            if exc.requested is not None:
                details["requested"] = exc.requested
        return details
    if isinstance(exc, UnknownProbe):
        return {"agent_id": exc.agent_id}
    return None


def _log_database(exc: Exception) -> None:
    """One line for a request that met the database away or refusing statements."""
    cause = exc.cause if isinstance(exc, (ActorFailed, ActorStopped)) and exc.cause is not None else exc
    method, path = _where()
    if database_busy(cause):
        # Nobody else says it: a statement timeout (overload), a lock or a deadlock, each time.
        log.warning("%s %s: the database refused a statement for now (%s: %s); answered 503", method, path,
                    type(cause).__name__, " ".join(str(cause).split()), extra={"event": "database_busy"})
    else:
        # The store says once that the database went away and once that it is
        # back, of its writer's connection. Reads and the shared limits connect
        # on their own (a role out of connections refused them alone, and only
        # this debug line said why): a warning once a minute, at debug between.
        log.log(_UNAVAILABLE_SAID.level(time.monotonic()), "%s %s: the database is unavailable: %s", method, path,
                " ".join(str(exc).split()), extra={"event": "database_unavailable"})


_UNAVAILABLE_SAID = Lull(60.0)
_STORE_FAILING_SAID = "trioscope.store_failing_said"
"""The app's extension (a ``Lull``): a read that met the SQLite file failing, said once a minute."""


def closing_if_unread(response: Response) -> Response:
    """``response``, closing its connection if the request's body was not read
    (the app's ``after_request``: errors and successes alike)."""
    if _has_unread_body():
        # Answered without reading the body (no such route, wrong method, too
        # large, refused before the body mattered, a GET sent a body it does
        # not use): what is left of it is still on the wire, so this
        # connection cannot carry another request.
        response.headers["Connection"] = "close"
    return response


TRACEBACK_EVERY = 60.0
"""Seconds between two tracebacks of one cause of unexpected errors (``_origin``)."""
_TRACEBACKS = "trioscope.tracebacks"
"""The app's extension (a ``Lulls``) of when each cause's traceback was last
logged: a fault that every request meets (a damaged database) wrote ~45
lines a request (5,512 for ~120)."""


def log_incident(exc: BaseException, where: str) -> str:
    """Log an unexpected error met handling ``where`` (a request, a socket's
    message) under a new incident id, returned for the answer: with its
    traceback once a minute for each cause (of the current app), in one line
    in between."""
    incident = uuid.uuid4().hex[:12]
    tracebacks = current_app.extensions.setdefault(_TRACEBACKS, Lulls(TRACEBACK_EVERY))
    unsaid = tracebacks.due((type(exc).__qualname__, _origin(exc)), time.monotonic())
    if unsaid is None:
        log.error("unhandled error in %s (incident %s): %s: %s (its traceback was logged for an earlier incident "
                  "of the same cause)", where, incident, type(exc).__name__, " ".join(str(exc).split())[:500],
                  extra={"incident": incident})
    else:
        more = f"; {unsaid} more of the same cause since its last traceback" if unsaid else ""
        log.error("unhandled error in %s (incident %s)%s", where, incident, more, exc_info=exc,
                  extra={"incident": incident})
    return incident



def _origin(exc: BaseException) -> str:
    """Where ``exc`` was raised (its innermost frame's file and line): with its type, its cause."""
    tb = exc.__traceback__
    if tb is None:
        return ""
    while tb.tb_next is not None:
        tb = tb.tb_next
    return f"{tb.tb_frame.f_code.co_filename}:{tb.tb_lineno}"


def install_error_handlers(app: Quart) -> None:
    @app.errorhandler(ApiError)
    async def _api_error(exc: ApiError) -> Response:
        return error_response(exc.status, exc.code, exc.message, exc.details, exc.headers)

    @app.errorhandler(HTTPException)
    async def _http_exception(exc: HTTPException) -> Response:
        status = exc.code or 500
        method, path = _where()
        if status == 404:
            message = f"no such endpoint: {method} {path}"
        elif status == 413:
            limit = current_app.config.get("MAX_CONTENT_LENGTH")
            message = f"request body is larger than the limit of {limit} bytes"
        elif status == 405:
            message = f"{method} is not allowed on {path}"
        else:
            message = exc.description or exc.name
        details = {"limit_bytes": current_app.config.get("MAX_CONTENT_LENGTH")} if status == 413 else None
        response = error_response(status, _http_code(status), message, details)
        if status == 405 and exc.get_headers():
            for name, value in exc.get_headers():
                if name.lower() == "allow":
                    response.headers["Allow"] = value
        return response

    def _unexpected(exc: Exception) -> Response:
        method, path = _where()
        incident = log_incident(exc, f"{method} {path}")
        return error_response(500, "internal_error",
                              f"internal error; the server log has the details under incident {incident}",
                              details={"incident": incident})

    async def _answer(exc: Exception) -> Response:
        found = answer_to(exc)
        if found is None:
            return _unexpected(exc)
        answer, message = found
        if answer is ANSWERS[DatabaseUnavailable]:
            _log_database(exc)
        elif answer is ANSWERS[StoreFailing] and not isinstance(exc, StoreFailing):
            # The store says its own refusals; what a read met nobody says but here.
            method, path = _where()
            cause = exc.cause if isinstance(exc, ActorFailed) else exc
            said = current_app.extensions.setdefault(_STORE_FAILING_SAID, Lull(60.0))
            log.log(said.level(time.monotonic()), "%s %s: the store's file or disk failed (%s: %s); "
                    "answered 503 store_failing", method, path, type(cause).__name__, " ".join(str(cause).split()),
                    extra={"event": "store_failing"})
        headers = {"Retry-After": str(answer.retry_after)} if answer.retry_after is not None else None
        return error_response(answer.status, answer.code, message, _details(exc), headers)

    # Each type of the table too: a handler another module registers for a
    # base class (ValueError, of IllegalTransition) must not take them.
    for kind in (*ANSWERS, Exception):
        app.register_error_handler(kind, _answer)
