"""Command-service events for users' WebSockets.

The notifier (``/root/notifier``) keeps which event-client actors watch which
tenant; queue and directory actors tell it what happened, encoded once as a
frame, and it tells each watcher. An event client (one per ``/ws/user`` socket,
under ``/root/clients``) passes on what its user may see into the socket's
bounded outbox, and closes the socket (1008) when the user stops reading.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from typing import Any

import attrs
import orjson
import trio

from trioscope.runtime import Actor, ActorRef, ActorSpec, ActorStopped, MailboxFull, Restart

from .client import POLICY_VIOLATION, ClientLink, FromClient

log = logging.getLogger(__name__)


@attrs.frozen
class Watch:
    tenant: str
    client: ActorRef


@attrs.frozen
class Unwatch:
    tenant: str
    client: ActorRef


@attrs.frozen
class Publish:
    """An event of ``tenant`` about a deployment of ``owner`` (the user it
    belongs to); with no owner (a system alert), for every user of the tenant."""

    tenant: str
    owner: str | None
    event: dict[str, Any]


@attrs.frozen
class Notice:
    owner: str | None
    frame: str


class NotifierActor(Actor):
    def __init__(self) -> None:
        self.watchers: dict[str, set[ActorRef]] = defaultdict(set)

    async def handle(self, message: Any) -> Any:
        if isinstance(message, Publish):
            watchers = self.watchers.get(message.tenant)
            if not watchers:
                return None
            notice = Notice(message.owner, orjson.dumps(message.event).decode())
            for client in list(watchers):
                try:
                    client.tell(notice)
                except MailboxFull:
                    pass  # that client is far behind; its actor closes it
                except ActorStopped:
                    watchers.discard(client)
        elif isinstance(message, Watch):
            self.watchers[message.tenant].add(message.client)
        elif isinstance(message, Unwatch):
            watchers = self.watchers.get(message.tenant)
            if watchers is not None:
                watchers.discard(message.client)
                if not watchers:
                    del self.watchers[message.tenant]
        else:
            return await super().handle(message)
        return None


def publish(notifier: ActorRef | None, tenant: str, owner: str | None, event: dict[str, Any]) -> None:
    """Tell the notifier, never waiting: events are best-effort, state is in the store."""
    if notifier is None:
        return
    try:
        notifier.tell(Publish(tenant, owner, event))
    except (MailboxFull, ActorStopped):
        log.warning("event dropped: the notifier is %s", "busy" if notifier.alive else "stopped")


class EventClientActor(Actor):
    """One user's WebSocket: events of their tenant that they may see."""

    def __init__(self, link: ClientLink, notifier_path: str, *, tenant: str, user_id: str, admin: bool) -> None:
        self.link = link
        self.notifier_path = notifier_path
        self.tenant = tenant
        self.user_id = user_id
        self.admin = admin

    async def on_start(self) -> None:
        self.notifier: ActorRef = self.context.system.lookup(self.notifier_path)
        self.notifier.tell(Watch(self.tenant, self.context.ref))

    async def on_stop(self) -> None:
        try:
            self.notifier.tell(Unwatch(self.tenant, self.context.ref))
        except (MailboxFull, ActorStopped):
            pass

    async def handle(self, message: Any) -> Any:
        if isinstance(message, Notice):
            if self.admin or message.owner is None or message.owner == self.user_id:
                self._send(message.frame)
        elif isinstance(message, FromClient):
            if _is_ping(message.data):
                self._send('{"type":"pong"}')
        else:
            return await super().handle(message)
        return None

    def _send(self, frame: str) -> None:
        try:
            self.link.outbox.send_nowait(frame)
        except trio.WouldBlock:  # the user stopped reading
            self.link.close(POLICY_VIOLATION, "too slow: events were not read")
            self.context.stop()


def _is_ping(data: str | bytes) -> bool:
    if len(data) > 256:
        return False
    try:
        message = orjson.loads(data)
    except orjson.JSONDecodeError:
        return False
    return isinstance(message, dict) and message.get("type") == "ping"


def event_client_spec(name: str, link: ClientLink, notifier_path: str, *, tenant: str, user_id: str,
                      admin: bool) -> ActorSpec:
    return ActorSpec(
        name=name,
        factory=lambda: EventClientActor(link, notifier_path, tenant=tenant, user_id=user_id, admin=admin),
        restart=Restart.TEMPORARY,
        mailbox_size=256,
        shutdown_timeout=1.0,
    )
