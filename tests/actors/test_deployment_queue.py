"""The deployment queue actor with the real store: crashes lose nothing, and a
command goes to exactly one poll."""

from __future__ import annotations

import time

import attrs
import trio
import pytest

from tests.conftest import settings_in
from trioscope.actors.deployment_queue import Create, Poll, Snapshot, Undeliverable, Waiter, Withdraw, queue_spec
from trioscope.actors.directory import CreateDeployment
from trioscope.domain.commands import Command, CommandStatus, Priority, new_command
from trioscope.runtime import ActorRef, open_actor_system
from trioscope.store import AuditEntry, SqliteReader, StoreReader
from trioscope.system import DIRECTORY, QUEUES, STORE, database_path, supervision_tree


@attrs.frozen
class Poison:
    """No actor handles this: it crashes whoever receives it."""


def audit(action: str) -> AuditEntry:
    return AuditEntry(at=time.time(), tenant="t", actor="user:u", action=action)


def command(deployment_hash: str, n: int) -> Command:
    return new_command(command_id=f"cmd_{n}", deployment_hash=deployment_hash, tenant="t", type="restart",
                       parameters={}, priority=Priority.NORMAL, created_by="u", now=time.time(), schedule_at=None,
                       timeout_seconds=300, requires_confirmation=False, sequence=0)


@pytest.fixture
def settings(tmp_path):
    """No grace after a command's timeout: deadlines come within a second or two."""
    base = settings_in(tmp_path)
    return attrs.evolve(base, commands=attrs.evolve(base.commands, timeout_grace=0.0))


async def open_queue(settings):
    """(deployment hash, its queue actor, reader, system) in a running system."""
    reader = StoreReader(database_path(settings))
    async with open_actor_system(supervision_tree(settings, reader=reader)) as system:
        deployment, _ = await system.lookup(DIRECTORY).ask(CreateDeployment("t", "u", {}, audit("deployment.create")))
        spec = queue_spec(deployment.hash, settings, store=system.lookup(STORE), reader=reader)
        yield deployment.hash, system.lookup(QUEUES).ensure_child(spec), reader, system


@pytest.fixture
async def queue(settings):
    async for opened in open_queue(settings):
        yield opened


@pytest.fixture
async def expiring(tmp_path):
    """As ``queue``, with a delivery deadline of one second."""
    base = settings_in(tmp_path)
    settings = attrs.evolve(base, commands=attrs.evolve(base.commands, delivery_deadline=1.0))
    async for opened in open_queue(settings):
        yield (*opened, settings)


async def test_a_crash_mid_poll_loses_neither_queued_nor_new_commands(queue) -> None:
    deployment_hash, ref, reader, _ = queue
    ref: ActorRef
    waiting = Waiter()
    assert await ref.ask(Poll(waiting)) is None
    await ref.ask(Create(command(deployment_hash, 1), audit("command.create")))
    assert waiting.ready.is_set() and waiting.delivery is not None  # handed over at once
    ref.tell(Poison())  # crash while another poll is about to wait
    ref.tell(Create(command(deployment_hash, 2), audit("command.create")))  # queued behind the crash
    second = await ref.ask(Poll(Waiter()))
    assert second is not None and second.id == "cmd_2" and second.status is CommandStatus.SENT
    # The restarted actor never saw the old poll; withdrawing it is harmless.
    assert await ref.ask(Withdraw(Waiter())) is None
    stored = {c.id: c.status for c in [await reader.call(SqliteReader.command, f"cmd_{n}") for n in (1, 2)]}
    assert stored == {"cmd_1": CommandStatus.SENT, "cmd_2": CommandStatus.SENT}


async def test_one_command_goes_to_exactly_one_of_many_waiting_polls(queue) -> None:
    deployment_hash, ref, _, _ = queue
    waiters = [Waiter() for _ in range(5)]
    for waiter in waiters:
        assert await ref.ask(Poll(waiter)) is None
    await ref.ask(Create(command(deployment_hash, 3), audit("command.create")))
    handed = [w for w in waiters if w.delivery is not None]
    assert len(handed) == 1 and handed[0] is waiters[0]  # the oldest poll first
    for waiter in waiters[1:]:
        assert await ref.ask(Withdraw(waiter)) is None


async def test_two_replicas_of_a_queue_hand_a_command_to_one_poll_only(queue, settings) -> None:
    deployment_hash, first, reader, system = queue
    await first.ask(Create(command(deployment_hash, 4), audit("command.create")))
    # A second queue actor for the same deployment (as another server process
    # would run) loads the same queued command from the store.
    spec = attrs.evolve(queue_spec(deployment_hash, settings, store=system.lookup(STORE), reader=reader),
                        name=f"{deployment_hash}-replica")
    second = system.lookup(QUEUES).ensure_child(spec)
    results = [await ref.ask(Poll(Waiter())) for ref in (second, first)]
    delivered = [r for r in results if r is not None]
    assert len(delivered) == 1 and delivered[0].id == "cmd_4"
    assert (await reader.call(SqliteReader.command, "cmd_4")).status is CommandStatus.SENT


async def test_a_command_given_back_but_acknowledged_by_last_command_id_is_not_delivered_twice(queue) -> None:
    deployment_hash, ref, reader, _ = queue
    await ref.ask(Create(command(deployment_hash, 5), audit("command.create")))
    delivered = await ref.ask(Poll(Waiter()))
    await ref.ask(Undeliverable(delivered))  # the poll seemed to go away...
    assert (await reader.call(SqliteReader.command, "cmd_5")).status is CommandStatus.QUEUED
    # ...but the agent had it: its next poll names it.
    assert await ref.ask(Poll(Waiter(skip="cmd_5"))) is None
    stored = await reader.call(SqliteReader.command, "cmd_5")
    assert stored.status is CommandStatus.SENT
    assert [h.event.value for h in stored.history[1:]] == ["deliver", "return", "deliver"]


async def test_a_poll_abandoned_before_its_message_is_handled_gets_nothing(queue) -> None:
    # A poll whose ask timed out (the actor was still starting) has answered its
    # client already: the command must go to the next live poll instead.
    deployment_hash, ref, reader, _ = queue
    late = Waiter(abandoned=True)
    assert await ref.ask(Poll(late)) is None
    live = Waiter()
    assert await ref.ask(Poll(live)) is None
    await ref.ask(Create(command(deployment_hash, 6), audit("command.create")))
    assert late.delivery is None
    assert live.delivery is not None and live.delivery.id == "cmd_6"


async def test_deadlines_fire_without_a_fixed_tick(queue, settings) -> None:
    deployment_hash, ref, reader, _ = queue
    short = attrs.evolve(command(deployment_hash, 7), timeout_seconds=1)
    await ref.ask(Create(short, audit("command.create")))
    assert (await ref.ask(Poll(Waiter()))).id == "cmd_7"
    with trio.fail_after(10 + settings.commands.timeout_grace):
        while (await reader.call(SqliteReader.command, "cmd_7")).status is not CommandStatus.FAILED:
            await trio.sleep(0.05)


def actor_stats(system, path: str):
    stack = [system.snapshot().root]
    while stack:
        node = stack.pop()
        if node.path == path:
            return node
        stack.extend(getattr(node, "children", ()))
    raise LookupError(path)


async def test_a_command_given_back_then_expiring_expires_once_without_a_crash(expiring) -> None:
    # Queued, handed to a poll that went away, queued again: it must expire
    # once. (It was reported overdue twice and crashed the actor on the second.)
    deployment_hash, ref, reader, system, _ = expiring
    await ref.ask(Create(command(deployment_hash, 1), audit("command.create")))
    await ref.ask(Create(attrs.evolve(command(deployment_hash, 2), priority=Priority.HIGH), audit("command.create")))
    delivered = await ref.ask(Poll(Waiter()))
    assert delivered.id == "cmd_2"
    await ref.ask(Undeliverable(delivered))
    with trio.fail_after(10):
        while {(await reader.call(SqliteReader.command, f"cmd_{n}")).status for n in (1, 2)} != {
                CommandStatus.EXPIRED}:
            await trio.sleep(0.05)
    stats = actor_stats(system, ref.path)
    assert (stats.restarts, stats.failed) == (0, 0)
    expired = await reader.call(SqliteReader.command, "cmd_2")
    assert [h.event.value for h in expired.history[1:]] == ["deliver", "return", "expire"]


async def test_two_replicas_expiring_the_same_command_expire_it_once_without_a_crash(expiring) -> None:
    deployment_hash, first, reader, system, settings = expiring
    await first.ask(Create(command(deployment_hash, 1), audit("command.create")))
    spec = queue_spec(deployment_hash, settings, store=system.lookup(STORE), reader=reader)
    second = system.lookup(QUEUES).ensure_child(attrs.evolve(spec, name=f"{deployment_hash}-replica"))
    await second.ask(Withdraw(Waiter()))  # started: it has loaded the queued command too
    with trio.fail_after(10):
        # Both hold it until they expire it, or find it expired by the other.
        while [await ref.ask(Snapshot()) for ref in (first, second)] != [[], []]:
            await trio.sleep(0.05)
    assert [(actor_stats(system, ref.path).restarts, actor_stats(system, ref.path).failed)
            for ref in (first, second)] == [(0, 0), (0, 0)]
    stored = await reader.call(SqliteReader.command, "cmd_1")
    assert [h.event.value for h in stored.history[1:]] == ["expire"]


def test_the_timer_wakes_for_deadlines_and_for_due_commands_only_with_a_poll_waiting(settings) -> None:
    # A command that is due but has no poll to go to must not wake the actor
    # (it once did, in a loop that starved every other message).
    from trioscope.actors.deployment_queue import DeploymentQueueActor

    actor = DeploymentQueueActor("h", settings, store=None, reader=None)  # type: ignore[arg-type]
    due_now = command("h", 8)
    now = due_now.scheduled_for
    later = attrs.evolve(command("h", 9), scheduled_for=now + 600, sequence=2)
    for c in (due_now, later):
        actor.queue.put(c)
    deadline = settings.commands.delivery_deadline
    assert actor._next_wake(now) == min(due_now.scheduled_for, later.scheduled_for) + deadline
    actor.waiters.append(Waiter())
    assert actor._next_wake(now) == now  # a poll waits and one is due: hand it over
    actor.queue.take(now)  # handed over; the scheduled one is next
    assert actor._next_wake(now) == later.scheduled_for
