"""The OpenAPI 3.1 description of the API, built from the application itself.

Paths, methods and path parameters come from the URL map (the routes that
exist), summaries from the views' docstrings, request bodies from the wire
models the handlers decode (``trioscope.wire.SchemaBuilder``), and what each
route needs and answers (credentials, query parameters, statuses) from the
``documented`` decorator on the view, next to the code that does it. Nothing is
kept in a second copy: a route without ``documented`` still appears, and
``tests/http/test_openapi.py`` fails on it.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import attrs
from quart import Quart

from trioscope.domain.deployments import AgentAuthFailure
from trioscope.wire import SchemaBuilder

from ._bodies import MAX_PATH
from ._errors import ANSWERS
from ._responses import JSON

Schema = dict[str, Any]
F = TypeVar("F", bound=Callable[..., Any])

TITLE = "trioscope API"
VERSION = "1"


class Auth(enum.Enum):
    """Who may call a route, as the gate (``_gate``) checks it."""

    NONE = "none"
    """Anyone (rate limits apply)."""
    USER = "user"
    """A user token: ``Authorization: Bearer <JWT>`` (``trioscope token create``)."""
    READ = "read"
    """Anyone, or a user token when ``auth.protect_reads`` is on."""
    AGENT = "agent"
    """An enrolled agent: its token and a request signature."""
    PROBE = "probe"
    """A probe: anonymous, or signed with enrolled agent credentials (``agents.require_signature``)."""
    ENROLLMENT = "enrollment"
    """A deployment's one-time enrollment token (in the body or as a bearer token)."""
    WEBHOOK = "webhook"
    """The Alertmanager webhook secret as a bearer token."""
    PROMQL = "promql"
    """A user token, as a bearer token or as the password of HTTP Basic (promtool, Grafana)."""


@attrs.frozen
class Param:
    """A query parameter: its name, JSON Schema and what it does."""

    name: str
    schema: Schema
    description: str = ""
    required: bool = False


def integer(name: str, low: int, high: int, description: str = "") -> Param:
    return Param(name, {"type": "integer", "minimum": low, "maximum": high}, description)


def text(name: str, description: str = "", max_length: int | None = None, required: bool = False) -> Param:
    schema: Schema = {"type": "string"}
    if max_length is not None:
        schema["maxLength"] = max_length
    return Param(name, schema, description, required)


def choice(name: str, values: Iterable[str], description: str = "") -> Param:
    return Param(name, {"type": "string", "enum": list(values)}, description)


def boolean(name: str, description: str = "") -> Param:
    return Param(name, {"type": "string", "enum": ["true", "false"]}, description)


def date(name: str, description: str = "") -> Param:
    return Param(name, {"type": "string", "anyOf": [{"format": "date"}, {"format": "date-time"}]},
                 description or "a date (2024-01-31, the whole day) or an RFC 3339 time")


STRING: Schema = {"type": "string"}
TIME: Schema = {"type": ["string", "null"], "format": "date-time"}


def fields(**properties: Schema) -> Schema:
    """An object answer that always has these fields (others may be added later)."""
    return {"type": "object", "properties": properties, "required": list(properties)}


@attrs.frozen
class Answer:
    """A success answer: what it means and its body (``media`` None: no body)."""

    description: str
    media: str | None = JSON
    schema: Schema = attrs.field(factory=lambda: {"type": "object"})


@attrs.frozen
class Doc:
    """What the URL map cannot tell about a route."""

    auth: Auth = Auth.NONE
    body: Any = None
    """The request body: a wire model (attrs class) or a JSON Schema; None: no body."""
    body_required: bool = True
    body_media: tuple[str, ...] = (JSON,)
    query: tuple[Param, ...] = ()
    headers: tuple[Param, ...] = ()
    """Request headers the route reads beyond the credentials' (``Idempotency-Key``)."""
    answers: dict[int, Answer] = attrs.field(factory=dict)
    errors: dict[int, str] = attrs.field(factory=dict)
    """Statuses beyond those the credentials and the body bring, and why each."""
    error_schema: Schema | None = None
    """Errors in a shape of their own (the Prometheus API's); None: ours."""


def documented(*, auth: Auth = Auth.NONE, body: Any = None, body_required: bool = True,
               body_media: tuple[str, ...] = (JSON,), query: tuple[Param, ...] = (), headers: tuple[Param, ...] = (),
               answers: dict[int, Answer] | None = None, errors: dict[int, str] | None = None,
               error_schema: Schema | None = None) -> Callable[[F], F]:
    """Attach a route's description to its view (read by ``build``)."""
    doc = Doc(auth=auth, body=body, body_required=body_required, body_media=body_media, query=query,
              headers=headers, answers=answers or {200: Answer("success")}, errors=errors or {},
              error_schema=error_schema)

    def attach(view: F) -> F:
        view.__openapi__ = doc  # type: ignore[attr-defined]  # read back by build(); functions take attributes
        return view

    return attach


ERROR_SCHEMA: Schema = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {
        "type": "object",
        "required": ["code", "message"],
        "properties": {
            "code": {"type": "string", "description": "stable, machine-readable (e.g. invalid_query)"},
            "message": {"type": "string", "description": "for people; names the field at fault"},
            "details": {"description": "what the code needs: the fields at fault, limits, ids"},
        },
    }},
}

_STATUS_TEXT = {
    400: "invalid request: the message and details name the field",
    401: "missing or invalid credentials",
    403: "the credentials may not do this",
    404: "no such resource, or not one the caller may see",
    408: "the request body did not arrive in time (server.body_timeout)",
    409: "conflicts with the resource's state",
    410: "the agent was decommissioned",
    413: "the request body is too large (server.max_body_size, also after gzip)",
    414: f"the path is longer than {MAX_PATH:,} characters",
    415: "unsupported Content-Encoding or Content-Type",
    422: "the query cannot be executed",
    429: "rate limited: retry after Retry-After seconds",
    503: "overloaded or shutting down: retry after Retry-After seconds",
    504: "the server did not finish in time; the request may have taken effect",
}

_AUTH_ERRORS: dict[Auth, tuple[int, ...]] = {
    Auth.NONE: (),
    Auth.READ: (401, 403),
    Auth.USER: (401, 403),
    Auth.AGENT: tuple(sorted({failure.status for failure in AgentAuthFailure})),
    Auth.PROBE: tuple(sorted({failure.status for failure in AgentAuthFailure})),
    Auth.ENROLLMENT: (401,),
    Auth.WEBHOOK: (401,),
    Auth.PROMQL: (401, 403),
}

SECURITY_SCHEMES: Schema = {
    "user": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
             "description": "A user token (`trioscope token create`), HS256 JWT with user, tenant and role."},
    "userBasic": {"type": "http", "scheme": "basic",
                  "description": "A user token as the password of HTTP Basic (any user name): for clients that "
                                 "cannot send a bearer token."},
    "agentToken": {"type": "http", "scheme": "bearer",
                   "description": "The agent token answered by `POST /api/v1/agent/register`."},
    "agentId": {"type": "apiKey", "in": "header", "name": "X-Agent-Id", "description": "The agent's id."},
    "requestSignature": {
        "type": "apiKey", "in": "header", "name": "Signature",
        "description": "RFC 9421 HMAC-SHA256 keyed by the agent token over @method, @path, @query, x-agent-id "
                       "and content-digest, with Signature-Input (created, nonce: a UUID, keyid: the agent id, "
                       "tag trioscope-agent) and Content-Digest (RFC 9530) "
                       "(trioscope.wire.request_signing)."},
    "bodySignature": {
        "type": "apiKey", "in": "header", "name": "X-Agent-Signature",
        "description": "The status agent's scheme (when agents.accept_body_only_signatures): base64 HMAC-SHA256 "
                       "of the raw body keyed by the agent token, with X-Timestamp (unix seconds) and "
                       "X-Request-Id (a UUID)."},
    "enrollmentToken": {"type": "http", "scheme": "bearer",
                        "description": "A deployment's one-time enrollment token (or enrollment_token in the body)."},
    "webhookSecret": {"type": "http", "scheme": "bearer", "description": "alerts.webhook_secret."},
}

_AGENT: list[dict[str, list[str]]] = [{"agentToken": [], "agentId": [], "requestSignature": []},
          {"agentToken": [], "agentId": [], "bodySignature": []}]

_SECURITY: dict[Auth, list[dict[str, list[str]]]] = {
    Auth.NONE: [],
    Auth.READ: [{}, {"user": []}],
    Auth.USER: [{"user": []}],
    Auth.AGENT: _AGENT,
    Auth.PROBE: [{}, *_AGENT],
    Auth.ENROLLMENT: [{}, {"enrollmentToken": []}],
    Auth.WEBHOOK: [{"webhookSecret": []}],
    Auth.PROMQL: [{"user": []}, {"userBasic": []}],
}

_AGENT_CODES = {status: sorted({f.code for f in AgentAuthFailure if f.status == status})
                for status in {f.status for f in AgentAuthFailure}}
"""The error codes of a refused agent request, by status (the domain's list)."""
_COMMON_CODES = {414: ["uri_too_long"], 429: ["rate_limited"],
                 **{status: sorted({a.code for a in ANSWERS.values() if a.status == status}) for status in (503, 504)}}

_BODY_METHODS = {"POST", "PUT", "PATCH"}
UNDOCUMENTED = Doc(answers={200: Answer("see the summary")}, errors={})


_VARIABLE = re.compile(r"<(?:(?P<converter>\w+)(?:\([^)]*\))?:)?(?P<name>\w+)>")
"""A variable of a Werkzeug rule: ``<name>`` or ``<converter:name>``."""


def _path_and_parameters(rule: str) -> tuple[str, list[Schema]]:
    """``/a/<x>/<path:y>`` as ``/a/{x}/{y}`` with its path parameters."""
    parameters = []
    for match in _VARIABLE.finditer(rule):
        schema: Schema = {"type": "string", "minLength": 1}
        if match["converter"] != "path":
            schema["pattern"] = "^[^/]+$"
        parameters.append({"name": match["name"], "in": "path", "required": True, "schema": schema,
                           **({"description": "may contain /"} if match["converter"] == "path" else {})})
    return _VARIABLE.sub(lambda m: "{" + m["name"] + "}", rule), parameters


def summary_of(doc: str) -> tuple[str, str]:
    """A view docstring as its first sentence and the rest, each with its
    lines joined: the summary the document and the start-up banner show (a
    first line alone stopped mid-sentence where the sentence went on)."""
    first, _, more = doc.strip().partition("\n\n")
    summary, end, rest = " ".join(first.split()).partition(". ")
    return summary + end.strip(), " ".join(f"{rest} {more}".split())


def _operation(view: Callable[..., Any], path: str, method: str, doc: Doc, path_parameters: list[Schema],
               builder: SchemaBuilder, websocket: bool) -> Schema:
    summary, rest = summary_of(view.__doc__ or "")
    # From the path, not the view: one view may serve several paths (the PromQL reads).
    operation: Schema = {"operationId": f"{method.lower()}_" + re.sub(r"[^A-Za-z0-9]+", "_", path).strip("_"),
                         "summary": summary}
    if rest:
        operation["description"] = rest
    parameters = [*path_parameters,
                  *({"name": p.name, "in": where, "required": p.required, "schema": p.schema,
                     **({"description": p.description} if p.description else {})}
                    for where, given in (("query", doc.query), ("header", doc.headers)) for p in given)]
    if parameters:
        operation["parameters"] = parameters
    statuses = set(_AUTH_ERRORS[doc.auth]) | set(doc.errors) | {429, 503, 504}
    if path_parameters:
        statuses |= {400, 404, 414}  # 400: an id that is no id (a control character, a NUL), named in the error
    if doc.query or doc.headers:
        statuses.add(400)
    if doc.body is not None and method in _BODY_METHODS:
        schema = builder.of(doc.body) if attrs.has(doc.body) else doc.body
        operation["requestBody"] = {"required": doc.body_required,
                                    "content": {media: {"schema": schema} for media in doc.body_media}}
        statuses |= {400, 408, 413, 415}
    responses: Schema = {}
    if websocket:
        responses["101"] = {"description": "switching to the WebSocket protocol"}
    for status, answer in sorted(doc.answers.items()) if not websocket else ():
        responses[str(status)] = {"description": answer.description}
        if answer.media is not None:
            responses[str(status)]["content"] = {answer.media: {"schema": answer.schema}}
    error = doc.error_schema or {"$ref": "#/components/schemas/Error"}
    agent = doc.auth in (Auth.AGENT, Auth.PROBE)
    for status in sorted(statuses - set(doc.answers)):
        description = doc.errors.get(status) or _STATUS_TEXT.get(status, "error")
        codes = [*(_AGENT_CODES.get(status, []) if agent else []), *_COMMON_CODES.get(status, [])]
        if codes:
            description += f" (error codes include {', '.join(codes)})"
        responses[str(status)] = {"description": description, "content": {JSON: {"schema": error}}}
    operation["responses"] = responses
    security = _SECURITY[doc.auth]
    operation["security"] = security
    if websocket:
        operation["x-websocket"] = True
    return operation


def build(app: Quart) -> Schema:
    """The OpenAPI 3.1 document of ``app``'s routes."""
    builder = SchemaBuilder(prefix="components/schemas/")
    paths: dict[str, Schema] = {}
    for rule in app.url_map.iter_rules():
        if rule.endpoint.endswith("static"):
            continue
        view = app.view_functions[rule.endpoint]
        doc: Doc = getattr(view, "__openapi__", UNDOCUMENTED)
        path, path_parameters = _path_and_parameters(rule.rule)
        methods = ["GET"] if rule.websocket else sorted((rule.methods or set()) - {"HEAD", "OPTIONS"})
        for method in methods:
            paths.setdefault(path, {})[method.lower()] = _operation(view, path, method, doc, path_parameters, builder,
                                                                    rule.websocket)
    return {
        "openapi": "3.1.0",
        "info": {"title": TITLE, "version": VERSION,
                 "description": "Errors answer {\"error\": {\"code\", \"message\", \"details\"}} with the status "
                                "listed per operation. Operations marked x-websocket are WebSocket handshakes."},
        "paths": dict(sorted(paths.items())),
        "components": {"schemas": {"Error": ERROR_SCHEMA, **dict(sorted(builder.defs.items()))},
                       "securitySchemes": SECURITY_SCHEMES},
    }
