"""The command service's WebSockets.

``/ws/user/{user_id}?token=``: ``command_progress``, ``command_completed``,
``agent_status`` and ``system_alert`` events of the user's deployments (all of
the tenant's for admins), from an event-client actor per socket. A browser
cannot set an Authorization header on a WebSocket, and a token in the URL ends
up in proxy logs, so the token may come as subprotocols instead: offer
``trioscope`` and ``bearer.<token>``; the server chooses ``trioscope``.

``/ws/agent/{deployment_hash}?token=``: an agent receives its commands and sends
progress and results over one socket instead of long-polling. Commands come
from the same queue actor in the same order, one at a time as with polls.
Each message the agent sends is signed like its HTTP requests::

    {"type": "report", "request_id": "<uuid>", "timestamp": <unix seconds>,
     "signature": "<base64 HMAC-SHA256 of body keyed by the agent token>",
     "body": "<the report JSON, as a string>"}

and is answered ``{"type": "ack", "request_id", "status", "error"?}``. The
server sends ``{"type": "command", "item": {...}, "command": {...}}``.
"""

from __future__ import annotations

import itertools
import logging
from typing import Any

import orjson
import trio
from quart import Blueprint, Response, websocket
from werkzeug.datastructures import Headers

from trioscope.actors.client import GOING_AWAY, POLICY_VIOLATION, ClientLink
from trioscope.actors.deployment_queue import Report
from trioscope.actors.notifier import event_client_spec
from trioscope.domain.commands import CommandReport
from trioscope.domain.deployments import AgentAuthFailure
from trioscope.domain.principals import Permission
from trioscope.domain.report import InvalidDocument, decode
from trioscope.system import NOTIFIER

from . import _gate
from ._agent_api import give_back, wait_for_command
from ._command_views import delivery_view
from ._commands import ask_queue
from ._errors import REFUSALS, ApiError, error_response, refusal_status
from ._live import serve_client_socket
from ._services import services

log = logging.getLogger(__name__)
blueprint = Blueprint("command_ws", __name__)
_names = itertools.count(1)
CLOSE_TIMEOUT = 5.0
REFUSAL_TYPES = tuple(REFUSALS)
AGENT_POLL = 60.0
MAX_AGENT_MESSAGE = 1024 * 1024


@blueprint.websocket("/ws/user/<user_id>")
async def user_events(user_id: str) -> Response | None:
    """Command and agent events for a user (WebSocket; ?token=<user token>, or the token offered
    as a subprotocol)."""
    s = services()
    try:
        await _gate.check_address_rate()
        principal = await _gate.user(Permission.READ, token=_gate.socket_token())
        _gate.own_user(principal, user_id)
    except ApiError as exc:
        return error_response(exc.status, exc.code, exc.message, exc.details, exc.headers)
    # Events are small and bursty (one per status change): a deeper outbox than
    # topology updates, which are merged while a client is behind.
    link = ClientLink(s.settings.websocket.buffer_size * 16)
    spec = event_client_spec(f"events-{next(_names)}", link, NOTIFIER, tenant=principal.tenant, user_id=user_id,
                             admin=principal.may(Permission.ADMINISTER))
    return await serve_client_socket(link, spec, subprotocol=_gate.chosen_subprotocol())


@blueprint.websocket("/ws/agent/<deployment_hash>")
async def agent_channel(deployment_hash: str) -> Response | None:
    """Commands to an agent and its results back, over one WebSocket (?token=<agent token>)."""
    s = services()
    token = websocket.args.get("token") or ""
    try:
        await _gate.check_address_rate()
        # The handshake has no body: like a GET, its signature covers b"".
        agent = await _gate.agent(deployment_hash, b"", token=token, headers=websocket.headers)
    except ApiError as exc:
        return error_response(exc.status, exc.code, exc.message, exc.details, exc.headers)
    await websocket.accept()
    link = ClientLink(64)
    s.links.add(link)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_deliver_commands, deployment_hash, link)
            nursery.start_soon(_receive_reports, agent.id, agent.deployment_hash, token, link)
            await link.closed.wait()
            nursery.cancel_scope.cancel()
        with trio.move_on_after(CLOSE_TIMEOUT):
            await websocket.close(link.close_code or GOING_AWAY, link.close_reason)
    finally:
        s.links.discard(link)
    return None


async def _deliver_commands(deployment_hash: str, link: ClientLink) -> None:
    while True:
        delivery = await wait_for_command(deployment_hash, AGENT_POLL, 0, None)
        if delivery is None:
            if link.closed.is_set():
                return
            continue
        view = delivery_view(delivery, deployment_hash)
        try:
            await websocket.send(orjson.dumps({"type": "command", "item": view, "command": view}).decode())
        except BaseException:
            give_back(deployment_hash, delivery)
            raise


async def _receive_reports(agent_id: str, deployment_hash: str, token: str, link: ClientLink) -> None:
    while True:
        data = await websocket.receive()
        answer = await _handle_agent_message(agent_id, deployment_hash, token, data)
        await websocket.send(orjson.dumps(answer).decode())
        if answer.get("close"):
            link.close(POLICY_VIOLATION, answer["error"]["code"])
            return


async def _handle_agent_message(agent_id: str, deployment_hash: str, token: str, data: str | bytes) -> dict[str, Any]:
    if len(data) > MAX_AGENT_MESSAGE:
        return _nack(None, 413, "message_too_large", f"messages are at most {MAX_AGENT_MESSAGE} bytes")
    try:
        envelope = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        return _nack(None, 400, "invalid_json", f"message is not valid JSON: {exc}")
    if not isinstance(envelope, dict) or envelope.get("type") != "report" or not isinstance(envelope.get("body"), str):
        return _nack(None, 400, "invalid_message", '$: must be {"type": "report", "body": "<report JSON>", ...}')
    request_id = envelope.get("request_id")
    headers = Headers({"X-Agent-Id": agent_id, "X-Timestamp": str(envelope.get("timestamp", "")),
                       "X-Request-Id": str(request_id or ""), "X-Agent-Signature": str(envelope.get("signature", ""))})
    body = envelope["body"].encode()
    try:
        await _gate.agent(deployment_hash, body, token=token, headers=headers)
        try:
            report = decode(orjson.loads(body), CommandReport)
        except (orjson.JSONDecodeError, InvalidDocument) as exc:
            return _nack(request_id, 400, "invalid_report", str(exc))
        if report.deployment_hash != deployment_hash:
            return _nack(request_id, 403, "wrong_deployment", "the report names another deployment")
        _, changed = await ask_queue(deployment_hash, Report(report, agent_id))
    except ApiError as exc:
        answer = _nack(request_id, exc.status, exc.code, exc.message)
        answer["close"] = exc.status in (401, 403, 410) and exc.code not in _ONE_MESSAGE_REFUSALS
        return answer
    except REFUSAL_TYPES as exc:  # 404, 409: answered, the socket stays open
        status, code = refusal_status(exc)
        return _nack(request_id, status, code, str(exc))
    return {"type": "ack", "request_id": request_id, "status": "accepted" if changed else "duplicate"}


_ONE_MESSAGE_REFUSALS = frozenset(failure.code for failure in (
    AgentAuthFailure.REPLAYED, AgentAuthFailure.CLOCK_SKEW, AgentAuthFailure.BAD_SIGNATURE,
    AgentAuthFailure.SIGNED_BEFORE_START))
"""Refusals of one signed frame, not of the agent's credentials: the socket stays open."""


def _nack(request_id: Any, status: int, code: str, message: str) -> dict[str, Any]:
    return {"type": "ack", "request_id": request_id, "status": "rejected",
            "error": {"status": status, "code": code, "message": message}}
