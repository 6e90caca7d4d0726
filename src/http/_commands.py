"""The user API of the command service: deployments, enrollment, commands.

Every route resolves the caller and the tenant through ``_gate``; a deployment
of another tenant (or another user, for non-admins) answers 404.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import attrs
import orjson
from quart import Blueprint, Response, request

from trioscope.actors.deployment_queue import Cancel, Confirm
from trioscope.actors.directory import CreateDeployment, Decommission, NewEnrollmentToken
from trioscope.actors.refusals import UnknownCommand
from trioscope.domain.apps import app_view
from trioscope.domain.commands import (
    MAX_JSON_DEPTH, MAX_PARAMETERS_BYTES, Command, CommandMetadata, CommandStatus, CreateCommand,
)
from trioscope.domain.principals import Permission, Role
from trioscope.wire import nesting_exceeds, rfc3339_millis
from trioscope.store import BulkPart

from . import _audit_entries, _directory, _gate, _rate_checks
from ._arguments import boolean_argument, date_argument, integer_argument
from ._audit_entries import user_actor
from ._bodies import read_json, read_object
from ._command_queues import ask_queue
from ._command_submission import decode_create, submit
from ._command_views import (
    agent_record, command_view, deployment_record, deployment_view, stored_command_view, user_deployments,
)
from ._disk_room import refuse_when_disk_short
from ._errors import ApiError, field_error, unknown_keys
from ._idempotency import IDEMPOTENCY_HEADER, earlier_answer, requested_once
from ._listings import MAX_PAGE, listing_turn
from ._log_follows import end_follow
from ._openapi import STRING, TIME, Answer, Auth, boolean, choice, date, documented, fields, integer
from ._responses import json_bytes_response, json_response
from ._services import services

blueprint = Blueprint("commands", __name__)
blueprint.before_request(_rate_checks.check_address_rate)

BASE = "/api/v1/users/<user_id>/deployments"
MAX_METADATA_BYTES = 16 * 1024
MAX_DEPLOYMENT_BODY = 4 * MAX_METADATA_BYTES
"""Bytes of a new deployment's body (its metadata, written with spaces and
escapes); a larger one is refused (413) before it is read."""
CREATE_KEYS: tuple[str, ...] = tuple(a.name for a in attrs.fields(CreateCommand))
"""The keys a new command's body may have; any other is refused (400 naming it)."""
METADATA_KEYS: tuple[str, ...] = tuple(a.name for a in attrs.fields(CommandMetadata))
"""The keys its ``metadata`` may have (the seed's four), likewise."""
MAX_COMMAND_BODY = 4 * MAX_PARAMETERS_BYTES
"""Bytes of a new command's body: its parameters (``MAX_PARAMETERS_BYTES`` as
compact JSON; more as sent, with spaces and escapes) and the rest; a larger
one is refused (413) before it is read."""
MAX_LISTING_BYTES = 1024 * 1024
"""Byte budget of one page of a command listing (the whole body): a page stops
before ``limit`` commands when the next would not fit, and says where to go on."""
LISTING_ENVELOPE = 1024
"""What a page's fields around its commands take at most (counts, offsets)."""
MAX_SUMMARY_ERROR_BYTES = 4 * 1024
"""An error larger than this as JSON is left out of listings (the command's GET has it)."""
MAX_INLINE_BYTES = 1024 * 1024
"""A command's GET carries its result and error when their JSON is at most this;
larger ones are read with ``/result`` and ``/error``, a page of this size at most."""
MAX_DETAIL_BYTES = 4 * 1024
"""A history entry's detail larger than this as JSON is left out of a command's GET."""
DEPLOYMENT_BODY = {"type": "object", "properties": {"metadata": {
    "type": "object", "description": f"at most {MAX_METADATA_BYTES} bytes, nested at most {MAX_JSON_DEPTH} levels"}}}
_PART_QUERY = (integer("offset", 0, 10**15), integer("length", 1, MAX_INLINE_BYTES))
_PART_ANSWER = Answer("bytes [offset, offset + length) of the value's JSON (X-Total-Bytes, X-Next-Offset)",
                      media="application/octet-stream", schema={"type": "string", "format": "binary"})


@blueprint.get("/api/v1/users/me")
@documented(auth=Auth.USER, answers={200: Answer("the caller", schema=fields(
    user_id=STRING, tenant=STRING, role={"enum": [r.value for r in Role]}, expires_at=TIME,
    permissions={"type": "array", "items": STRING}))})
async def me() -> Response:
    """Who the bearer token is: user, tenant, role and what that role may do."""
    principal = await _gate.user(Permission.READ)
    return json_response({
        "user_id": principal.user_id, "tenant": principal.tenant, "role": principal.role.value,
        "expires_at": rfc3339_millis(principal.expires_at) if principal.expires_at != float("inf") else None,
        "permissions": [p.name.lower() for p in Permission if principal.may(p)],
    })


_NULLABLE_STRING: Any = {"type": ["string", "null"]}


@blueprint.post(BASE)
@documented(auth=Auth.USER, body=DEPLOYMENT_BODY, body_required=False, answers={201: Answer("created", schema=fields(
    id=STRING, deployment_hash=STRING, user_id=STRING, tenant=STRING, agent_id=_NULLABLE_STRING, status=STRING,
    created_at=TIME, last_seen_at=TIME, metadata={"type": "object"}, enrollment_pending={"type": "boolean"},
    enrollment_token=STRING))})
async def create_deployment(user_id: str) -> Response:
    """Create a deployment; answers its hash and a one-time enrollment token (201)."""
    principal = await _gate.user(Permission.OPERATE)
    _gate.own_user(principal, user_id)
    document = await read_object(services().settings, limit=MAX_DEPLOYMENT_BODY)
    metadata = document.get("metadata", {})
    if (not isinstance(metadata, dict) or nesting_exceeds(metadata, MAX_JSON_DEPTH)
            or len(orjson.dumps(metadata)) > MAX_METADATA_BYTES):
        message = f"must be an object of at most {MAX_METADATA_BYTES} bytes, nested at most {MAX_JSON_DEPTH} levels"
        raise field_error("invalid_deployment", "$.metadata", message)
    audit = _audit_entries.audit_entry("deployment.create", actor=user_actor(principal.user_id),
                                       tenant=principal.tenant, resource_type="deployment", user_id=user_id)
    deployment, token = await services().directory.ask(CreateDeployment(principal.tenant, user_id, metadata, audit),
                                                       timeout=10.0)
    return json_response({**deployment_view(deployment), "enrollment_token": token}, status=201)  # no agent yet


@blueprint.get(BASE)
@documented(auth=Auth.USER)
async def list_deployments(user_id: str) -> Response:
    """List a user's deployments."""
    principal = await _gate.user(Permission.READ)
    _gate.own_user(principal, user_id)
    found = user_deployments(await _directory.directory(), principal.tenant, user_id)
    return json_response({"deployments": found, "count": len(found)})


@blueprint.get(f"{BASE}/<deployment_hash>")
@documented(auth=Auth.USER, query=(boolean("retired"), integer("retired_limit", 1, MAX_PAGE), integer("retired_offset", 0, 10**9)))
async def get_deployment(user_id: str, deployment_hash: str) -> Response:
    """A deployment, its active agents, how many are retired and its apps as
    its agent last saw them; with ``retired=true``, a page of the retired ones
    (``retired_limit``, ``retired_offset``)."""
    principal = await _gate.user(Permission.READ)
    deployment = await _gate.deployment_of(principal, user_id, deployment_hash)
    directory = await _directory.directory()
    view = {**deployment_record(deployment, directory),
            "agents": [agent_record(a) for a in directory.active_agents(deployment.hash)],
            "retired_agents_count": directory.retired_count(deployment.hash),
            "apps": [app_view(a) for a in await services().reader.app_statuses(deployment.hash)]}
    if boolean_argument("retired"):
        limit = integer_argument("retired_limit", 50, 1, MAX_PAGE)
        offset = integer_argument("retired_offset", 0, 0, 10**9)
        view["retired_agents"] = [agent_record(a) for a in directory.retired_agents(deployment.hash, limit=limit,
                                                                                    offset=offset)]
        view["retired_limit"], view["retired_offset"] = limit, offset
    return json_response(view)


@blueprint.post(f"{BASE}/<deployment_hash>/enrollment")
@documented(auth=Auth.USER, answers={201: Answer("a new enrollment token", schema=fields(
    deployment_hash=STRING, enrollment_token=STRING))})
async def new_enrollment(user_id: str, deployment_hash: str) -> Response:
    """A new one-time enrollment token for the deployment (201); the previous one stops working."""
    principal = await _gate.user(Permission.OPERATE)
    deployment = await _gate.deployment_of(principal, user_id, deployment_hash)
    audit = _audit_entries.audit_entry("deployment.enrollment", actor=user_actor(principal.user_id),
                                       tenant=principal.tenant, resource_type="deployment", resource_id=deployment.hash)
    token = await services().directory.ask(NewEnrollmentToken(deployment.hash, audit), timeout=10.0)
    return json_response({"deployment_hash": deployment.hash, "enrollment_token": token}, status=201)


@blueprint.post(f"{BASE}/<deployment_hash>/agents/<agent_id>/decommission")
@documented(auth=Auth.USER)
async def decommission(user_id: str, deployment_hash: str, agent_id: str) -> Response:
    """Decommission an agent (ADMIN): its requests get 410 from now on."""
    principal = await _gate.user(Permission.ADMINISTER)
    deployment = await _gate.deployment_of(principal, user_id, deployment_hash)
    known = (await _directory.directory()).agents.get(agent_id)
    if known is None or known.deployment_hash != deployment.hash:
        raise ApiError(404, "agent_not_found", f"no agent {agent_id!r} in this deployment")
    audit = _audit_entries.audit_entry("agent.decommission", actor=user_actor(principal.user_id),
                                       tenant=principal.tenant, resource_type="agent", resource_id=agent_id)
    agent = await services().directory.ask(Decommission(agent_id, audit), timeout=10.0)
    await _directory.close_retired_sockets(deployment.hash)
    return json_response(agent_record(agent))


SMALL_COMMAND = 4 * 1024
"""Bytes of a new command's body still taken while the disk is short of room
(``refuse_when_disk_short``): a restart or a stop, not a script's parameters."""


@blueprint.post(f"{BASE}/<deployment_hash>/commands")
@documented(auth=Auth.USER, body=CreateCommand, headers=(IDEMPOTENCY_HEADER,),
            answers={202: Answer("stored and queued (or, for a request repeated with its Idempotency-Key, the "
                                 "first answer again, with Idempotent-Replayed: true)", schema=fields(
                command_id=STRING, status=STRING, estimated_start=TIME))},
            errors={400: "the body, or the Idempotency-Key header, is not valid (names it)",
                    403: "not allowed, or a quota is full (quota_exceeded; details: limit, setting, in_use)",
                    422: "the Idempotency-Key was used for another request (idempotency_key_reused)",
                    507: "the server's disk is nearly full: a command over 4 KiB is not kept now "
                         "(insufficient_storage)"})
async def create_command(user_id: str, deployment_hash: str) -> Response:
    """Create a command (202 once it is stored). With an ``Idempotency-Key``,
    the same request sent again gets the first answer and no second command."""
    principal = await _gate.user(Permission.OPERATE)
    deployment = await _gate.deployment_of(principal, user_id, deployment_hash)
    refuse_when_disk_short(request.content_length, SMALL_COMMAND, "a command")
    document = await read_json(services().settings, limit=MAX_COMMAND_BODY)
    once = requested_once(principal, document)
    if once is not None and (earlier := await earlier_answer(once)) is not None:
        return earlier  # answered as it was, whatever has changed since
    if isinstance(document, dict):
        unknown_keys("invalid_command", document, CREATE_KEYS, "a command")
        if isinstance(metadata := document.get("metadata"), dict):
            unknown_keys("invalid_command", metadata, METADATA_KEYS, "a command's metadata", at="$.metadata")
    create = decode_create(document)
    _check_confirmation(document)
    return await submit(principal, deployment, create, _created, once=once)


def _created(command: Command) -> dict[str, Any]:
    """The answer to a new command's POST."""
    return {"command_id": command.id, "status": command.status.value,
            "estimated_start": rfc3339_millis(command.scheduled_for)}


def _check_confirmation(document: dict[str, Any]) -> None:
    """400 when the body's ``requires_confirmation`` and its metadata's say
    different things (either alone asks for a confirmation)."""
    metadata = document.get("metadata")
    if ("requires_confirmation" in document and isinstance(metadata, dict) and "requires_confirmation" in metadata
            and metadata["requires_confirmation"] is not None
            and metadata["requires_confirmation"] != document["requires_confirmation"]):
        raise field_error("invalid_command", "$.metadata.requires_confirmation",
                          "contradicts $.requires_confirmation (give one, or the same value in both)")


@blueprint.get(f"{BASE}/<deployment_hash>/commands")
@documented(auth=Auth.USER, query=(choice("status", (s.value for s in CommandStatus)), integer("limit", 1, MAX_PAGE),
                                    integer("offset", 0, 10**9), date("from_date"), date("to_date")),
            errors={429: "more than 2 listings of this user at once (too_many_listings), or over a rate"})
async def list_commands(user_id: str, deployment_hash: str) -> Response:
    """List commands, newest first (status, limit ≤ 500, offset, from_date, to_date):
    summaries without results or history, a page of at most 1 MiB."""
    principal = await _gate.user(Permission.READ)
    deployment = await _gate.deployment_of(principal, user_id, deployment_hash)
    status = request.args.get("status")
    if status is not None and status not in {s.value for s in CommandStatus}:
        raise ApiError(400, "invalid_query", f"status: must be one of {', '.join(s.value for s in CommandStatus)}",
                       details={"field": "status"})
    limit = integer_argument("limit", 50, 1, MAX_PAGE)
    offset = integer_argument("offset", 0, 0, 10**9)
    since, until = date_argument("from_date", end=False), date_argument("to_date", end=True)
    budget = MAX_LISTING_BYTES - LISTING_ENVELOPE
    async with listing_turn(principal):
        found, total = await services().reader.command_summaries(
            deployment.hash, status=status, since=since, until=until, limit=limit,
            offset=offset, max_bytes=budget, error_bytes=MAX_SUMMARY_ERROR_BYTES)
    base = _commands_url(user_id, deployment.hash)
    items: list[bytes] = []
    used = 0
    for stored in found:
        item = orjson.dumps(stored_command_view(stored, f"{base}/{quote(stored.command.id, safe='')}",
                                                max_detail_bytes=MAX_DETAIL_BYTES))
        if items and used + len(item) + 1 > budget:
            break
        items.append(item)
        used += len(item) + 1  # and its comma
    shown = len(items)
    following = offset + shown if offset + shown < total else None
    envelope = orjson.dumps({"count": shown, "total": total, "limit": limit, "offset": offset,
                             "next_offset": following, "truncated": shown < min(limit, max(0, total - offset)),
                             "max_bytes": MAX_LISTING_BYTES})
    return json_bytes_response(b'{"commands":[' + b",".join(items) + b"]," + envelope[1:])


def _commands_url(user_id: str, deployment_hash: str) -> str:
    return f"/api/v1/users/{quote(user_id, safe='')}/deployments/{deployment_hash}/commands"


async def _command(deployment_hash: str, command_id: str) -> Command:
    command = await services().reader.command(command_id)
    if command is None or command.deployment_hash != deployment_hash:
        raise _no_command(command_id)
    return command


def _no_command(command_id: str) -> ApiError:
    return ApiError(404, "command_not_found", f"no command {command_id!r} in this deployment",
                    details={"command_id": command_id})


@blueprint.get(f"{BASE}/<deployment_hash>/commands/<command_id>")
@documented(auth=Auth.USER)
async def get_command(user_id: str, deployment_hash: str, command_id: str) -> Response:
    """A command with its full status history; its result and error when their
    JSON is at most 1 MiB (else ``/result``, ``/error``)."""
    principal = await _gate.user(Permission.READ)
    deployment = await _gate.deployment_of(principal, user_id, deployment_hash)
    stored = await services().reader.stored_command(command_id, inline_bytes=MAX_INLINE_BYTES)
    if stored is None or stored.command.deployment_hash != deployment.hash:
        raise _no_command(command_id)
    url = f"{_commands_url(user_id, deployment.hash)}/{quote(command_id, safe='')}"
    return json_response(stored_command_view(stored, url, max_detail_bytes=MAX_DETAIL_BYTES))


@blueprint.get(f"{BASE}/<deployment_hash>/commands/<command_id>/result")
@documented(auth=Auth.USER, query=_PART_QUERY, answers={200: _PART_ANSWER})
async def get_command_result(user_id: str, deployment_hash: str, command_id: str) -> Response:
    """A page of the command's result as JSON bytes (``offset``, ``length``)."""
    return await _part(user_id, deployment_hash, command_id, "result")


@blueprint.get(f"{BASE}/<deployment_hash>/commands/<command_id>/error")
@documented(auth=Auth.USER, query=_PART_QUERY, answers={200: _PART_ANSWER})
async def get_command_error(user_id: str, deployment_hash: str, command_id: str) -> Response:
    """A page of the command's error as JSON bytes (``offset``, ``length``)."""
    return await _part(user_id, deployment_hash, command_id, "error")


async def _part(user_id: str, deployment_hash: str, command_id: str, part: BulkPart) -> Response:
    """Bytes ``[offset, offset + length)`` of the value's compact JSON, read from
    the store without reading the rest; ``X-Total-Bytes`` is the whole size and
    ``X-Next-Offset`` where the next page starts (absent after the last)."""
    principal = await _gate.user(Permission.READ)
    deployment = await _gate.deployment_of(principal, user_id, deployment_hash)
    offset = integer_argument("offset", 0, 0, 10**15)
    length = integer_argument("length", MAX_INLINE_BYTES, 1, MAX_INLINE_BYTES, " bytes")
    found = await services().reader.command_part(command_id, part, offset, length)
    if found is None or found.deployment_hash != deployment.hash:
        raise _no_command(command_id)
    if offset > found.total:
        raise ApiError(400, "invalid_query", f"offset: must be at most {found.total}, the size of the {part} in bytes",
                       details={"field": "offset", "total_bytes": found.total})
    end = offset + len(found.data)
    headers = {"X-Total-Bytes": str(found.total)}
    if end < found.total:
        headers["X-Next-Offset"] = str(end)
    return Response(found.data, content_type="application/octet-stream", headers=headers)


async def _change(user_id: str, deployment_hash: str, command_id: str, action: str, message_type: Any) -> Response:
    principal = await _gate.user(Permission.OPERATE)
    deployment = await _gate.deployment_of(principal, user_id, deployment_hash)
    existing = await _command(deployment.hash, command_id)
    if existing.status.terminal:
        raise _finished(existing, action)
    audit = _audit_entries.audit_entry(f"command.{action}", actor=user_actor(principal.user_id),
                                       tenant=principal.tenant, resource_type="command", resource_id=command_id)
    try:
        changed: Command = await ask_queue(deployment.hash, message_type(command_id, audit))
    except UnknownCommand:
        # It finished (an agent's report, a deadline) between our read and the queue's turn.
        raise _finished(await _command(deployment.hash, command_id), action) from None
    return json_response(command_view(changed, history=True))


def _finished(command: Command, action: str) -> ApiError:
    return ApiError(409, "invalid_transition", f"cannot {action} a command that is {command.status.value}",
                    details={"status": command.status.value})


@blueprint.post(f"{BASE}/<deployment_hash>/commands/<command_id>/confirm")
@documented(auth=Auth.USER, errors={409: "the command is not awaiting confirmation"})
async def confirm_command(user_id: str, deployment_hash: str, command_id: str) -> Response:
    """Confirm a command that requires confirmation: it is queued."""
    return await _change(user_id, deployment_hash, command_id, "confirm", Confirm)


@blueprint.post(f"{BASE}/<deployment_hash>/commands/<command_id>/cancel")
@documented(auth=Auth.USER, errors={409: "the command has finished"})
async def cancel_command(user_id: str, deployment_hash: str, command_id: str) -> Response:
    """Cancel a command: at once if queued, by a cancel sent to the agent if it has it."""
    response = await _change(user_id, deployment_hash, command_id, "cancel", Cancel)
    await end_follow(command_id, "stopped")  # a follow's lines stop now, before the agent hears of the cancel
    return response

