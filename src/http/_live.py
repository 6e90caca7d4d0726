"""``/api/v1/ws``: live topology updates. The handler only moves bytes
(``_client_sockets``): frames the client actor queued go out, frames the
browser sends go to the actor.

The handshake builds nothing: it is answered as soon as the client actor has
started, and the view follows. A client waiting for its first view counts
against ``websocket.max_waiting_clients`` (503 beyond it), and first views
start at most ``websocket.first_views_per_second`` (``ViewAdmission``), so a
burst of connections takes a bounded share of the server. Every reset after
that (and the first view too) is built on its address's turn, and held
against its address's room until read (``Services.reset_turns``): the
clients of one address, however many, take their share of the server's time
and memory."""

from __future__ import annotations

import itertools

import trio
from quart import Blueprint, Response, g, websocket

from trioscope.actors.client import client_spec
from trioscope.actors.client_link import ClientLink
from trioscope.domain.live import BadClientMessage, Visibility, parse_view
from trioscope.domain.principals import Principal
from trioscope.domain.topology import View, node_scope
from trioscope.system import HUB

from . import _client_address, _gate, _rate_checks, _tokens
from ._catching_up import views_caught_up
from ._client_sockets import serve_client_socket
from ._errors import ApiError, error_response
from ._openapi import Auth, choice, documented
from ._services import services

blueprint = Blueprint("live", __name__)
_names = itertools.count(1)
VIEWS = ("all", *(view.value for view in View))
"""What ``?view=`` may be (``parse_view``)."""


async def _admitted(address: str) -> float | None:
    """``ViewAdmission.enter`` for a client from ``address``, waiting up to
    ``websocket.address_wait`` while only its address's share is full; None:
    refused. 100 clients of one address connecting at once (a wall of
    dashboards, a load test) had 80 refused at once, though each first view
    took a fraction of a second. A handshake held meanwhile costs a
    connection, which ``--max-connections-per-address`` bounds."""
    s = services()
    deadline = trio.current_time() + s.settings.websocket.address_wait
    while True:
        first_view_at = s.first_views.enter(trio.current_time(), address)
        if first_view_at is not None or s.first_views.full_for(address) != "address":
            return first_view_at
        with trio.move_on_at(deadline):
            await s.first_view_room.park()
            continue
        return None


@blueprint.websocket("/api/v1/ws")
@documented(auth=Auth.READ, query=(choice("view", VIEWS, "what the live view shows: all (the default) is the whole topology"),))
async def live() -> Response | None:
    """Live topology and report updates (WebSocket; ?view=hosts|containers|...)."""
    s = services()
    try:
        await _rate_checks.check_address_rate()
        await _gate.protected_read()
        views_caught_up()
    except ApiError as exc:
        return error_response(exc.status, exc.code, exc.message, exc.details, exc.headers)
    try:
        view = parse_view(websocket.args.get("view"))
    except BadClientMessage as exc:
        return error_response(400, "invalid_parameter", exc.message, details={"parameter": "view"})
    name = f"ws-{next(_names)}"
    reader: Principal | None = g.get("reader")
    may_see = await _gate.live_reporter_check()
    visibility = Visibility(may_see, node_scope(reader.tenant)) if may_see is not None and reader is not None else None
    admission = s.first_views
    address = _client_address.client_source()
    first_view_at = await _admitted(address)
    if first_view_at is None:
        if admission.full_for(address) == "address":
            s.metrics.refused("websockets_waiting_address")
            return error_response(503, "too_many_waiting_clients", f"{admission.max_per_address} WebSocket clients "
                                  "from your address are waiting for their first view, and none had it within "
                                  f"{s.settings.websocket.address_wait:g} s (websocket.max_waiting_clients_per_address, "
                                  "websocket.address_wait)",
                                  headers={"Retry-After": "2"})
        s.metrics.refused("websockets_waiting")
        return error_response(503, "too_many_waiting_clients", f"{admission.max_waiting} WebSocket clients are "
                              "already waiting for their first view (websocket.max_waiting_clients)",
                              headers={"Retry-After": "2"})
    # From here on the client counts as waiting until its first view has been
    # written to it, or it is gone, whichever comes first.
    link = ClientLink(s.settings.websocket.buffer_size, on_first_view=lambda: s.first_view_left(address))
    tenant = reader.tenant if reader is not None else None
    if tenant is not None:
        s.live_views.take(tenant)
    try:
        return await serve_client_socket(
            link, client_spec(name, link, HUB, view, s.settings, s.live, visibility, first_view_at,
                              address=address, turns=s.reset_turns),
            subprotocol=_tokens.chosen_subprotocol(), principal=reader)
    finally:
        link.first_view_done()
        if tenant is not None:
            s.live_views.give_back(tenant)
