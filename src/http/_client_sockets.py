"""One client WebSocket served by a client actor (live views, users' events):
the handler only moves bytes. Frames the actor queued go out, frames the
client sends go to the actor; the socket closes when the actor, the server or
the client closes it.

One message the handler answers itself, whatever the actor: a socket opened
with a user token closes (4401) when the token expires, unless its client
sends a newer token of the same user first, ``{"type": "auth", "token":
"..."}`` (answered ``{"type": "auth", "payload": {"expires_at": ...}}``, or an
``error`` frame ``invalid_token`` that leaves the socket as it was): the
token is re-checked wherever it is used, and a socket goes on using it."""

from __future__ import annotations

import contextlib
import logging
import math
import time

import attrs
import orjson
import trio
from quart import Response, websocket

from trioscope.actors.client import FromClient
from trioscope.actors.client_link import GOING_AWAY, INTERNAL_ERROR, MESSAGE_TOO_BIG, ClientLink
from trioscope.actors.client_owner import OpenClient
from trioscope.domain.keepalive import is_pong
from trioscope.domain.live import error_frame, message
from trioscope.domain.rates import retry_after
from trioscope.domain.principals import InvalidToken, Principal, renewed
from trioscope.runtime import (
    ActorNotFound, ActorRef, ActorSpec, ActorStopped, AskTimeout, MailboxFull, StartFailed, TooManyChildren,
)

from trioscope.wire import rfc3339_millis

from . import _client_address, _rate_checks
from ._errors import error_response
from ._services import services

log = logging.getLogger(__name__)
CLOSE_TIMEOUT = 5.0
TOKEN_EXPIRED = 4401
"""Close code of a socket whose token expired: 4000 + the status a request with
it gets. The web UI signs in again on it."""
BUSY_RETRY_AFTER = 5
"""Seconds a client refused while live views start faster than they can is told to wait."""
MAX_CLIENT_MESSAGE = 64 * 1024
"""Browsers send small control messages (views, pongs); Hypercorn's own limit
is higher because agents send results over /ws/agent."""


@attrs.define
class _Holder:
    """Who a socket was opened by, renewed by the ``auth`` messages its client sends."""

    principal: Principal


async def serve_client_socket(link: ClientLink, spec: ActorSpec, *, subprotocol: str | None = None,
                              principal: Principal | None = None) -> Response | None:
    """Run one WebSocket whose client actor ``spec`` (under ``/root/clients``)
    decides what is sent: have the client owner start the actor (503 when the limit is reached), then
    accept (choosing ``subprotocol``) and move frames both ways until the
    actor, the server or the client closes. A socket opened with a user token
    (``principal``) closes (4401) when the token expires, or the newer one its
    client sent (module docstring)."""
    s = services()
    address = _client_address.client_source()
    cap = s.settings.websocket.max_clients_per_address
    if s.sockets_per_address.count(address) >= cap:
        s.metrics.refused("websockets_per_address")
        return error_response(503, "too_many_clients_from_address", f"this address already has its limit of {cap} "
                              "WebSocket clients (websocket.max_clients_per_address)", headers={"Retry-After": "10"})
    # One token from many addresses (IPv6 /64s are cheap) took every place of
    # websocket.max_clients: a user's sockets are capped wherever they come from.
    user = (principal.tenant, principal.user_id) if principal is not None else None
    user_cap = s.settings.websocket.max_clients_per_user
    if user is not None and s.sockets_per_user.count(user) >= user_cap:
        s.metrics.refused("websockets_per_user")
        return error_response(503, "too_many_clients_of_user", f"this user already has its limit of {user_cap} "
                              "WebSocket clients (websocket.max_clients_per_user)", headers={"Retry-After": "10"})
    s.sockets_per_address.take(address)
    if user is not None:
        s.sockets_per_user.take(user)
    # From the start request on, the actor is stopped by name however this
    # ends: a client that hangs up during the handshake cancels us while the
    # actor may still be starting, and it would never stop by itself.
    try:
        try:
            client = await s.client_owner.ask(OpenClient(spec), timeout=10.0)
        except TooManyChildren as exc:
            s.metrics.refused("websockets_total")
            return error_response(503, "too_many_clients", f"the server already has its limit of {exc.limit} "
                                  "WebSocket clients (websocket.max_clients)", headers={"Retry-After": "10"})
        except (MailboxFull, AskTimeout):
            # Live views are being opened faster than they start (a burst of
            # first views of a large topology): a client retrying at once would
            # only lengthen the queue.
            s.metrics.refused("websockets_starting")
            return error_response(503, "busy", "the server is opening too many live views at once; retry",
                                  headers={"Retry-After": str(BUSY_RETRY_AFTER)})
        except (StartFailed, ActorStopped):
            return error_response(503, "unavailable", "this stream is not available right now",
                                  headers={"Retry-After": "1"})
        await websocket.accept(subprotocol=subprotocol)
        s.links.add(link)
        async with trio.open_nursery() as nursery:
            # Until closed by the client actor (1008: too slow, no pong), by the
            # server stopping (1001) or by the actor's end (1011), each of which
            # cancels this nursery; a disconnect cancels us.
            link.cancel_on_close(nursery.cancel_scope)
            holder = _Holder(principal) if principal is not None else None
            nursery.start_soon(_read, client, link, holder, address)
            if holder is not None:
                nursery.start_soon(_close_on_expiry, link, holder)
            await _write(link)
            nursery.cancel_scope.cancel()
        # A client that reads nothing may not take even a close frame: bounded.
        with trio.move_on_after(CLOSE_TIMEOUT):
            await websocket.close(link.close_code or GOING_AWAY, link.close_reason)
    finally:
        link.handler_ended()  # what it held of its address's room goes now that nothing holds it
        s.sockets_per_address.give_back(address)
        if user is not None:
            s.sockets_per_user.give_back(user)
        s.links.discard(link)
        link.close(GOING_AWAY, "gone")  # its actor stops working for it at once (a reset being built, too)
        with trio.CancelScope(shield=True), trio.move_on_after(2):
            try:
                await s.clients.stop_child(spec.name)
            except (ActorNotFound, ActorStopped):
                pass
    return None


async def _read(client: ActorRef, link: ClientLink, holder: _Holder | None, address: str) -> None:
    """Hand the client's messages to its actor. Each counts against its
    address's request budget: one beyond it is dropped, answered with an
    ``error`` frame ``rate_limited``, and the socket goes unread for a while
    (``_rate_checks.read_pause``). Counted by nothing before, four sockets without a
    token sending 64 KiB messages as fast as they could (~100 MB/s) raised
    every other client's latency 4x."""
    ping_interval = services().settings.websocket.ping_interval
    pause = _rate_checks.read_pause(ping_interval)
    free_pong_at = -math.inf
    while True:
        data = await websocket.receive()
        if len(data) > MAX_CLIENT_MESSAGE:
            link.close(MESSAGE_TOO_BIG, f"messages are at most {MAX_CLIENT_MESSAGE} bytes")
            return
        now = trio.current_time()
        if now >= free_pong_at and is_pong(data):
            # The answer to the server's ping, one a ping at most: not charged (dropped for the
            # address's budget, a client that answers pings was closed for not answering them).
            free_pong_at = now + ping_interval / 2
            wait = 0.0
        else:
            wait = _rate_checks.charge_socket_message(address)
        if wait:
            with contextlib.suppress(trio.WouldBlock):  # a client that reads nothing learns nothing
                link.outbox.send_aside(error_frame("rate_limited", "too many messages from this address; the "
                                                   f"message was dropped; slow down (retry after {retry_after(wait)} s)"))
            await trio.sleep(pause)
            continue
        if holder is not None and _renew(link, holder, data):
            continue
        try:
            client.tell(FromClient(data))
        except MailboxFull:
            pass  # a client sending faster than we handle: its extra messages are dropped
        except ActorStopped:
            link.close(INTERNAL_ERROR, "internal error")
            return


_AUTH = b'"auth"'
"""In every renewal's text; parsed only then (a client's other messages are the actor's)."""


def _renew(link: ClientLink, holder: _Holder, data: str | bytes) -> bool:
    """Whether ``data`` was a renewal (``{"type": "auth", "token": ...}``),
    then answered: the holder's principal renewed, or an error frame."""
    raw = data.encode() if isinstance(data, str) else data
    if _AUTH not in raw:
        return False
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return False  # the actor answers what it cannot read
    if not isinstance(document, dict) or document.get("type") != "auth":
        return False
    token = document.get("token")
    try:
        if not isinstance(token, str) or not 0 < len(token) <= MAX_TOKEN:
            raise InvalidToken(f"token: expected the user token, a string of at most {MAX_TOKEN} characters")
        holder.principal = renewed(holder.principal, services().secret, token, now=time.time())
    except InvalidToken as exc:
        answer = error_frame("invalid_token", f"the token was not taken ({exc}); the socket goes on with the one it has")
    else:
        log.info("a WebSocket's token renewed", extra={"event": "websocket_token_renewed"})
        answer = message("auth", {"expires_at": rfc3339_millis(holder.principal.expires_at)})
    try:
        link.outbox.send_aside(answer)  # none of the actor's frames: its positions do not count it
    except trio.WouldBlock:
        pass  # a client that reads nothing learns nothing; its token was taken or not all the same
    return True


MAX_TOKEN = 4096
"""Characters of a token an ``auth`` message may carry (a user token is ~200)."""


EXPIRY_RECHECK = 60.0
"""Seconds a socket waits for its token's expiry before it reads the wall
clock again: the wall clock set forward (NTP fixing a clock that was behind,
a VM resumed) ends a token by as much sooner, which trio's clock, measuring
the wait, does not count."""


async def _close_on_expiry(link: ClientLink, holder: _Holder) -> None:
    # The wall clock says when a token expires; trio's clock measures the wait.
    # A renewal moves the expiry later: the wait is taken again from there.
    while (left := holder.principal.expires_at - time.time()) > 0:
        if left == math.inf:
            return
        await trio.sleep(min(left, EXPIRY_RECHECK))
    log.info("closing a WebSocket: its token expired", extra={"event": "websocket_token_expired"})
    link.close(TOKEN_EXPIRED, "token_expired")


async def _write(link: ClientLink) -> None:
    async for frame in link.frames:
        await websocket.send(frame)  # type: ignore[arg-type]  # a PreFramed goes on as ASGI "bytes" (Quart passes anything not a str so), sent by the WebSocket stream as the text frame it holds


def close_all(links: set[ClientLink]) -> None:
    """The server is stopping: every live connection closes with 1001 at once."""
    for link in list(links):
        link.close(GOING_AWAY, "server shutting down")
