"""``/api/v1/ws``: live topology updates. The handler only moves bytes: frames the
client actor queued go out, frames the browser sends go to the actor.

The handshake builds nothing: it is answered as soon as the client actor has
started, and the view follows. A client waiting for its first view counts
against ``websocket.max_waiting_clients`` (503 beyond it), and first views
start at most ``websocket.first_views_per_second`` (``ViewAdmission``), so a
burst of connections takes a bounded share of the server."""

from __future__ import annotations

import itertools
import logging
import math
import time

import trio
from quart import Blueprint, Response, g, websocket

from trioscope.actors.client import (
    GOING_AWAY, INTERNAL_ERROR, MESSAGE_TOO_BIG, ClientLink, FromClient, client_spec,
)
from trioscope.domain.live import BadClientMessage, Visibility, parse_view
from trioscope.domain.principals import Principal
from trioscope.runtime import (
    ActorNotFound, ActorRef, ActorSpec, ActorStopped, MailboxFull, StartFailed, TooManyChildren,
)
from trioscope.system import HUB

from . import _gate
from ._errors import ApiError, error_response
from ._services import services

log = logging.getLogger(__name__)
blueprint = Blueprint("live", __name__)
CLOSE_TIMEOUT = 5.0
TOKEN_EXPIRED = 4401
"""Close code of a socket whose token expired: 4000 + the status a request with
it gets. The web UI signs in again on it."""
MAX_CLIENT_MESSAGE = 64 * 1024
"""Browsers send small control messages (views, pongs); Hypercorn's own limit
is higher because agents send results over /ws/agent."""
_names = itertools.count(1)


@blueprint.websocket("/api/v1/ws")
async def live() -> Response | None:
    """Live topology and report updates (WebSocket; ?view=hosts|containers|...)."""
    s = services()
    try:
        await _gate.check_address_rate()
        await _gate.protected_read()
    except ApiError as exc:
        return error_response(exc.status, exc.code, exc.message, exc.details, exc.headers)
    try:
        view = parse_view(websocket.args.get("view"))
    except BadClientMessage as exc:
        return error_response(400, "invalid_parameter", exc.message, details={"parameter": "view"})
    name = f"ws-{next(_names)}"
    reader: Principal | None = g.get("reader")
    may_see = await _gate.live_reporter_check()
    visibility = Visibility(may_see) if may_see is not None else None
    admission = s.first_views
    first_view_at = admission.enter(trio.current_time())
    if first_view_at is None:
        s.metrics.refused("websockets_waiting")
        return error_response(503, "too_many_waiting_clients", f"{admission.max_waiting} WebSocket clients are "
                              "already waiting for their first view (websocket.max_waiting_clients)",
                              headers={"Retry-After": "2"})
    # From here on the client counts as waiting until its first view has been
    # written to it, or it is gone, whichever comes first.
    link = ClientLink(s.settings.websocket.buffer_size, on_first_view=admission.leave)
    try:
        return await serve_client_socket(
            link, client_spec(name, link, HUB, view, s.settings, s.live, visibility, first_view_at),
            subprotocol=_gate.chosen_subprotocol(), expires_at=reader.expires_at if reader is not None else None)
    finally:
        link.first_view_done()


async def serve_client_socket(link: ClientLink, spec: ActorSpec, *, subprotocol: str | None = None,
                              expires_at: float | None = None) -> Response | None:
    """Run one WebSocket whose client actor ``spec`` (under ``/root/clients``)
    decides what is sent: start the actor (503 when the limit is reached), then
    accept (choosing ``subprotocol``) and move frames both ways until the
    actor, the server or the client closes. A socket opened with a user token
    closes (4401) when the token expires (unix seconds ``expires_at``): the
    token is checked when it is used, and a socket keeps using it."""
    s = services()
    address = _gate.client_address()
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
            client = await s.clients.start_child(spec)
        except TooManyChildren as exc:
            s.metrics.refused("websockets_total")
            return error_response(503, "too_many_clients", f"the server already has its limit of {exc.limit} "
                                  "WebSocket clients (websocket.max_clients)", headers={"Retry-After": "10"})
        except (StartFailed, ActorStopped):
            return error_response(503, "unavailable", "this stream is not available right now",
                                  headers={"Retry-After": "1"})
        await websocket.accept(subprotocol=subprotocol)
        s.links.add(link)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_write, link)
            nursery.start_soon(_read, client, link)
            if expires_at is not None and expires_at != math.inf:
                nursery.start_soon(_close_on_expiry, link, expires_at)
            # Closed by the client actor (1008: too slow, no pong), by the server
            # stopping (1001) or by the actor's end (1011); a disconnect cancels us.
            await link.closed.wait()
            nursery.cancel_scope.cancel()
        # A client that reads nothing may not take even a close frame: bounded.
        with trio.move_on_after(CLOSE_TIMEOUT):
            await websocket.close(link.close_code or GOING_AWAY, link.close_reason)
    finally:
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
