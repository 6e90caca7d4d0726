"""The agent side of the command service: enrollment, the long poll, results,
and the apps' statuses the agent saw.

Compatible with the TryDirect ``status`` agent: it sends ``Authorization:
Bearer``, ``X-Agent-Id``, ``X-Timestamp`` (unix seconds), ``X-Request-Id`` (UUID)
and ``X-Agent-Signature`` (base64 HMAC-SHA256 of the raw body, empty for GET),
reads the command from ``item`` (``command_id``, ``type``, ``parameters``), and
reports ``status`` ``success``, ``failed``, ``error`` or ``timeout`` (failures too) with
``error``, ``errors`` and ``completed_at``.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Awaitable
from typing import Any, Protocol, TypeVar

import orjson
import trio
from quart import Blueprint, Response, request

from trioscope.actors.directory import RegisterAgent
from trioscope.actors.notifier import publish
from trioscope.actors.refusals import EnrollmentRefused
from trioscope.actors.store import commit
from trioscope.domain.apps import MAX_AHEAD, AppStatus, AppStatusUpdate, app_status, app_status_event
from trioscope.domain.commands import AgentRegistration, Command, CommandReport, LogBatch, Priority
from trioscope.domain.deployments import AgentAuthFailure, AgentRecord, Deployment
from trioscope.runtime import ActorNotFound
from trioscope.store import AuditEntry, Outdated, OverQuota, SaveAppStatus
from trioscope.system import NOTIFIER
from trioscope.wire import InvalidDocument, decode, rfc3339_millis

from . import _agent_presence, _audit_entries, _directory, _gate, _rate_checks, _signature_refusals, _tokens
from ._agent_poll import AgentRetired, give_back, wait_for_command
from ._arguments import integer_argument
from ._bodies import decoded, invalid, off_loop, read_body_and_raw, read_json
from ._command_queues import report_to_queue
from ._command_views import delivery_view
from ._directory import credentials_failure
from ._disk_room import SMALL_RESULT, refuse_when_disk_short
from ._errors import ApiError, field_error
from ._log_follows import admit_log_entries
from ._openapi import STRING, TIME, Answer, Auth, choice, documented, fields, integer, text
from ._responses import json_response, no_content
from ._services import services

class _OfDeployment(Protocol):
    @property
    def deployment_hash(self) -> str: ...


D = TypeVar("D", bound=_OfDeployment)
T = TypeVar("T")

blueprint = Blueprint("agent_api", __name__)
blueprint.before_request(_rate_checks.check_address_rate)

DEFAULT_POLL = 30
MAX_POLL = 120
MAX_SYSTEM_INFO_BYTES = 64 * 1024
MAX_REGISTRATION_BODY = 2 * MAX_SYSTEM_INFO_BYTES
"""Bytes of a registration's body: its ``system_info`` and room for the rest
(capabilities, a public key); a larger body is refused (413) before it is
read, not parsed and checked first (an 8.6 MB one held every request up for
0.6 s, without credentials)."""
DASHBOARD_VERSION = "2.1.0"
API_VERSIONS = ["1.0", "1.1"]


@blueprint.post("/api/v1/agent/register")
@documented(auth=Auth.ENROLLMENT, body=AgentRegistration, answers={201: Answer("enrolled: the agent id and token", schema=fields(
                agent_id=STRING, agent_token=STRING, deployment_hash=STRING, dashboard_version=STRING,
                supported_api_versions={"type": "array", "items": STRING}, config_endpoint=STRING))},
            errors={409: "the agent id is taken"})
async def register() -> Response:
    """Enroll an agent with a deployment's one-time enrollment token (201)."""
    await _rate_checks.check_registration_rate()
    document = await read_json(services().settings, limit=MAX_REGISTRATION_BODY)
    try:
        registration = decode(document, AgentRegistration)
    except InvalidDocument as exc:
        raise invalid("invalid_registration", exc) from None
    token = registration.enrollment_token or _tokens.bearer()
    if not token:
        raise _audit_entries.refuse(401, "missing_enrollment_token",
                                     "send the deployment's enrollment token as enrollment_token or Authorization: "
                                     "Bearer",
                                     action="auth.failure", tenant=None, actor="anonymous",
                                     deployment_hash=registration.deployment_hash)
    if len(orjson.dumps(registration.system_info)) > MAX_SYSTEM_INFO_BYTES:
        raise ApiError(400, "invalid_registration", f"$.system_info: must be at most {MAX_SYSTEM_INFO_BYTES} bytes",
                       details={"errors": [{"path": "$.system_info", "message": "too large"}]})
    audit = _audit_entries.audit_entry("agent.register", actor="anonymous", tenant=None, resource_type="agent",
                                       deployment_hash=registration.deployment_hash, version=registration.agent_version)
    try:
        agent, agent_token = await services().directory.ask(RegisterAgent(registration, token, audit), timeout=10.0)
    except EnrollmentRefused as exc:
        raise _audit_entries.refuse(401, "invalid_enrollment_token", str(exc), action="auth.failure", tenant=None,
                                    actor="anonymous", deployment_hash=registration.deployment_hash) from None
    await _directory.close_retired_sockets(agent.deployment_hash)  # the agents it replaced
    return json_response({
        "agent_id": agent.id,
        "agent_token": agent_token,
        "deployment_hash": agent.deployment_hash,
        "dashboard_version": DASHBOARD_VERSION,
        "supported_api_versions": API_VERSIONS,
        "config_endpoint": "/api/v1/agent/config",
    }, status=201)


def _poll_arguments() -> tuple[int, int, str | None]:
    timeout = integer_argument("timeout", DEFAULT_POLL, 1, MAX_POLL, " (seconds)")
    priority = request.args.get("priority")
    min_rank = 0
    if priority:
        try:
            min_rank = Priority(priority).rank
        except ValueError:
            raise ApiError(400, "invalid_query", "priority: must be one of low, normal, high, critical",
                           details={"field": "priority"}) from None
    last = request.args.get("last_command_id") or None
    if last is not None and len(last) > 128:
        raise ApiError(400, "invalid_query", "last_command_id: must be at most 128 characters",
                       details={"field": "last_command_id"})
    return timeout, min_rank, last


async def retired_refusal(token: str | None, deployment_hash: str, agent_id: str) -> ApiError:
    """The answer to a poll whose agent was retired while it waited: the same
    as a new request of the agent gets (410 decommissioned, 401 for a token that
    no longer exists), audited as such."""
    failure = await credentials_failure(token, deployment_hash, agent_id) or AgentAuthFailure.DECOMMISSIONED
    deployment = (await _directory.directory()).deployments.get(deployment_hash)
    return _audit_entries.refuse(failure.status, failure.code, failure.message, action="auth.failure",
                                 tenant=deployment.tenant if deployment is not None else None,
                                 actor=f"agent:{agent_id}", deployment_hash=deployment_hash)


@blueprint.get("/api/v1/agent/commands/wait/<deployment_hash>")
@documented(auth=Auth.AGENT, query=(integer("timeout", 1, MAX_POLL), choice("priority", (p.value for p in Priority)),
                                     text("last_command_id", max_length=128)),
            answers={200: Answer("the next command"), 204: Answer("none came in time", media=None)})
async def wait(deployment_hash: str) -> Response:
    """Long-poll for the next command: 200 with it, 204 when none came in time."""
    agent = await _gate.agent(deployment_hash, b"")
    timeout, min_rank, skip = _poll_arguments()
    # Read: a held poll does not keep its query's parsed form (~0.4 of its ~40 KB, bench/workers.py memory).
    del request.args
    try:
        # A held poll is its agent there, waiting: heard from while it waits and
        # when it is answered, not only at its start (a 120 s poll outlasts
        # --alert-agent-offline-after and --heartbeat-timeout when they are short).
        delivery = None  # also when a newer poll of the agent ended this one (``MAX_POLLS_PER_AGENT``)
        with _agent_presence.holding_poll(agent):
            delivery = await wait_for_command(deployment_hash, timeout, min_rank, skip, agent.id)
    except AgentRetired:
        raise await retired_refusal(_tokens.bearer(), deployment_hash, agent.id) from None
    if delivery is None:
        return no_content({"Cache-Control": "no-cache"})
    view = delivery_view(delivery, deployment_hash)
    try:
        await _agent_presence.note_delivery(agent.id, view["command_id"],
                                            delivery.timeout_seconds if isinstance(delivery, Command) else None)
    except trio.Cancelled:  # the client went away before its answer: the command goes back
        give_back(deployment_hash, delivery)
        raise
    # ``command`` is the seed's field; the status agent reads ``item`` and ``meta``.
    response = json_response({"message": "Command available", "command": view, "item": view,
                              "meta": {"next_poll_secs": 0}})
    response.headers["Cache-Control"] = "no-cache"
    return response


RESULT_ENDPOINTS = frozenset({"agent_api.report", "agent_api.app_status_update"})
"""What an agent sends that only it has, a result and an app's status: over a
budget, the address's too (agents behind one NAT address spend it together),
refused 503 (``answered_5xx_past_budget``)."""


async def answered_5xx_past_budget(read: Awaitable[T]) -> T:
    """``await read``, its 429 (over the agent's request or byte budget, or its
    address's request budget) answered 503 instead, with its Retry-After: the status agent sends a
    report or an app status again after a 5xx (three times, 2, 4 and 8 s
    apart) and never after a 429, so what a 429 refused was lost."""
    try:
        return await read
    except ApiError as exc:
        if exc.status != 429:
            raise
        raise ApiError(503, exc.code, exc.message, exc.details, exc.headers) from None


async def _agent_document(kind: type[D], code: str, *, limit: int | None = None) -> tuple[AgentRecord, D]:
    """The signed body of an agent's request (at most ``limit`` bytes; None:
    ``server.max_body_size``), decoded as ``kind`` (400 ``code`` naming the
    field), and the agent: its token must be of the deployment the body names
    (403 ``wrong_deployment``)."""
    with contextlib.ExitStack() as held:  # a large body stays counted while it waits for the worker thread
        body, raw = await read_body_and_raw(services().settings, limit=limit, hold=held)
        agent = await _gate.agent(None, raw)
        document = await off_loop(body, lambda body: decoded(body, kind, code))
    if document.deployment_hash != agent.deployment_hash:
        raise ApiError(403, "wrong_deployment", "the agent token belongs to another deployment",
                       details={"deployment_hash": document.deployment_hash})
    return agent, document


@blueprint.post("/api/v1/agent/commands/report")
@documented(auth=Auth.AGENT, body=CommandReport, errors={
    404: "no such command", 409: "conflicts with the recorded result",
    503: "over the agent's or its address's request budget, or its byte budget (rate_limited, Retry-After): send it again",
    507: "the server's disk is nearly full: a report over 64 KiB is not kept now (insufficient_storage)"})
async def report() -> Response:
    """Report a command's progress (executing) or result (completed, success, failed)."""
    refuse_when_disk_short(request.content_length, SMALL_RESULT, "a report")
    # Refused 429, a result over the agent's budget was lost, and its command
    # failed as timed out although it had run.
    agent, result = await answered_5xx_past_budget(_agent_document(CommandReport, "invalid_report"))
    command, changed = await report_to_queue(agent.id, result)  # a follow it finishes ends
    body_out: dict[str, Any] = {
        "message": "Result accepted" if changed else "Result already recorded",
        "status": "accepted" if changed else "duplicate",
        "item": {"accepted": True, "command_id": result.command_id,
                 "command_status": command.status.value if command is not None else None},
    }
    return json_response(body_out)


@blueprint.post("/api/v1/agent/commands/logs")
@documented(auth=Auth.AGENT, body=LogBatch, answers={200: Answer("what was passed on to users", schema=fields(
                accepted={"type": "integer"}, dropped={"type": "integer"}, following={"type": "boolean"},
                reason={"type": ["string", "null"]}))},
            errors={403: "the agent token belongs to another deployment", 404: "no such follow (follow_not_found)",
                    410: "the follow ended (follow_ended; details.reason)", 429: "too many log lines"})
async def log_lines() -> Response:
    """Lines of a followed container's log (``docker.logs`` with ``follow``): those
    within the follow's bounds go to users as ``log_entry`` events. 200
    ``{accepted, dropped, following, reason}``; 404 ``follow_not_found``, 410
    ``follow_ended`` (``details.reason``): the agent stops following."""
    _agent, batch = await _agent_document(LogBatch, "invalid_log_entries")
    admission = await admit_log_entries(batch)
    return json_response({"accepted": len(admission.accepted), "dropped": admission.dropped,
                          "following": admission.ended is None, "reason": admission.ended})


MAX_APP_STATUS_BODY = 1024 * 1024
"""Bytes of an app status's body: the status agent sends every line it read
after a ``logs`` command (400 unless asked, 1,000 at most); a larger one is
refused (413) before it is read. What is kept of it is far less (``KEPT_LOG_BYTES``)."""


_APP_STATUS_ANSWER = fields(status={"enum": ["ok", "ignored"]}, message=STRING, app_code=STRING, updated_at=TIME)
_APP_STATUS_ANSWER["properties"].update(  # a kept one's only: how many of its lines were kept, left out, cut short
    logs_kept={"type": "integer"}, logs_dropped={"type": "integer"}, logs_cut={"type": "integer"})


@blueprint.post("/api/v1/apps/status")
@documented(auth=Auth.AGENT, body=AppStatusUpdate, answers={200: Answer(
                "kept (status ok), or ignored (status ignored): a newer status of the app is kept",
                schema=_APP_STATUS_ANSWER)},
            errors={403: "the agent token belongs to another deployment",
                    409: "a status of one more app than its deployment may have (too_many_apps; "
                         "details: limit, setting commands.max_apps)",
                    503: "over the agent's or its address's request budget, or its byte budget (rate_limited, "
                         "Retry-After): send it again"})
async def app_status_update() -> Response:
    """An app's status as the agent saw it after a health, logs or restart
    command (the TryDirect status agent's): the newest of each app is kept,
    shown on the deployment's GET (``apps``) and told to its users
    (``app_status``); one older than the kept one is answered 200 ``ignored``."""
    agent, update = await answered_5xx_past_budget(
        _agent_document(AppStatusUpdate, "invalid_app_status", limit=MAX_APP_STATUS_BODY))
    now = time.time()
    if update.timestamp is not None and (ahead := update.timestamp.timestamp() - now) > MAX_AHEAD:
        raise field_error("invalid_app_status", "$.timestamp",
                          f"is {ahead:.0f} s ahead of the server's clock; at most {MAX_AHEAD:g} s")
    deployment = (await _directory.directory()).deployments.get(agent.deployment_hash)
    if deployment is None:  # retired meanwhile (its agent's token answered a moment ago)
        raise ApiError(404, "deployment_not_found", f"no deployment {agent.deployment_hash!r}")
    app, logs = app_status(update, agent.id, now)
    limit = services().settings.commands.max_apps
    audit = _app_audit(agent, deployment, app)
    try:
        await commit(services().store, [SaveAppStatus(app, max_apps=limit), *([audit] if audit else [])])
    except Outdated:
        return json_response({"status": "ignored", "app_code": app.app_code, "updated_at": rfc3339_millis(app.updated_at),
                              "message": f"a newer status of app {app.app_code!r} is kept (a later timestamp): "
                                         "this one is not"})
    except OverQuota as exc:
        refusal = _audit_entries.refuse(409, "too_many_apps",
                                        f"deployment {deployment.hash} has the statuses of {exc.in_use} apps, as many "
                                        f"as it may (commands.max_apps {limit}): app {app.app_code!r} is not kept",
                                        action="app.status", tenant=deployment.tenant, actor=f"agent:{agent.id}",
                                        app_code=app.app_code, limit=limit)
        refusal.details = {"limit": limit, "setting": "commands.max_apps", "app_code": app.app_code}
        raise refusal from None
    publish_event(deployment.tenant, deployment.user_id,
                  app_status_event(deployment.hash, app.app_code, app.status, app.updated_at))
    return json_response({"status": "ok", "app_code": app.app_code, "updated_at": rfc3339_millis(app.updated_at),
                          "message": "App status recorded", "logs_kept": len(logs.lines),
                          "logs_dropped": logs.dropped, "logs_cut": logs.cut})


def publish_event(tenant: str, owner: str | None, event: dict[str, Any]) -> None:
    """Tell users' sockets of ``tenant`` an event (about a deployment of
    ``owner``), never waiting: best-effort, as the actors' events (``notifier.publish``)."""
    try:
        notifier = services().system.lookup(NOTIFIER)
    except ActorNotFound:
        return  # shutting down
    publish(notifier, tenant, owner, event)


def _app_audit(agent: AgentRecord, deployment: Deployment, app: AppStatus) -> AuditEntry | None:
    """The audit record (``app.status``) of a status to keep, written with it,
    if the agent's sampler takes it (``Gate.app_statuses_audited``: 30 a
    minute, a burst of 10); the next one taken says how many were left out."""
    left_out = services().gate.app_statuses_audited.admit(agent.id, time.monotonic())
    if left_out is None:
        return None
    details: dict[str, Any] = {"deployment_hash": deployment.hash, "updated_at": rfc3339_millis(app.updated_at)}
    if left_out:
        details["unrecorded_before"] = left_out
    return _audit_entries.audit_entry("app.status", actor=f"agent:{agent.id}", tenant=deployment.tenant,
                                      resource_type="app", resource_id=app.app_code, outcome=app.status, **details)


@blueprint.get("/api/v1/agent/config")
@documented(auth=Auth.AGENT)
async def agent_config() -> Response:
    """The agent's settings (signed like any agent request): where to poll and report, limits, signatures."""
    s = services()
    agent = await _gate.agent(None, b"")
    agents = s.settings.agents
    schemes = ["rfc9421-hmac-sha256", *(["body-hmac-sha256"] if agents.accept_body_only_signatures else [])]
    return json_response({
        "agent_id": agent.id,
        "deployment_hash": agent.deployment_hash,
        "dashboard_version": DASHBOARD_VERSION,
        "supported_api_versions": API_VERSIONS,
        "poll": {"endpoint": f"/api/v1/agent/commands/wait/{agent.deployment_hash}",
                 "default_timeout_seconds": DEFAULT_POLL, "max_timeout_seconds": MAX_POLL},
        "report_endpoint": "/api/v1/agent/commands/report",
        "logs_endpoint": "/api/v1/agent/commands/logs",
        "app_status_endpoint": "/api/v1/apps/status",
        "websocket_endpoint": f"/ws/agent/{agent.deployment_hash}",
        "max_body_bytes": s.settings.server.max_body_size,
        "rate_limit_per_minute": s.settings.limits.per_agent,
        "signatures": {"required": agents.require_signature, "schemes": schemes,
                       "max_clock_skew_seconds": int(_signature_refusals.MAX_CLOCK_SKEW)},
    })
