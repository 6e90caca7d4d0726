"""The owner of the WebSocket client actors (``/root/client_owner``).

A client WebSocket (live view, users' events) asks this actor to start its
client actor under ``/root/clients`` (``OpenClient``) and gets its ref, so the
HTTP edge never starts an actor itself. Refused, raised at the asker: the
server's limit of clients (``TooManyChildren``, 503), a client actor that
failed to start (``StartFailed``) or a server that is stopping (``ActorStopped``).
"""

from __future__ import annotations

from typing import Any

import attrs

from trioscope.runtime import Actor, ActorSpec, ActorStopped, Later, StartFailed, SupervisorRef, TooManyChildren


@attrs.frozen
class OpenClient:
    """Start the client actor ``spec`` (built by ``client_spec`` or
    ``event_client_spec``); answered with its ref once it runs."""

    spec: ActorSpec


class ClientOwnerActor(Actor):
    refusals = (TooManyChildren, StartFailed, ActorStopped)

    def __init__(self, *, clients_path: str) -> None:
        self.clients_path = clients_path

    async def on_start(self) -> None:
        self.clients: SupervisorRef = self.context.system.lookup(self.clients_path)

    async def handle(self, message: Any) -> Any:
        if isinstance(message, OpenClient):
            # Registered under its name now: a socket that gives up waiting
            # for this answer can still stop it by name. Answered once it
            # runs, while the next clients are registered: awaited here, each
            # start waited for the one before (a burst of live views on a
            # busy server got 503 busy after 10 s in line).
            return Later(self.clients.request_start(message.spec).wait)
        return await super().handle(message)
