"""The change feed (``/root/change_feed``): what other replicas commit, handed to
the actors that hold it here. Runs only with a PostgreSQL store (replicas);
with SQLite there is one process and nothing to follow.

Its background task follows the database's change notifications
(``trioscope.store.follow_changes``, its own connection) and sends each batch
to the actor's mailbox (waiting for room: back-pressure, never a drop). Per
batch, the actor:

* has the directory read changed deployments and agents again
  (``ReloadRecords``), first, so the commands that follow find them;
* takes each changed command as its newest notification carries it, or
  reads those the notifications had no room for (all of the batch in one
  query), publishes for each announced version the ``/ws/user`` events the
  replica that made the change published for its own users
  (``change_events``: the same events, computed from the stored command), and
  hands the commands to the queue owner (``CommandsChanged``, one message per batch), which updates
  the deployment's queue and hands it to a waiting poll;
* publishes for each app status kept the ``app_status`` event the replica
  that kept it published for its own users (the notification carries it);
* hands the alert changes (each an audit record the replica that told its
  users committed: carried by the notification, or the alert's newest record
  read back when it had no room) to the alerts actor (``Heard``), which tells
  this replica's users those it did not know of.

After every (re)connection it has the directory, the queues and the alerts
read again what they hold (changes committed meanwhile were not announced; their events are
lost, their state is not).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn

import attrs

from trioscope.domain.alerts import AlertNotice, notice_from_audit
from trioscope.domain.apps import app_status_event
from trioscope.domain.commands import Command, announced_events
from trioscope.domain.deployments import AgentDirectory
from trioscope.runtime import Actor, ActorRef, ActorSpec, Published
from trioscope.store import AuditEntry, Change, ChangeBatch, Connected, FeedEvent, StoreReader

from .alerts import LEDGER_TTL, Heard, ResyncAlerts
from .directory import GetPublished, ReloadAll, ReloadRecords
from .notifier import publish
from .queue_owner import CommandsChanged, ResyncQueues

log = logging.getLogger(__name__)

Follow = Callable[[Callable[[FeedEvent], Awaitable[None]]], Awaitable[NoReturn]]
"""Runs for ever, handing each feed event to its argument
(``functools.partial(follow_changes, database, origin)``)."""

RELOAD_TIMEOUT = 60.0
"""Seconds the directory and the queue owner may take to read everything again."""


@attrs.frozen
class Changes:
    changes: tuple[Change, ...]


class ChangeFeedActor(Actor):
    def __init__(self, follow: Follow, reader: StoreReader, *, directory_path: str, queue_owner_path: str,
                 notifier_path: str, alerts_path: str | None = None, clock: Callable[[], float] = time.time) -> None:
        """``alerts_path``: the alerts actor, started before this one (None: alert changes are not followed)."""
        self.clock = clock
        self.follow = follow
        self.reader = reader
        self.directory_path = directory_path
        self.queue_owner_path = queue_owner_path
        self.notifier_path = notifier_path
        self.alerts_path = alerts_path

    async def on_start(self) -> None:
        system = self.context.system
        self.directory: ActorRef = system.lookup(self.directory_path)
        self.queue_owner: ActorRef = system.lookup(self.queue_owner_path)
        self.notifier: ActorRef = system.lookup(self.notifier_path)
        self.alerts: ActorRef | None = None if self.alerts_path is None else system.lookup(self.alerts_path)
        self.agents: Published[AgentDirectory] = await self.directory.ask(GetPublished())
        self.context.start_soon(self.follow, self._deliver, name=f"{self.context.path} follow")

    async def _deliver(self, event: FeedEvent) -> None:
        await self.context.tell_self(event if isinstance(event, Connected) else Changes(tuple(event)))

    async def handle(self, message: Any) -> Any:
        if isinstance(message, Changes):
            await self._apply(message.changes)
            return None
        if isinstance(message, Connected):
            # Everything since the last look may have changed unannounced.
            await self.directory.ask(ReloadAll(), timeout=RELOAD_TIMEOUT)
            resumed = await self.queue_owner.ask(ResyncQueues(), timeout=RELOAD_TIMEOUT)
            if message.again and self.alerts is not None:  # at the first, the alerts actor has just read them
                await self.alerts.ask(ResyncAlerts(), timeout=RELOAD_TIMEOUT)
            if message.again:
                log.info("change feed: read deployments, agents and %d deployment(s) with open commands again",
                         resumed, extra={"event": "change_feed_resync"})
            return None
        return await super().handle(message)

    async def _apply(self, changes: tuple[Change, ...]) -> None:
        batch = ChangeBatch.of(changes)
        if batch.deployments or batch.agents:
            await self.directory.ask(ReloadRecords(batch.deployments, batch.agents), timeout=RELOAD_TIMEOUT)
        stored = await self.reader.commands(batch.unread())
        changed: list[Command] = []
        for command_id, announced in batch.versions.items():
            command = batch.carried.get(command_id) or stored.get(command_id)
            if command is None:
                continue  # pruned since: nobody holds it
            deployment = self.agents.value.deployments.get(command.deployment_hash)
            if deployment is not None:
                for event in announced_events(command, announced):
                    publish(self.notifier, deployment.tenant, deployment.user_id, event)
            changed.append(command)
        if changed:
            await self.queue_owner.send(CommandsChanged(tuple(changed)))  # waits for room: never dropped here
        for change in batch.apps:
            assert change.app is not None  # ChangeBatch.apps holds only those that carry it
            deployment = self.agents.value.deployments.get(change.deployment_hash)
            if deployment is not None:
                publish(self.notifier, deployment.tenant, deployment.user_id, app_status_event(
                    change.deployment_hash, change.id, change.app.status, change.app.updated_at))
        if batch.alerts and self.alerts is not None:
            await self._alerts(batch.alerts)

    async def _alerts(self, changes: tuple[Change, ...]) -> None:
        """Hands the alert changes on to the alerts actor, in commit order; one
        read for those whose notification had no room for their record (the
        alert's newest record: a later change of it, if any, is announced too)."""
        assert self.alerts is not None
        missing = [c.id for c in changes if c.alert is None]
        # By fingerprint, each tenant's newest record: a change names no tenant, and
        # two tenants' alerts may share a fingerprint (each is its own); the
        # ledger tells only what changed, so the other tenant's is no news.
        stored: dict[str | None, list[AuditEntry]] = {}
        # Only records the ledger could still hold (``LEDGER_TTL``): a tenant's alert last heard of days ago
        # would otherwise fire again with another tenant's change of the fingerprint.
        for record in await self.reader.latest_alerts(since=self.clock() - LEDGER_TTL, fingerprints=missing):
            stored.setdefault(record.entry.resource_id, []).append(record.entry)
        notices: list[AlertNotice] = []
        for change in changes:
            entries = [change.alert] if change.alert is not None else stored.get(change.id, [])
            for entry in entries:
                notice = notice_from_audit(entry.tenant, change.id, entry.action, entry.details)
                if notice is not None:
                    notices.append(notice)
        if notices:
            await self.alerts.send(Heard(tuple(notices)))  # waits for room: never dropped here


def change_feed_spec(follow: Follow, reader: StoreReader, *, directory_path: str, queue_owner_path: str,
                     notifier_path: str, alerts_path: str | None = None) -> ActorSpec:
    """Permanent: a crash reconnects (and reads everything again)."""
    return ActorSpec(
        name="change_feed",
        factory=lambda: ChangeFeedActor(follow, reader, directory_path=directory_path,
                                        queue_owner_path=queue_owner_path, notifier_path=notifier_path,
                                        alerts_path=alerts_path),
        mailbox_size=1024,
    )
