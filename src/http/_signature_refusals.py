"""Agent request signatures, checked with the clock and the replay window: RFC
9421 over the whole request (the probe's) and the status agent's HMAC of the
body alone; a refusal's message names what the request lacked in its scheme."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import attrs
from quart import has_request_context, request

from trioscope.domain.deployments import AgentAuthFailure, AgentRecord, signature_valid
from trioscope.wire import request_signing

from ._client_address import current_connection
from ._services import services

log = logging.getLogger(__name__)
MAX_CLOCK_SKEW = 300.0


@attrs.frozen
class Refusal:
    """An agent request refused: a domain failure's status and error code,
    with a message that names what this request lacked in the signature
    scheme it used (the domain's messages name the body-only scheme's headers)."""

    status: int
    code: str
    message: str

    @classmethod
    def of(cls, failure: AgentAuthFailure, message: str | None = None) -> Refusal:
        return cls(failure.status, failure.code, failure.message if message is None else message)


BODY_ONLY_HEADERS = ("X-Agent-Id", "X-Timestamp", "X-Request-Id", "X-Agent-Signature")
"""What the status agent's scheme sends (X-Agent-Signature: an HMAC of the body alone)."""
MAX_TIMESTAMP_DIGITS = 12
"""An X-Timestamp of more digits is far off any clock (clock_skew), and would overflow a float."""


def _listed(names: Sequence[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


_RFC_9421_SENDS = f"a request signed over the whole request (RFC 9421) sends {_listed(request_signing.SENT_HEADERS)}"
_BODY_ONLY_SENDS = ("a request signed with X-Agent-Signature (the body alone) sends X-Agent-Id, X-Timestamp (unix "
                    "seconds), X-Request-Id (a UUID) and X-Agent-Signature")
_RFC_9421_MESSAGES = {
    AgentAuthFailure.CLOCK_SKEW: f"the signature's created time (Signature-Input) is more than "
                                 f"{MAX_CLOCK_SKEW:g} s away from the server's clock",
    AgentAuthFailure.REPLAYED: "this signature's nonce (the request id, in Signature-Input) was already used; "
                               "sign each request with a new UUID",
}
"""The domain's messages of these failures name X-Timestamp and X-Request-Id,
which a request signed with RFC 9421 does not send."""


def _missing(names: Sequence[str], scheme_sends: str) -> Refusal:
    return Refusal.of(AgentAuthFailure.MISSING_SIGNATURE, f"missing {_listed(names)}: {scheme_sends}")


def _unsigned(body_only_accepted: bool) -> Refusal:
    """A request with no signature of either scheme: what signing it takes."""
    ways = _RFC_9421_SENDS + (f"; {_BODY_ONLY_SENDS}" if body_only_accepted else "")
    return Refusal.of(AgentAuthFailure.MISSING_SIGNATURE, f"the request is not signed: {ways}")


def _malformed_timestamp(timestamp: str) -> Refusal:
    """400 as for a malformed X-Request-Id: it says nothing of the clock."""
    shown = timestamp[:32] + ("..." if len(timestamp) > 32 else "")
    return Refusal.of(AgentAuthFailure.BAD_TIMESTAMP, f"{AgentAuthFailure.BAD_TIMESTAMP.message} "
                      f"(such as 1733300000), not {shown!r}")


async def signature_failure(found: AgentRecord, token: str, body: bytes, headers: Any,
                             target: tuple[str, str] | None = None) -> Refusal | None:
    """Why the request's signature does not hold, or None. Two schemes: RFC 9421
    over the whole request (``request_signing``, the probe's), and the status
    agent's HMAC of the body alone (``agents.accept_body_only_signatures``).
    ``target``: the method and URL an RFC 9421 signature covers, when they are
    not the connection's (a signed message inside a WebSocket)."""
    messages: dict[AgentAuthFailure, str] = {}
    rfc_9421 = request_signing.is_signed(headers)
    if rfc_9421:
        missing = request_signing.missing_headers(headers)
        if missing:
            return _missing(missing, _RFC_9421_SENDS)
        method, url = target or _signed_target()
        try:
            signed = request_signing.verify(method, url, headers, body, agent_id=found.id, token=token)
        except request_signing.BadRequestSignature as exc:
            log.debug("request signature refused for agent %s: %s", found.id, exc)
            return Refusal.of(AgentAuthFailure.BAD_REQUEST_SIGNATURE)
        signed_at, request_id = signed.created, signed.nonce
        messages = _RFC_9421_MESSAGES
    else:
        accepted = services().settings.agents.accept_body_only_signatures
        if not any(headers.get(name) for name in BODY_ONLY_HEADERS[1:]):
            return _unsigned(accepted)
        if not accepted:
            return Refusal.of(AgentAuthFailure.BODY_ONLY_SIGNATURE)
        missing = tuple(name for name in BODY_ONLY_HEADERS if not headers.get(name))
        if missing:
            return _missing(missing, _BODY_ONLY_SENDS)
        timestamp, given_id, signature = (headers.get(h) for h in BODY_ONLY_HEADERS[1:])
        normalised = request_signing.normalise_request_id(given_id)
        if normalised is None:
            return Refusal.of(AgentAuthFailure.BAD_REQUEST_ID)
        # Unix seconds in digits, as the status agent sends them: int() would
        # also take "+5", " 5" and "1_0"; a float was answered clock_skew,
        # which sent its sender to look at a clock that was right.
        if not (timestamp.isascii() and timestamp.isdigit()):
            return _malformed_timestamp(timestamp)
        if not signature_valid(token, body, signature):
            return Refusal.of(AgentAuthFailure.BAD_SIGNATURE)
        if len(timestamp) > MAX_TIMESTAMP_DIGITS:
            return Refusal.of(AgentAuthFailure.CLOCK_SKEW)
        signed_at, request_id = int(timestamp), normalised
    if abs(time.time() - signed_at) > MAX_CLOCK_SKEW:
        return Refusal.of(AgentAuthFailure.CLOCK_SKEW, messages.get(AgentAuthFailure.CLOCK_SKEW))
    gate = services().gate
    if signed_at < gate.replay.signed_since:
        return _signed_before_start(signed_at, gate.replay.signed_since, time.time(), rfc_9421=rfc_9421)
    # Recorded only once the signature proved the sender holds the token, so
    # nobody else can burn an agent's request ids. Normalised: the same UUID in
    # upper case, braces or without hyphens is the same request id.
    if not await gate.replay.first_use(f"{found.id}/{request_id}", signed_at):
        return Refusal.of(AgentAuthFailure.REPLAYED, messages.get(AgentAuthFailure.REPLAYED))
    return None


def _signed_before_start(signed_at: float, started: float, now: float, *, rfc_9421: bool) -> Refusal:
    """A request signed before the replay window's start (this process's, with
    SQLite). Its sender is told how far before, and that its clock may be that
    far behind: a clock slow by N s (within ``MAX_CLOCK_SKEW``) has every
    request refused for the first N s after each restart, and "sign a new
    request" alone sent it signing again with the same slow clock."""
    signed = ("the signature's created time (Signature-Input)" if rfc_9421 else "X-Timestamp")
    nonce = "its nonce (the request id)" if rfc_9421 else "its X-Request-Id"
    return Refusal.of(AgentAuthFailure.SIGNED_BEFORE_START, (
        f"{signed}, {signed_at:.0f}, is {started - signed_at:.0f} s before this server started, so {nonce} cannot "
        f"be checked against the requests served before; sign a new request. If it was signed just now, the "
        f"agent's clock may be behind the server's by {max(0.0, now - signed_at):.0f} s: its requests are refused "
        "so until the server has run that long (set the agent's clock by NTP)"))


def _signed_target() -> tuple[str, str]:
    """Method and URL of the request as the agent signed them: the path and
    query exactly as they came on the wire (a WebSocket handshake is a GET)."""
    connection = current_connection()
    scope = connection.scope
    raw_path = scope.get("raw_path") or scope.get("path", "").encode()
    method = request.method if has_request_context() else "GET"
    return method, request_signing.target(raw_path.decode("latin-1"), scope.get("query_string", b"").decode("latin-1"))
