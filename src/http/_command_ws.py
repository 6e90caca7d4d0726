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
server sends ``{"type": "command", "item": {...}, "command": {...}}``. The agent
token comes as ``?token=`` or in an Authorization header. The credentials are
checked again before every command: a decommissioned or re-enrolled agent's
socket closes with 4000 + the status its requests get (4410, 4401).
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
from trioscope.runtime import ActorFailed
from trioscope.system import NOTIFIER

from . import _gate
from ._agent_api import give_back, wait_for_command
from ._command_views import delivery_view
from ._commands import ask_queue
from ._errors import REFUSALS, UNAVAILABLE, ApiError, error_response, refusal_status
from ._live import serve_client_socket
from ._services import services

log = logging.getLogger(__name__)
blueprint = Blueprint("command_ws", __name__)
_names = itertools.count(1)
CLOSE_TIMEOUT = 5.0
REFUSAL_TYPES = tuple(REFUSALS)
UNAVAILABLE_TYPES = tuple(UNAVAILABLE)
AGENT_POLL = 60.0
MAX_AGENT_MESSAGE = 1024 * 1024
MAX_WEBSOCKET_MESSAGE = MAX_AGENT_MESSAGE + 64 * 1024
"""Hypercorn's limit: a frame over it closes the socket with 1009 before any
handler sees it, so it leaves room for ``message_too_large`` to be answered."""


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
    return await serve_client_socket(link, spec, subprotocol=_gate.chosen_subprotocol(),
                                     expires_at=principal.expires_at)


@blueprint.websocket("/ws/agent/<deployment_hash>")
async def agent_channel(deployment_hash: str) -> Response | None:
    """Commands to an agent and its results back, over one WebSocket (?token=<agent token>)."""
    s = services()
    token = websocket.args.get("token") or _gate.bearer() or ""
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
            nursery.start_soon(_deliver_commands, agent.id, deployment_hash, token, link)
            nursery.start_soon(_receive_reports, agent.id, agent.deployment_hash, token, link)
            await link.closed.wait()
            nursery.cancel_scope.cancel()
        with trio.move_on_after(CLOSE_TIMEOUT):
            await websocket.close(link.close_code or GOING_AWAY, link.close_reason)
    finally:
        s.links.discard(link)
    return None


async def _deliver_commands(agent_id: str, deployment_hash: str, token: str, link: ClientLink) -> None:
    while True:
        if not await _enrolled(agent_id, deployment_hash, token, link):
            return
        try:
            delivery = await wait_for_command(deployment_hash, AGENT_POLL, 0, None)
        except (*UNAVAILABLE_TYPES, ActorFailed):
            await trio.sleep(1)  # the queue is swamped, restarting or failing: try again, as a polling agent would
            continue
        if delivery is None:
            if link.closed.is_set():
                return
            continue
        # The agent may have been decommissioned (or re-enrolled) while it waited.
        if link.closed.is_set() or not await _enrolled(agent_id, deployment_hash, token, link):
            give_back(deployment_hash, delivery)
            return
        view = delivery_view(delivery, deployment_hash)
        try:
            await websocket.send(orjson.dumps({"type": "command", "item": view, "command": view}).decode())
        except BaseException:
            give_back(deployment_hash, delivery)
            raise


async def _enrolled(agent_id: str, deployment_hash: str, token: str, link: ClientLink) -> bool:
    """Whether the socket's credentials still hold; if not, the socket closes
    (4000 + the HTTP status a request would get: 4410 once decommissioned)."""
    answer = (await _gate.directory()).authenticate(token, deployment_hash=deployment_hash, agent_id=agent_id)
    if isinstance(answer, AgentAuthFailure):
        link.close(4000 + answer.status, answer.code)
        return False
    return True


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
    except UNAVAILABLE_TYPES as exc:  # as HTTP's 503: the agent sends the report again
        code, message = UNAVAILABLE[type(exc)]
        return _nack(request_id, 503, code, message)
    except ActorFailed:  # the queue actor crashed on it (and logged why); it has restarted
        return _nack(request_id, 500, "internal_error", "internal error; the server log has the details")
    return {"type": "ack", "request_id": request_id, "status": "accepted" if changed else "duplicate"}


_ONE_MESSAGE_REFUSALS = frozenset(failure.code for failure in (
    AgentAuthFailure.REPLAYED, AgentAuthFailure.CLOCK_SKEW, AgentAuthFailure.BAD_SIGNATURE,
    AgentAuthFailure.SIGNED_BEFORE_START))
"""Refusals of one signed frame, not of the agent's credentials: the socket stays open."""


def _nack(request_id: Any, status: int, code: str, message: str) -> dict[str, Any]:
    return {"type": "ack", "request_id": request_id, "status": "rejected",
            "error": {"status": status, "code": code, "message": message}}
