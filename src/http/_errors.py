"""Errors on the wire: ``{"error": {"code", "message", "details"}}`` with the right
status. Every exception that can reach a client is translated here, in one place;
a traceback never leaves the server."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from quart import Quart, Response, current_app, g, has_request_context, has_websocket_context, request, websocket
from werkzeug.exceptions import HTTPException


from trioscope.actors.refusals import (
    EnrollmentRefused, NotRecorded, QuotaExceeded, ReportConflict, ReporterTaken, TooManyAgents, UnknownAgent,
    UnknownCommand, UnknownProbe,
)
from trioscope.actors.store import DatabaseUnavailable, OutcomeUnknown
from trioscope.domain.commands import IllegalTransition
from trioscope.runtime import ActorFailed, ActorStopped, AskTimeout, MailboxFull
from trioscope.store import DATABASE_DOWN, Conflict, Unavailable

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


def _where() -> tuple[str, str]:
    """Method and path of what failed: an HTTP request or a WebSocket (whose
    handlers raise into these handlers too, with no request context)."""
    if has_request_context():
        return request.method, request.path
    if has_websocket_context():
        return "WEBSOCKET", websocket.path
    return "-", "-"


def _has_unread_body() -> bool:
    if not has_request_context():
        return False  # a WebSocket has no body
    declared = request.headers.get("Content-Length", "0") not in ("", "0") or "Transfer-Encoding" in request.headers
    return declared and not g.get("body_read", False)


# What actors refuse: one status and code each.
REFUSALS: dict[type[Exception], tuple[int, str]] = {
    QuotaExceeded: (403, "quota_exceeded"),
    UnknownCommand: (404, "command_not_found"),
    UnknownAgent: (404, "agent_not_found"),
    UnknownProbe: (404, "agent_not_found"),
    ReportConflict: (409, "report_conflict"),
    IllegalTransition: (409, "invalid_transition"),
    EnrollmentRefused: (401, "invalid_enrollment_token"),
    ReporterTaken: (409, "agent_id_taken"),
    Conflict: (409, "concurrent_update"),
    TooManyAgents: (503, "too_many_agents"),
    NotRecorded: (503, "not_recorded"),
    DatabaseUnavailable: (503, "database_unavailable"),
    OutcomeUnknown: (504, "outcome_unknown"),
}

DATABASE_RETRY_AFTER = 2
"""Seconds a client waits before retrying while the database is away (the
store tries to connect again every 0.25-1 s)."""

AGENTS_FULL_RETRY_AFTER = 60
"""Seconds a probe refused for want of room waits: a place frees up as probes go silent."""


# Overload and unavailability (503 with a code and message each): shed, never
# queue; the client retries.
UNAVAILABLE: dict[type[Exception], tuple[str, str]] = {
    MailboxFull: ("overloaded", "the server is busy; retry shortly"),
    AskTimeout: ("timeout", "the server did not take the request in time (it was not carried out); retry shortly"),
    ActorStopped: ("unavailable", "the server is shutting down or restarting a component"),
    Unavailable: ("database_unavailable", "the database is unavailable; retry shortly"),
}


def refusal_status(exc: Exception) -> tuple[int, str]:
    """The status and error code for an actor's refusal (500 for anything else)."""
    return REFUSALS.get(type(exc), (500, "internal_error"))


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

    async def _refused(exc: Exception) -> Response:
        status, code = REFUSALS[type(exc)]
        details: dict[str, Any] | None = None
        headers: dict[str, str] | None = None
        if isinstance(exc, QuotaExceeded):
            details = {"limit": exc.limit, "setting": exc.setting}
        elif isinstance(exc, UnknownProbe):
            details = {"agent_id": exc.agent_id}
        elif isinstance(exc, TooManyAgents):
            headers = {"Retry-After": str(AGENTS_FULL_RETRY_AFTER)}
        elif isinstance(exc, NotRecorded):
            headers = {"Retry-After": str(RETRY_AFTER_SECONDS)}
        elif isinstance(exc, DatabaseUnavailable):
            headers = {"Retry-After": str(DATABASE_RETRY_AFTER)}
        return error_response(status, code, str(exc), details, headers)

    for kind in REFUSALS:
        app.register_error_handler(kind, _refused)

    async def _unavailable(exc: Exception) -> Response:
        if isinstance(exc, AskTimeout) and exc.taken:
            # Not "retry": the work was under way and may have been done.
            return error_response(504, "outcome_unknown", "the server did not finish in time; the request may "
                                  "have taken effect: check before sending it again")
        code, message = UNAVAILABLE[type(exc)]
        return error_response(503, code, message, headers={"Retry-After": str(RETRY_AFTER_SECONDS)})

    for kind in UNAVAILABLE:
        app.register_error_handler(kind, _unavailable)

    async def _database_down(exc: Exception) -> Response:
        if isinstance(exc, ActorFailed):
            if not isinstance(exc.cause, (*DATABASE_DOWN, DatabaseUnavailable)):
                return await _unexpected(exc)  # a crash of its own
        method, path = _where()
        # Debug: the store says once that the database went away and once that it is back.
        log.debug("%s %s: the database is unavailable: %s", method, path, " ".join(str(exc).split()))
        code, message = UNAVAILABLE[Unavailable]
        return error_response(503, code, message, headers={"Retry-After": str(DATABASE_RETRY_AFTER)})

    for kind in (*DATABASE_DOWN, ActorFailed):  # after UNAVAILABLE's: the database's Retry-After
        app.register_error_handler(kind, _database_down)

    @app.errorhandler(Exception)
    async def _unexpected(exc: Exception) -> Response:
        incident = uuid.uuid4().hex[:12]
        method, path = _where()
        log.error("unhandled error in %s %s (incident %s)", method, path, incident,
                  exc_info=exc, extra={"incident": incident})
        return error_response(500, "internal_error",
                              f"internal error; the server log has the details under incident {incident}",
                              details={"incident": incident})
