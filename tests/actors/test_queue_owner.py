"""The queues' owner: it starts a deployment's queue on a request, the queue
answers the asker, and an idle queue stops only when the owner says so, so a
request never reaches a queue that is stopping."""

from __future__ import annotations

import time

import trio
import trio.testing
import pytest

from tests.actors.test_deployment_queue import audit, command, settings, wall  # noqa: F401 - fixtures
from trioscope.actors.deployment_queue import IDLE_STOP, Confirm, Create, QueueIdle, Snapshot
from trioscope.actors.directory import CreateDeployment
from trioscope.actors.queue_owner import (
    FOLLOW_GRACE, CommandsChanged, ForDeployment, GetCommandStats, QueueOwnerActor, ResyncQueues,
)
from trioscope.actors.store import commit
from trioscope.domain.commands import CommandEvent, CommandStatus
from trioscope.store import SaveCommand
from tests.waiting import eventually
from trioscope.actors.refusals import UnknownCommand
from trioscope.runtime import ActorSpec, open_actor_system
from trioscope.store import StoreReader
from trioscope.system import DIRECTORY, NOTIFIER, QUEUES, STORE, database_path, supervision_tree


@pytest.fixture
def clock() -> trio.testing.MockClock:
    """Real speed (the store works in threads), plus ``jump`` to reach a deadline at once."""
    return trio.testing.MockClock(rate=1.0)


@pytest.fixture
async def owned_in(settings, wall):  # noqa: F811 - the fixtures imported above
    """(deployment hash, an owner whose queues use the ``wall`` clock, /root/queues, the system)."""
    reader = StoreReader(database_path(settings))
    async with open_actor_system(supervision_tree(settings, reader=reader)) as system:
        deployment, _ = await system.lookup(DIRECTORY).ask(CreateDeployment("t", "u", {}, audit("deployment.create")))
        owner = await system.root.start_child(ActorSpec(
            name="test_owner", factory=lambda: QueueOwnerActor(settings, reader, queues_path=QUEUES, store_path=STORE,
                                                               notifier_path=NOTIFIER, directory_path=DIRECTORY,
                                                               clock=wall)))
        yield deployment.hash, owner, system.lookup(QUEUES), system


@pytest.fixture
def owned(owned_in):
    """(deployment hash, an owner whose queues use the ``wall`` clock, /root/queues)."""
    return owned_in[:3]


async def test_a_request_starts_the_queue_which_answers_and_refuses(owned) -> None:
    deployment_hash, owner, queues = owned
    assert queues.child(deployment_hash) is None
    created = await owner.ask(ForDeployment(deployment_hash, Create(command(deployment_hash, 1), audit("c"))))
    assert created.id == "cmd_1"
    assert queues.child(deployment_hash) is not None
    with pytest.raises(UnknownCommand):  # the queue's refusal, raised here
        await owner.ask(ForDeployment(deployment_hash, Confirm("cmd_nope", audit("confirm"))))
    assert [c.id for c in await owner.ask(ForDeployment(deployment_hash, Snapshot()))] == ["cmd_1"]


async def test_an_idle_queue_is_stopped_by_its_owner_and_the_next_request_starts_another(owned, clock) -> None:
    deployment_hash, owner, queues = owned
    assert await owner.ask(ForDeployment(deployment_hash, Snapshot())) == []
    first = queues.child(deployment_hash)
    await trio.testing.wait_all_tasks_blocked()  # its idle timer is set (its task sleeping) before the jump
    clock.jump(IDLE_STOP + 1)
    with trio.fail_after(10):
        await first.wait_stopped()
    assert queues.child(deployment_hash) is None
    assert await owner.ask(ForDeployment(deployment_hash, Snapshot())) == []
    second = queues.child(deployment_hash)
    assert second is not None and second != first and second.alive


async def test_a_request_right_behind_the_idle_notice_reaches_a_running_queue(owned) -> None:
    deployment_hash, owner, queues = owned
    await owner.ask(ForDeployment(deployment_hash, Snapshot()))
    first = queues.child(deployment_hash)
    owner.tell(QueueIdle(deployment_hash))  # the queue stops meanwhile: the request must not see it
    assert await owner.ask(ForDeployment(deployment_hash, Snapshot())) == []
    assert not first.alive and queues.child(deployment_hash).alive


async def test_a_queue_with_work_ignores_a_stale_idle_notice(owned) -> None:
    deployment_hash, owner, queues = owned
    await owner.ask(ForDeployment(deployment_hash, Create(command(deployment_hash, 1), audit("c"))))
    first = queues.child(deployment_hash)
    owner.tell(QueueIdle(deployment_hash))
    assert [c.id for c in await owner.ask(ForDeployment(deployment_hash, Snapshot()))] == ["cmd_1"]
    assert queues.child(deployment_hash) == first and first.alive  # the same actor (equal refs: the same cell)


async def test_another_replicas_change_starts_no_queue_until_its_deadline_passes_unresolved(owned_in, clock,
                                                                                           settings) -> None:
    """A replica holds no queue for a deployment its requests do not reach: it
    keeps the deadline of another replica's open command, and starts the
    queue (which fires it) only once that deadline passed ``FOLLOW_GRACE`` ago."""
    deployment_hash, owner, queues, system = owned_in
    store = system.lookup(STORE)
    other = command(deployment_hash, 7)  # committed by another replica, announced to this one
    await commit(store, [SaveCommand(other, None)])
    owner.tell(CommandsChanged((other,)))
    await owner.ask(GetCommandStats())  # handled in order: the change was taken
    assert queues.child(deployment_hash) is None
    await trio.testing.wait_all_tasks_blocked()  # the watch's timer is set before the jump
    clock.jump(settings.commands.delivery_deadline + FOLLOW_GRACE - 1)
    await owner.ask(GetCommandStats())
    assert queues.child(deployment_hash) is None, "not before the grace"
    clock.jump(2)
    reader = StoreReader(database_path(settings))

    async def expired() -> bool:
        stored = await reader.command(other.id)
        return stored is not None and stored.status is CommandStatus.EXPIRED

    await eventually(expired)
    assert queues.child(deployment_hash) is not None


async def test_a_request_for_a_watched_deployment_starts_its_queue_with_the_command(owned_in) -> None:
    deployment_hash, owner, _, system = owned_in
    other = command(deployment_hash, 8)
    await commit(system.lookup(STORE), [SaveCommand(other, None)])
    owner.tell(CommandsChanged((other,)))
    assert [c.id for c in await owner.ask(ForDeployment(deployment_hash, Snapshot()))] == ["cmd_8"]
    later = other.apply(CommandEvent.CANCEL, time.time())
    await commit(system.lookup(STORE), [SaveCommand(later, len(other.history))])
    owner.tell(CommandsChanged((later,)))  # the running queue takes it
    with trio.fail_after(10):
        while await owner.ask(ForDeployment(deployment_hash, Snapshot())):
            await trio.sleep(0.01)


async def test_after_a_resync_open_commands_are_watched_not_held(owned_in, clock, settings) -> None:
    deployment_hash, owner, queues, system = owned_in
    other = command(deployment_hash, 9)
    await commit(system.lookup(STORE), [SaveCommand(other, None)])
    assert await owner.ask(ResyncQueues()) == 1
    assert queues.child(deployment_hash) is None
    await trio.testing.wait_all_tasks_blocked()
    clock.jump(settings.commands.delivery_deadline + FOLLOW_GRACE + 1)
    with trio.fail_after(10):
        while queues.child(deployment_hash) is None:  # started by the watch, it fires the deadline
            await trio.sleep(0.01)
