"""The change feed actor: what other replicas committed reaches this replica's
queues and users, from the notifications' own rows whenever they carry them,
and from one read of the store per batch for those they do not."""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, NoReturn

import attrs
import trio

from tests.store.test_protocol import command, deployment
from trioscope.actors.change_feed import change_feed_spec
from trioscope.actors.directory import GetPublished
from trioscope.actors.queue_owner import CommandsChanged, ResyncQueues
from trioscope.domain.commands import Command, CommandEvent
from trioscope.domain.deployments import AgentDirectory
from trioscope.runtime import Actor, ActorSpec, Published, SupervisorSpec, open_actor_system
from trioscope.store import Change, FeedEvent
from tests.waiting import eventually


class Recorder(Actor):
    """Stands in for the directory, the queue owner and the notifier: keeps what it is sent."""

    def __init__(self, published: Published[AgentDirectory], seen: list[Any]) -> None:
        self.published = published
        self.seen = seen

    async def handle(self, message: Any) -> Any:
        if isinstance(message, GetPublished):
            return self.published
        self.seen.append(message)
        return 0 if isinstance(message, ResyncQueues) else None


@attrs.define
class CountingReader:
    """The store as the feed reads it: how many queries, of which commands."""

    stored: dict[str, Command]
    reads: list[list[str]] = attrs.Factory(list)

    async def commands(self, command_ids: Sequence[str]) -> dict[str, Command]:
        if command_ids:
            self.reads.append(list(command_ids))
        return {i: self.stored[i] for i in command_ids if i in self.stored}


def change(c: Command, *, carried: bool) -> Change:
    return Change(origin="other", kind="command", id=c.id, deployment_hash=c.deployment_hash,
                  version=len(c.history), command=c if carried else None)


async def feed(events: list[FeedEvent], reader: CountingReader, changed: int) -> tuple[list[Any], list[Any]]:
    """What the queue owner and the notifier were sent once the feed handed on
    ``events`` and the owner heard of ``changed`` commands."""
    directory = AgentDirectory()
    directory.put_deployment(deployment("h1"))
    owner_seen: list[Any] = []
    notifier_seen: list[Any] = []

    async def follow(deliver: Callable[[FeedEvent], Awaitable[None]]) -> NoReturn:
        for event in events:
            await deliver(event)
        await trio.sleep(math.inf)
        raise AssertionError("unreachable")

    def recorder(name: str, seen: list[Any]) -> ActorSpec:
        return ActorSpec(name=name, factory=lambda: Recorder(Published(directory), seen))

    tree = SupervisorSpec(name="root", children=[
        recorder("directory", []), recorder("queue_owner", owner_seen), recorder("notifier", notifier_seen),
        change_feed_spec(follow, reader, directory_path="/root/directory",  # type: ignore[arg-type]  # the reader's one read
                         queue_owner_path="/root/queue_owner", notifier_path="/root/notifier")])

    async def heard() -> bool:
        return sum(len(m.commands) for m in owner_seen if isinstance(m, CommandsChanged)) >= changed

    async with open_actor_system(tree):
        await eventually(heard)
    return owner_seen, notifier_seen


async def test_commands_carried_by_their_notifications_are_not_read_back() -> None:
    queued = command(1)
    sent = queued.apply(CommandEvent.DELIVER, 102.0)
    reader = CountingReader({})
    owner_seen, notifier_seen = await feed([[change(queued, carried=True), change(sent, carried=True)]], reader, 1)
    assert reader.reads == []
    assert owner_seen == [CommandsChanged((sent,))]
    # Each announced version's events, as the replica that made the change published them.
    assert [(p.event["type"], p.event["status"]) for p in notifier_seen] == [("command_progress", "queued"),
                                                                            ("command_progress", "sent")]


async def test_commands_without_their_row_are_read_in_one_query() -> None:
    one, two = command(1), command(2)
    two_sent = two.apply(CommandEvent.DELIVER, 103.0)
    three = command(3)
    # cmd_2's newest change came without its row (too large): the older row carried will not do.
    reader = CountingReader({"cmd_1": one, "cmd_2": two_sent})
    owner_seen, _ = await feed([[change(one, carried=False), change(two, carried=True),
                                 change(two_sent, carried=False), change(three, carried=True)]], reader, 3)
    assert reader.reads == [["cmd_1", "cmd_2"]]
    assert owner_seen == [CommandsChanged((one, two_sent, three))]  # one message for the batch


async def test_an_alert_change_without_its_record_tells_every_tenants_alert_of_that_fingerprint() -> None:
    """A change names no tenant: with its record left out of the notification,
    the feed read the newest record of the fingerprint and kept one tenant's,
    so another tenant's alert of the same fingerprint was taken for it."""
    from trioscope.actors.alerts import Heard
    from trioscope.store import AuditEntry, AuditRecord

    def record(number: int, tenant: str) -> AuditRecord:
        details = {"alert": "DiskFull", "severity": "warning", "summary": f"{tenant}'s disk", "source": "alertmanager",
                   "labels": {"tenant": tenant}}
        return AuditRecord(number, AuditEntry(at=time.time() + number, tenant=tenant, actor="alertmanager",
                                              action="alert.firing", resource_type="alert",
                                              resource_id="deadbeefdeadbeef", details=details))

    @attrs.define
    class AlertReader(CountingReader):
        async def latest_alerts(self, *, since: float | None = None,
                                fingerprints: Sequence[str] | None = None) -> list[AuditRecord]:
            assert since is not None  # records the ledger could still hold, not a tenant's of days ago
            return [r for r in (record(1, "ta"), record(2, "tb"), record(-3 * 86400, "tc"))
                    if fingerprints == ["deadbeefdeadbeef"] and r.entry.at >= since]

    heard: list[Any] = []

    async def follow(deliver: Callable[[FeedEvent], Awaitable[None]]) -> NoReturn:
        await deliver([Change(origin="other", kind="alert", id="deadbeefdeadbeef", deployment_hash="",
                              version=None)])
        await trio.sleep(math.inf)
        raise AssertionError("unreachable")

    published = Published(AgentDirectory())
    tree = SupervisorSpec(name="root", children=[
        *(ActorSpec(name=name, factory=lambda seen=seen: Recorder(published, seen))
          for name, seen in (("directory", []), ("queue_owner", []), ("notifier", []), ("alerts", heard))),
        change_feed_spec(follow, AlertReader({}), directory_path="/root/directory",  # type: ignore[arg-type]  # the reader's two reads
                         queue_owner_path="/root/queue_owner", notifier_path="/root/notifier",
                         alerts_path="/root/alerts")])
    async with open_actor_system(tree):
        await eventually(lambda: _some(heard))
    [message] = heard
    assert isinstance(message, Heard)
    assert sorted((n.tenant, n.summary) for n in message.notices) == [("ta", "ta's disk"), ("tb", "tb's disk")]


async def _some(items: list[Any]) -> bool:
    return bool(items)
