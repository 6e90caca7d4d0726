"""``/api/v1/ws``: live topology updates. The handler only moves bytes: frames the
client actor queued go out, frames the browser sends go to the actor."""

from __future__ import annotations

import itertools
import logging

import trio
from quart import Blueprint, Response, websocket

from trioscope.actors.client import GOING_AWAY, INTERNAL_ERROR, ClientLink, FromClient, client_spec
from trioscope.domain.live import BadClientMessage, parse_view
from trioscope.runtime import ActorNotFound, ActorRef, ActorStopped, MailboxFull, StartFailed, TooManyChildren
from trioscope.system import HUB

from ._errors import error_response
from ._services import Services, services

log = logging.getLogger(__name__)
blueprint = Blueprint("live", __name__)
_names = itertools.count(1)


@blueprint.websocket("/api/v1/ws")
async def live() -> Response | None:
    """Live topology and report updates (WebSocket; ?view=hosts|containers|...)."""
    s = services()
    try:
        view = parse_view(websocket.args.get("view"))
    except BadClientMessage as exc:
        return error_response(400, "invalid_parameter", exc.message, details={"parameter": "view"})
    link = ClientLink(s.settings.websocket.buffer_size)
    name = f"ws-{next(_names)}"
    try:
        client = await s.clients.start_child(client_spec(name, link, HUB, view, s.settings, s.live))
    except TooManyChildren as exc:
        return error_response(503, "too_many_clients", f"the server already has its limit of {exc.limit} "
                              "live clients (websocket.max_clients)", headers={"Retry-After": "10"})
    except (StartFailed, ActorStopped):
        return error_response(503, "unavailable", "live updates are not available right now",
                              headers={"Retry-After": "1"})
    await websocket.accept()
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_write, link)
            nursery.start_soon(_close_when_needed, link, client, s, nursery.cancel_scope)
            await _read(client)
            nursery.cancel_scope.cancel()  # the client went away
    finally:
        with trio.CancelScope(shield=True), trio.move_on_after(2):
            try:
                await s.clients.stop_child(name)
            except (ActorNotFound, ActorStopped):
                pass
    return None


async def _read(client: ActorRef) -> None:
    while True:
        data = await websocket.receive()
        try:
            client.tell(FromClient(data))
        except MailboxFull:
            pass  # a client sending faster than we handle: its extra messages are dropped
        except ActorStopped:
            return


async def _write(link: ClientLink) -> None:
    async for frame in link.frames:
        await websocket.send(frame)


async def _close_when_needed(link: ClientLink, client: ActorRef, s: Services, handler: trio.CancelScope) -> None:
    """Close the socket when the actor asks (1008), the server stops (1001) or
    the actor died (1011)."""
    async with trio.open_nursery() as watchers:

        async def server_stopping() -> None:
            await s.stopping.wait()
            link.close(GOING_AWAY, "server shutting down")

        async def actor_gone() -> None:
            await client.wait_stopped()
            link.close(INTERNAL_ERROR, "internal error")

        watchers.start_soon(server_stopping)
        watchers.start_soon(actor_gone)
        await link.closed.wait()
        watchers.cancel_scope.cancel()
    assert link.close_code is not None
    await websocket.close(link.close_code, link.close_reason)
    handler.cancel()
