"""Creating a command, one way for every route that creates one (a command's
POST, a container control): the body checked whole before anything is stored,
the command stored and queued with its audit record and idempotency key, and a
log follow holding its place from the start."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import orjson
from quart import Response

from trioscope.actors.deployment_queue import Create
from trioscope.actors.log_follows import StartFollow
from trioscope.actors.refusals import IdempotencyKeyTaken
from trioscope.domain.commands import (
    MAX_PARAMETERS_BYTES, MAX_SCHEDULE_AHEAD, Command, CreateCommand, Priority, new_command,
)
from trioscope.domain.deployments import Deployment
from trioscope.domain.principals import Principal
from trioscope.wire import InvalidDocument, decode

from . import _audit_entries
from ._audit_entries import user_actor
from ._bodies import invalid
from ._command_queues import ask_queue
from ._errors import field_error
from ._idempotency import Once, answer_of_first
from ._log_follows import ask_follows, follow_container, stop_follow
from ._responses import json_bytes_response


def decode_create(document: Any) -> CreateCommand:
    """A command to create, from a request body (400 naming the field)."""
    try:
        create = decode(document, CreateCommand)
    except InvalidDocument as exc:
        raise invalid("invalid_command", exc) from None
    size = len(orjson.dumps(create.parameters))
    if size > MAX_PARAMETERS_BYTES:
        raise field_error("invalid_command", "$.parameters", f"must be at most {MAX_PARAMETERS_BYTES} bytes as JSON, got {size}")
    if create.schedule_at is not None and create.schedule_at.timestamp() > time.time() + MAX_SCHEDULE_AHEAD:
        raise field_error("invalid_command", "$.schedule_at", f"must be at most {MAX_SCHEDULE_AHEAD / 86400:g} days ahead")
    return create


CREATED = 202
"""The status of a new command's answer: stored and queued."""


async def submit(principal: Principal, deployment: Deployment, create: CreateCommand,
                 answer: Callable[[Command], dict[str, Any]], *, target_agent: str | None = None,
                 once: Once | None = None, **audit_details: Any) -> Response:
    """Queue a command for ``deployment`` on behalf of ``principal`` (for
    ``target_agent`` only, if given); answers 202 with ``answer(command)``
    once it is stored.

    With ``once`` (the request's ``Idempotency-Key``, looked up by the route
    already: ``_idempotency.earlier_answer``), the key and this answer are
    stored with the command, so that the request sent again (after a 504
    ``outcome_unknown``, the command may be stored) is answered the same. If
    another request with the key stored its command first, this one is
    answered as that one was."""
    now = time.time()
    command = new_command(
        command_id=f"cmd_{uuid.uuid4().hex}", deployment_hash=deployment.hash, tenant=deployment.tenant,
        type=create.type, parameters=create.parameters, priority=Priority(create.priority),
        created_by=principal.user_id, now=now,
        schedule_at=create.schedule_at.timestamp() if create.schedule_at else None,
        timeout_seconds=create.timeout_seconds, requires_confirmation=create.requires_confirmation, sequence=0,
        target_agent=target_agent, metadata=create.metadata,
    )
    # Of the command as created: the queue changes only its sequence, which no answer shows.
    body = orjson.dumps(answer(command))
    audit = _audit_entries.audit_entry("command.create", actor=user_actor(principal.user_id),
                                       tenant=principal.tenant, resource_type="command", resource_id=command.id,
                                       type=command.type, priority=command.priority.value,
                                       deployment_hash=deployment.hash, **audit_details)
    queued = Create(command, audit, None if once is None else once.keep(command.id, CREATED, body, now))
    try:
        await _queue(principal, deployment, create, queued, now)
    except IdempotencyKeyTaken:
        assert once is not None
        return await answer_of_first(once)  # another request with the key stored its command first
    return json_bytes_response(body, status=CREATED)


async def _queue(principal: Principal, deployment: Deployment, create: CreateCommand, queued: Create,
                 now: float) -> None:
    """Ask the deployment's queue to store and queue a new command."""
    container = follow_container(create)
    if container is None:
        await ask_queue(deployment.hash, queued)
        return
    # A follow holds its place (the per-user and per-agent counts) from now:
    # refused before it is queued, given back if it is not.
    command_id = queued.command.id
    await ask_follows(StartFollow(command_id, deployment.tenant, principal.user_id, deployment.hash, container,
                                   float(create.timeout_seconds), now))
    try:
        await ask_queue(deployment.hash, queued)
    except BaseException:
        stop_follow(command_id, "not_queued")
        raise
