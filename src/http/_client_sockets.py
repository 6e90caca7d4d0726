"""One client WebSocket served by a client actor (live views, users' events):
the handler only moves bytes. Frames the actor queued go out, frames the
client sends go to the actor; the socket closes when the actor, the server or
the client closes it."""

from __future__ import annotations

import logging
import math
import time

import trio
from quart import Response, websocket

from trioscope.actors.client import GOING_AWAY, INTERNAL_ERROR, MESSAGE_TOO_BIG, ClientLink, FromClient
from trioscope.actors.client_owner import OpenClient
from trioscope.runtime import (
    ActorNotFound, ActorRef, ActorSpec, ActorStopped, AskTimeout, MailboxFull, StartFailed, TooManyChildren,
)

from . import _gate
from ._errors import error_response
from ._services import services

log = logging.getLogger(__name__)
CLOSE_TIMEOUT = 5.0
TOKEN_EXPIRED = 4401
"""Close code of a socket whose token expired: 4000 + the status a request with
it gets. The web UI signs in again on it."""
MAX_CLIENT_MESSAGE = 64 * 1024
"""Browsers send small control messages (views, pongs); Hypercorn's own limit
is higher because agents send results over /ws/agent."""


async def serve_client_socket(link: ClientLink, spec: ActorSpec, *, subprotocol: str | None = None,
                              expires_at: float | None = None) -> Response | None:
    """Run one WebSocket whose client actor ``spec`` (under ``/root/clients``)
    decides what is sent: have the client owner start the actor (503 when the limit is reached), then
    accept (choosing ``subprotocol``) and move frames both ways until the
    actor, the server or the client closes. A socket opened with a user token
    closes (4401) when the token expires (unix seconds ``expires_at``): the
    token is checked when it is used, and a socket keeps using it."""
    s = services()
    address = _gate.client_source()
    cap = s.settings.websocket.max_clients_per_address
    if s.sockets_per_address[address] >= cap:
        s.metrics.refused("websockets_per_address")
        return error_response(503, "too_many_clients_from_address", f"this address already has its limit of {cap} "
                              "WebSocket clients (websocket.max_clients_per_address)", headers={"Retry-After": "10"})
    s.sockets_per_address[address] += 1
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
        except (StartFailed, ActorStopped, MailboxFull, AskTimeout):
            return error_response(503, "unavailable", "this stream is not available right now",
                                  headers={"Retry-After": "1"})
        await websocket.accept(subprotocol=subprotocol)
        s.links.add(link)
        async with trio.open_nursery() as nursery:
            # Until closed by the client actor (1008: too slow, no pong), by the
            # server stopping (1001) or by the actor's end (1011), each of which
            # cancels this nursery; a disconnect cancels us.
            link.cancel_on_close(nursery.cancel_scope)
            nursery.start_soon(_read, client, link)
            if expires_at is not None and expires_at != math.inf:
                nursery.start_soon(_close_on_expiry, link, expires_at)
            await _write(link)
            nursery.cancel_scope.cancel()
        # A client that reads nothing may not take even a close frame: bounded.
        with trio.move_on_after(CLOSE_TIMEOUT):
            await websocket.close(link.close_code or GOING_AWAY, link.close_reason)
    finally:
        link.handler_ended()  # what it held of its address's room goes now that nothing holds it
        s.sockets_per_address[address] -= 1
        if s.sockets_per_address[address] <= 0:
            del s.sockets_per_address[address]  # one entry per address with sockets open, no more
        s.links.discard(link)
        link.close(GOING_AWAY, "gone")  # its actor stops working for it at once (a reset being built, too)
        with trio.CancelScope(shield=True), trio.move_on_after(2):
            try:
                await s.clients.stop_child(spec.name)
            except (ActorNotFound, ActorStopped):
                pass
    return None


async def _read(client: ActorRef, link: ClientLink) -> None:
    while True:
        data = await websocket.receive()
        if len(data) > MAX_CLIENT_MESSAGE:
            link.close(MESSAGE_TOO_BIG, f"messages are at most {MAX_CLIENT_MESSAGE} bytes")
            return
        try:
            client.tell(FromClient(data))
        except MailboxFull:
            pass  # a client sending faster than we handle: its extra messages are dropped
        except ActorStopped:
            link.close(INTERNAL_ERROR, "internal error")
            return


async def _close_on_expiry(link: ClientLink, expires_at: float) -> None:
    # The wall clock says when a token expires; trio's clock measures the wait.
    await trio.sleep(max(0.0, expires_at - time.time()))
    log.info("closing a WebSocket: its token expired", extra={"event": "websocket_token_expired"})
    link.close(TOKEN_EXPIRED, "token_expired")


async def _write(link: ClientLink) -> None:
    async for frame in link.frames:
        await websocket.send(frame)


def close_all(links: set[ClientLink]) -> None:
    """The server is stopping: every live connection closes with 1001 at once."""
    for link in list(links):
        link.close(GOING_AWAY, "server shutting down")
