"""The command service's WebSockets.

``/ws/user/{user_id}?token=``: ``command_progress``, ``command_completed``,
``agent_status`` and ``system_alert`` events of the user's deployments (all of
the tenant's for admins), and ``log_entry`` events of the user's log follows
(``trioscope.actors.log_follows``), from an event-client actor per socket. A browser
cannot set an Authorization header on a WebSocket, and a token in the URL ends
up in proxy logs, so the token may come as subprotocols instead: offer
``trioscope`` and ``bearer.<token>``; the server chooses ``trioscope``.

``/ws/agent/{deployment_hash}?token=``: an agent receives its commands and sends
progress and results over one socket instead of long-polling. The agent token
comes as ``?token=`` or in an Authorization header. Messages:

- server → agent ``{"type": "command", "item": {...}, "command": {...}}``; the
  agent answers ``{"type": "received", "command_id": "<item.command_id>"}`` as
  soon as it has it (a report of the command counts too, even one that comes
  after the command went back to the queue: ``deployment_queue``). Commands come from
  the same queue actor in the same order, one at a time: the next one once the
  agent acknowledged this one. One not acknowledged within ``ACK_DEADLINE``
  goes back to the queue for the next poll or socket (its history says "not
  acknowledged by the agent socket") and this socket closes with 1008, as it
  evidently does not reach the agent; a command not acknowledged a second time
  fails with ``commands.UNACKNOWLEDGED_TWICE``, rather than reaching an
  agent a third time unseen.
- agent → server reports, signed like its HTTP requests::

    {"type": "report", "request_id": "<uuid>", "timestamp": <unix seconds>,
     "signature": "<base64 HMAC-SHA256 of body keyed by the agent token>",
     "body": "<the report JSON, as a string>"}

  or, signed over the whole message (RFC 9421, as if ``body`` were POSTed to
  ``/ws/agent/{hash}``: what ``--accept-body-only-signatures false`` requires),
  ``{"type": "report", "request_id", "body", "signature_input": "<Signature-Input>",
  "signature": "<Signature>", "content_digest": "<Content-Digest>"}``;
  each answered ``{"type": "ack", "request_id", "status", "error"?}``.
- server → agent ``{"type": "ping"}`` every ``websocket.ping_interval``, answered
  ``{"type": "pong"}``; an agent that has answered one is taken to be gone
  after two pings without a word from it, and the socket closes with 1008
  (``domain.keepalive``: the seed's agents send heartbeats instead, and one
  that never answers is judged by its acknowledgements and by whether the
  socket takes frames). The agent may send ``{"type": "ping"}`` too and gets a ``pong``.
- ``received``, ``ping`` and ``pong`` are not signed: they only concern this
  socket, whose handshake was.
- the command service seed's agent messages, unsigned as the seed sends them
  (the socket's handshake was signed, as for ``received``), each charged to
  the agent's request budget like a request: ``{"type": "heartbeat", ...}``
  (the agent is heard from; not answered), ``{"type": "command_progress",
  "command_id", "progress", "stage"}`` (what a report of ``executing`` with
  them does: progress only, never an outcome, which stays signed) and
  ``{"type": "log_entry", "command_id", "timestamp", "level", "message",
  "source"}`` (one line of the log follow ``command_id`` names, as ``POST
  /api/v1/agent/commands/logs`` takes them: the seed's entry names no follow,
  and a line no user follows reaches nobody). Both answered with an ``ack``
  (``request_id`` echoed if given).

A decommissioned or re-enrolled agent's socket closes at once with 4000 + the
status its requests get (4410; 4401 for a token that no longer exists): the
queue actor answers the socket's waiting poll when the directory retires the
agent, and checks the agent again before each command.

An agent has at most ``AGENT_SOCKETS`` open on this process: a newer one closes
its oldest with 4409 (``replaced_by_a_newer_socket``). Never a refusal: an agent
reconnecting before the server noticed its last connection died must get in.
The count is this process's memory (``services().agent_sockets``): with
``--workers`` or replicas an agent may hold ``AGENT_SOCKETS`` on each, as the
README says; the cap bounds one process's descriptors, which is what it is for.
"""

from __future__ import annotations

import itertools
import logging
import uuid
from typing import Any

import attrs
import orjson
import trio
from quart import Blueprint, Response, websocket
from werkzeug.datastructures import Headers

from trioscope.actors.client_link import GOING_AWAY, POLICY_VIOLATION, ClientLink
from trioscope.actors.notifier import event_client_spec
from trioscope.domain.commands import NOT_ACKNOWLEDGED, Command, CommandReport, Delivery, LogBatch, LogEntry
from trioscope.domain.deployments import AgentAuthFailure
from trioscope.domain.keepalive import GONE, PING, Keepalive
from trioscope.domain.principals import Permission
from trioscope.runtime import ActorFailed
from trioscope.system import NOTIFIER
from trioscope.wire import InvalidDocument, decode, request_signing

from . import _agent_presence, _directory, _gate, _rate_checks, _tokens
from ._command_views import delivery_view, user_deployments
from ._errors import ApiError, answer_to, error_response, log_incident
from ._bodies import decoded, off_loop
from ._client_sockets import serve_client_socket
from ._openapi import Auth, documented, text
from ._services import services
from ._agent_poll import AgentRetired, give_back, wait_for_command
from ._command_queues import report_to_queue
from ._directory import credentials_failure
from ._disk_room import SMALL_RESULT, refuse_when_disk_short
from ._log_follows import admit_log_entries

log = logging.getLogger(__name__)
blueprint = Blueprint("command_ws", __name__)
_names = itertools.count(1)
CLOSE_TIMEOUT = 5.0
AGENT_POLL = 60.0
ACK_DEADLINE = 10.0
"""Seconds an agent socket has to acknowledge a command (``received``, or a
report of it) before the command goes back to the queue and the socket closes."""
AGENT_SOCKETS = 2
"""Sockets one agent may hold open: its socket and a reconnect's, while the
first is not yet known to be dead. One agent opening more (300 in 25 s under
its rate budget were seen, each held for ever while it answered pings) held
as many descriptors; its oldest is closed instead (``REPLACED``)."""
REPLACED = 4409
"""Close code of an agent socket a newer one of the same agent replaced."""
MAX_AGENT_MESSAGE = 1024 * 1024
MAX_WEBSOCKET_MESSAGE = MAX_AGENT_MESSAGE + 64 * 1024
"""Hypercorn's limit: a frame over it closes the socket with 1009 before any
handler sees it, so it leaves room for ``message_too_large`` to be answered."""


@blueprint.websocket("/ws/user/<user_id>")
@documented(auth=Auth.USER, query=(text("token", "the user token (or offered as a subprotocol)"),))
async def user_events(user_id: str) -> Response | None:
    """Command and agent events for a user (WebSocket; ?token=<user token>, or the token offered
    as a subprotocol)."""
    s = services()
    try:
        await _rate_checks.check_address_rate()
        principal = await _gate.user(Permission.READ, token=_tokens.socket_token())
        _gate.own_user(principal, user_id)
    except ApiError as exc:
        return error_response(exc.status, exc.code, exc.message, exc.details, exc.headers)
    # Events are small and bursty (one per status change): a deeper outbox than
    # topology updates, which are merged while a client is behind. A burst
    # beyond it waits in the event client (``notifier``), bounded.
    link = ClientLink(s.settings.websocket.buffer_size * 16)
    await _directory.directory()  # the directory's state handed out (the first socket's request asks for it)
    gate = s.gate

    def initial_state() -> str:
        """The seed's first frame: the user's deployments as they are once the
        client actor watches the events (a change told before then is in it,
        one told after it follows it as an event)."""
        assert gate.directory is not None
        return orjson.dumps({"type": "initial_state", "deployments": user_deployments(
            gate.directory.value, principal.tenant, user_id, gate.sightings.seen)}).decode()

    spec = event_client_spec(f"events-{next(_names)}", link, NOTIFIER, tenant=principal.tenant, user_id=user_id,
                             admin=principal.may(Permission.ADMINISTER),
                             stalled_after=s.settings.websocket.slow_client_timeout, first=initial_state,
                             ping_interval=s.settings.websocket.ping_interval)
    return await serve_client_socket(link, spec, subprotocol=_tokens.chosen_subprotocol(), principal=principal)


@blueprint.websocket("/ws/agent/<deployment_hash>")
@documented(auth=Auth.AGENT, query=(text("token", "the agent token"),))
async def agent_channel(deployment_hash: str) -> Response | None:
    """Commands to an agent and its results back, over one WebSocket (?token=<agent token>)."""
    s = services()
    token = _tokens.query_token() or _tokens.bearer() or ""
    try:
        await _rate_checks.check_address_rate()
        # The handshake has no body: like a GET, its signature covers b"".
        agent = await _gate.agent(deployment_hash, b"", token=token, headers=websocket.headers)
    except ApiError as exc:
        return error_response(exc.status, exc.code, exc.message, exc.details, exc.headers)
    await websocket.accept()
    link = ClientLink(64)
    s.links.add(link)
    held = s.agent_sockets.setdefault(agent.id, [])
    if len(held) >= AGENT_SOCKETS:
        held.pop(0).close(REPLACED, "replaced_by_a_newer_socket")
    held.append(link)
    channel = _AgentChannel(agent.id, agent.deployment_hash, token, link)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(channel.deliver_commands)
            nursery.start_soon(channel.receive, s.settings.websocket.ping_interval)
            nursery.start_soon(channel.ping, s.settings.websocket.ping_interval)
            await link.closed.wait()
            nursery.cancel_scope.cancel()
        with trio.move_on_after(CLOSE_TIMEOUT):
            await websocket.close(link.close_code or GOING_AWAY, link.close_reason)
    finally:
        s.links.discard(link)
        if link in held:
            held.remove(link)
        if not held and s.agent_sockets.get(agent.id) is held:
            del s.agent_sockets[agent.id]
            s.gate.sightings.no_socket(agent.id)  # (README: null)
    return None


@attrs.define(eq=False)
class _AgentChannel:
    """One agent socket: the command it waits to hear acknowledged, and its pings."""

    agent_id: str
    deployment_hash: str
    token: str
    link: ClientLink
    pending: str | None = None
    """The id (``item.command_id``) of the command sent and not acknowledged yet."""
    acknowledged: trio.Event = attrs.field(factory=trio.Event)
    keepalive: Keepalive = attrs.field(factory=Keepalive)
    pinged_at: float | None = None
    """When the latest ping went out (Trio's clock), until its pong: the agent's ``latency_ms``."""

    async def deliver_commands(self) -> None:
        while True:
            if not await self._enrolled():
                return
            try:
                delivery = await wait_for_command(self.deployment_hash, AGENT_POLL, 0, None, self.agent_id)
            except AgentRetired:
                if await self._enrolled():  # cannot be: the queue saw it retired in the same snapshot
                    self.link.close(4410, "agent_decommissioned")
                return
            except Exception as exc:
                found = answer_to(exc)
                if not isinstance(exc, ActorFailed) and (found is None or found[0].status < 500):
                    raise
                await trio.sleep(1)  # the queue is swamped, restarting or failing: try again, as a polling agent would
                continue
            if delivery is None:
                if self.link.closed.is_set():
                    return
                continue
            if self.link.closed.is_set():
                give_back(self.deployment_hash, delivery)
                return
            if not await self._deliver(delivery):
                return

    async def _deliver(self, delivery: Delivery) -> bool:
        """Send one command and wait for its acknowledgement; False (and the
        socket closing) if none came in time."""
        view = delivery_view(delivery, self.deployment_hash)
        self.pending, self.acknowledged = view["command_id"], trio.Event()
        try:
            # Within: cancelled, it goes back.
            await _agent_presence.note_delivery(self.agent_id, view["command_id"],
                                                delivery.timeout_seconds if isinstance(delivery, Command) else None)
            # The send is within the deadline too: a peer that reads nothing
            # stops taking frames once the buffers fill.
            with trio.move_on_after(ACK_DEADLINE):
                await websocket.send(orjson.dumps({"type": "command", "item": view, "command": view}).decode())
                await self.acknowledged.wait()
        except BaseException:
            if not self.acknowledged.is_set():  # (set, it is the agent's: never queued again)
                give_back(self.deployment_hash, delivery)
            raise
        finally:
            self.pending = None
        if self.acknowledged.is_set():
            return True
        give_back(self.deployment_hash, delivery, NOT_ACKNOWLEDGED)
        log.info("agent %s of deployment %s did not acknowledge command %s within %ss: closing its socket",
                 self.agent_id, self.deployment_hash, view["command_id"], int(ACK_DEADLINE),
                 extra={"event": "command_not_acknowledged", "agent_id": self.agent_id,
                        "deployment_hash": self.deployment_hash, "command_id": view["command_id"]})
        if await self._enrolled():  # a retired agent's socket closes as such
            self.link.close(POLICY_VIOLATION, "command not acknowledged")
        return False

    def _acknowledge(self, command_id: str) -> None:
        if command_id == self.pending:
            self.acknowledged.set()

    async def _enrolled(self) -> bool:
        """Whether the socket's credentials still hold; if not, the socket closes
        (``AgentAuthFailure.close_code``)."""
        failure = await credentials_failure(self.token, self.deployment_hash, self.agent_id)
        if failure is not None:
            self.link.close(failure.close_code, failure.code)
            return False
        return True

    async def ping(self, interval: float) -> None:
        """Ping every ``interval``; close when the agent is taken to be gone
        (``Keepalive``). One sleeping task per socket: no polling."""
        while True:
            await trio.sleep(interval)
            if not self.keepalive.ping():
                self.link.close(POLICY_VIOLATION, GONE)
                return
            # Timed from before the send: its pong may be handled before the send returns.
            self.pinged_at = trio.current_time()
            with trio.move_on_after(interval) as stuck:
                await websocket.send(PING)
            if stuck.cancelled_caught:
                self.link.close(POLICY_VIOLATION, GONE)  # it takes nothing: as good as no pong
                return

    async def receive(self, ping_interval: float) -> None:
        """Answer the agent's messages in order; after a rate refusal (429) the
        socket goes unread for a while (``_rate_checks.read_pause``)."""
        pause = _rate_checks.read_pause(ping_interval)
        while True:
            data = await websocket.receive()
            answer = await self._handle(data)
            if answer is None:
                continue
            close = answer.pop("close", False)  # ours, not the agent's to read
            await websocket.send(orjson.dumps(answer).decode())
            if close:
                self.link.close(POLICY_VIOLATION, answer["error"]["code"])
                return
            if answer.get("status") == "rejected" and answer["error"]["status"] == 429:
                await trio.sleep(pause)

    async def _handle(self, data: str | bytes) -> dict[str, Any] | None:
        """The answer to one message from the agent (None: none is sent).
        Its bytes count against the agent's budget before it is read (a pong's
        parse costs the loop what a report's does, and 750 KB ones held every
        other client up), and every message but a pong (the server asked for
        it, one a ping interval: a busy agent's must not close its socket)
        counts as a request."""
        try:
            _rate_checks.charge_agent_bytes(self.agent_id, len(data))
        except ApiError as exc:
            return _refused(None, exc)
        envelope: Any = None
        problem: str | None = None
        if len(data) <= MAX_AGENT_MESSAGE:
            try:
                envelope = orjson.loads(data)
            except orjson.JSONDecodeError as exc:
                problem = str(exc)
        kind = envelope.get("type") if isinstance(envelope, dict) else None
        if not isinstance(kind, str):
            kind = None  # (a list or a map there crashed the handler: unhashable, looked up below)
        if kind not in ("report", "pong") and not await self._enrolled():
            # Retired, or its token gone: the socket closes, and nothing it
            # sends counts any more (a log line still reached users). A
            # report's own signature check refuses it, saying so.
            return None
        # Whatever arrives on the socket, answered or refused, proves its agent
        # is there: the handshake was signed. A report is timed as the request
        # it is once its signature verifies (``_gate.agent``).
        await _agent_presence.heard_from(self.agent_id, as_request=kind != "report")
        self.keepalive.heard()
        if len(data) > MAX_AGENT_MESSAGE:
            return _nack(None, 413, "message_too_large", f"messages are at most {MAX_AGENT_MESSAGE} bytes")
        if problem is not None:
            return _nack(None, 400, "invalid_json", f"message is not valid JSON: {problem}")
        if kind == "pong":  # no request: the server asked for it
            self.keepalive.pong()
            if self.pinged_at is not None:  # else one the agent sent unasked: it times nothing
                await _agent_presence.note_latency(self.agent_id, trio.current_time() - self.pinged_at)
                self.pinged_at = None
            return None
        try:
            await _rate_checks.charge_agent(self.agent_id)
        except ApiError as exc:
            return _refused(_request_id(envelope), exc)
        if kind == "ping":
            return {"type": "pong"}
        if kind == "received":
            command_id = envelope.get("command_id")
            if not isinstance(command_id, str):
                return _nack(None, 400, "invalid_message", "$.command_id: must be the id of the command received")
            self._acknowledge(command_id)  # one not pending (late, repeated) changes nothing
            return None
        if kind == "heartbeat":
            return None  # the seed's agent says it is there: heard above
        if kind in _SEED_UPDATES:
            return await self._seed_update(kind, envelope)
        if kind != "report" or not isinstance(envelope.get("body"), str):
            return _nack(_request_id(envelope), 400, "invalid_message", '$: must be {"type": "report", "body": "<report JSON>", ...}, '
                         '{"type": "received", "command_id": ...}, {"type": "command_progress", ...}, '
                         '{"type": "log_entry", ...}, {"type": "heartbeat"}, {"type": "pong"} or {"type": "ping"}')
        answer, command_id = await _handle_agent_message(self.agent_id, self.deployment_hash, self.token, envelope)
        if command_id is not None:
            self._acknowledge(command_id)  # the agent reports on it: it has it
        return answer


    async def _seed_update(self, kind: str, envelope: dict[str, Any]) -> dict[str, Any]:
        """The ``ack`` of a seed's ``command_progress`` or ``log_entry`` (module docstring)."""
        request_id = _request_id(envelope)
        fields = {key: value for key, value in envelope.items() if key not in ("type", "request_id")}
        unknown = sorted(set(fields) - _SEED_UPDATES[kind])
        if unknown:
            return _nack(request_id, 400, "invalid_message", f"$.{unknown[0][:64]}: not a field of {kind} (it has "
                         f"{', '.join(sorted(_SEED_UPDATES[kind]))})")
        try:
            if kind == "log_entry":
                command_id = fields.pop("command_id", None)
                # The line alone first, so that a problem is named where the agent put it.
                decode(fields, LogEntry)
                batch = decode({"command_id": command_id, "deployment_hash": self.deployment_hash,
                                "entries": [fields]}, LogBatch)
                admission = await admit_log_entries(batch)
                return {"type": "ack", "request_id": request_id,
                        "status": "accepted" if admission.accepted else "dropped"}
            if fields.get("progress") is None and fields.get("stage") is None:
                # Taken as a report of ``executing`` without them, it wiped what was shown.
                return _nack(request_id, 400, "invalid_message", "$.progress: a command_progress names progress, "
                             "stage or both")
            report = decode({**fields, "deployment_hash": self.deployment_hash, "status": "executing"}, CommandReport)
            self._acknowledge(report.command_id)  # the agent reports on it: it has it
            _, changed = await report_to_queue(self.agent_id, report)
        except InvalidDocument as exc:
            return _nack(request_id, 400, "invalid_message", str(exc))
        except ApiError as exc:
            return _refused(request_id, exc)
        except Exception as exc:  # noqa: BLE001  # answered as over HTTP; the socket stays open
            return _answered(request_id, exc)
        return {"type": "ack", "request_id": request_id, "status": "accepted" if changed else "duplicate"}


_SEED_UPDATES = {
    "command_progress": frozenset({"command_id", "progress", "stage"}),
    "log_entry": frozenset({"command_id", "timestamp", "level", "message", "source"}),
}
"""The command service seed's agent messages that change what users see, and their fields."""


async def _handle_agent_message(agent_id: str, deployment_hash: str, token: str, envelope: dict[str, Any]
                                ) -> tuple[dict[str, Any], str | None]:
    """The ``ack`` of one signed report, and the id of the command it reports
    on if it came from the agent (signed) and was readable, even if refused: it
    proves the agent has that command."""
    reported: str | None = None
    request_id = _request_id(envelope)
    target: tuple[str, str] | None = None
    if isinstance(envelope.get("signature_input"), str):
        # RFC 9421, as if the report were POSTed to this socket's path.
        headers = Headers({"X-Agent-Id": agent_id, "Signature-Input": envelope["signature_input"],
                           "Signature": str(envelope.get("signature", "")),
                           "Content-Digest": str(envelope.get("content_digest", ""))})
        target = ("POST", request_signing.target(f"/ws/agent/{deployment_hash}", ""))
    else:
        headers = Headers({"X-Agent-Id": agent_id, "X-Timestamp": str(envelope.get("timestamp", "")),
                           "X-Request-Id": str(envelope.get("request_id") or ""),  # as signed, whatever is echoed
                           "X-Agent-Signature": str(envelope.get("signature", ""))})
    body = envelope["body"].encode()
    try:
        await _gate.agent(deployment_hash, body, token=token, headers=headers, target=target, charged=True)
        refuse_when_disk_short(len(body), SMALL_RESULT, "a report")  # as over HTTP
        # As over HTTP: parse_json refuses an integer beyond 64 bits (orjson
        # alone would make it a float) and an empty body; a large body is read
        # in a worker thread.
        report = await off_loop(body, lambda body: decoded(body, CommandReport, "invalid_report"))
        if report.deployment_hash != deployment_hash:
            return _nack(request_id, 403, "wrong_deployment", "the report names another deployment"), None
        reported = report.command_id
        _, changed = await report_to_queue(agent_id, report)  # a follow it finishes ends
    except ApiError as exc:
        answer = _refused(request_id, exc)
        answer["close"] = exc.status in (401, 403, 410) and exc.code not in _ONE_MESSAGE_REFUSALS
        return answer, reported
    except Exception as exc:  # noqa: BLE001  # answered as over HTTP (a 503: the agent sends it again); the socket stays open
        return _answered(request_id, exc), reported
    return {"type": "ack", "request_id": request_id, "status": "accepted" if changed else "duplicate"}, reported


_ONE_MESSAGE_REFUSALS = frozenset(failure.code for failure in (
    AgentAuthFailure.REPLAYED, AgentAuthFailure.CLOCK_SKEW, AgentAuthFailure.BAD_SIGNATURE,
    AgentAuthFailure.BAD_REQUEST_SIGNATURE, AgentAuthFailure.SIGNED_BEFORE_START,
    AgentAuthFailure.BODY_ONLY_SIGNATURE, AgentAuthFailure.MISSING_SIGNATURE))
"""Refusals of one signed frame, not of the agent's credentials: the socket stays open."""


def _answered(request_id: Any, exc: Exception) -> dict[str, Any]:
    """The ``ack`` of a message whose handling raised ``exc``: what HTTP answers
    it with (``answer_to``), or a 500 under an incident the log explains (an
    actor that crashed on it logged why itself)."""
    found = answer_to(exc)
    if found is not None:
        answer, message = found
        return _nack(request_id, answer.status, answer.code, message)
    # An actor that crashed on it logged why itself.
    incident = uuid.uuid4().hex[:12] if isinstance(exc, ActorFailed) else log_incident(exc, "an agent socket's message")
    return _nack(request_id, 500, "internal_error",
                 f"internal error; the server log has the details under incident {incident}")


MAX_REQUEST_ID = 256
"""Characters of a ``request_id`` echoed in an ``ack``."""


def _request_id(envelope: Any) -> str | int | None:
    """The message's ``request_id`` to echo: a string or a number, as agents
    send them; anything else is not echoed (a list nested 300 deep could not
    be written back: orjson writes 255 levels, and the handler failed)."""
    value = envelope.get("request_id") if isinstance(envelope, dict) else None
    if isinstance(value, str):
        return value[:MAX_REQUEST_ID]
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _nack(request_id: Any, status: int, code: str, message: str) -> dict[str, Any]:
    return {"type": "ack", "request_id": request_id, "status": "rejected",
            "error": {"status": status, "code": code, "message": message}}


def _refused(request_id: Any, exc: ApiError) -> dict[str, Any]:
    """The ``ack`` of a message refused as a request would be with ``exc``;
    a refusal with a ``Retry-After`` (429, 503) says it as ``retry_after`` (seconds)."""
    answer = _nack(request_id, exc.status, exc.code, exc.message)
    if "Retry-After" in exc.headers:
        answer["error"]["retry_after"] = int(exc.headers["Retry-After"])
    return answer
