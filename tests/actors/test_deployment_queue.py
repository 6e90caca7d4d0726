"""The deployment queue actor with the real store: crashes lose nothing, a
command goes to exactly one poll, and never to an agent that was retired."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import attrs
import outcome
import trio
import trio.testing
import pytest

from tests.conftest import settings_in
from tests.waiting import eventually
from trioscope.actors import store as store_module
from trioscope.actors.deployment_queue import (
    RETIRED, Create, Poll, Snapshot, Undeliverable, Withdraw, open_poll, queue_spec,
)
from trioscope.actors.directory import CreateDeployment, Decommission, NewEnrollmentToken, RegisterAgent
from trioscope.actors.refusals import DatabaseUnavailable
from trioscope.actors.store import Commit
from trioscope.domain.commands import (
    AGENT_RETIRED, EVENT_OUTCOME_BYTES, NOT_ACKNOWLEDGED, POLL_CLOSED, UNACKNOWLEDGED_TWICE, AgentRegistration, Command,
    CommandStatus, Priority, command_event, new_command,
)
from trioscope.runtime import Actor, ActorRef, ActorSpec, open_actor_system
from trioscope.store import AuditEntry, SaveCommand, StoreReader
from trioscope.system import DIRECTORY, QUEUES, STORE, database_path, supervision_tree


@attrs.frozen
class Poison:
    """No actor handles this: it crashes whoever receives it."""


class Held:
    """One poll as the HTTP edge holds it: the ``Poll`` message, and the end
    of its channel its later answer arrives on (closed: the poll ended)."""

    def __init__(self, *, agent_id: str | None = None, skip: str | None = None) -> None:
        self.poll, self.answers = open_poll(agent_id=agent_id, skip=skip)

    def answer(self) -> Any:
        """What the queue sent the poll so far (None: nothing)."""
        try:
            return self.answers.receive_nowait()
        except (trio.WouldBlock, trio.EndOfChannel):
            return None

    async def wait(self) -> Any:
        return await self.answers.receive()

    def end(self) -> None:
        """The poll's request ended (answered, timed out, gone)."""
        self.answers.close()


def new_poll(**fields: Any) -> Poll:
    """A poll whose later answer nobody reads."""
    return open_poll(**fields)[0]


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


@pytest.fixture
def wall() -> Callable[[], float]:
    """The queues' wall clock, moving with trio's clock: a ``MockClock`` jump moves it too."""
    offset: list[float] = []

    def now() -> float:
        if not offset:
            offset.append(time.time() - trio.current_time())
        return offset[0] + trio.current_time()

    return now


@pytest.fixture
def clock() -> trio.testing.MockClock:
    """Real speed (the store works in threads, which autojump would race), plus
    ``jump`` to reach a deadline at once."""
    return trio.testing.MockClock(rate=1.0)


async def open_queue(settings, wall):
    """(deployment hash, its queue actor, reader, system) in a running system."""
    reader = StoreReader(database_path(settings))
    async with open_actor_system(supervision_tree(settings, reader=reader)) as system:
        deployment, _ = await system.lookup(DIRECTORY).ask(CreateDeployment("t", "u", {}, audit("deployment.create")))
        spec = queue_spec(deployment.hash, settings, store=system.lookup(STORE), reader=reader, clock=wall)
        yield deployment.hash, system.lookup(QUEUES).ensure_child(spec), reader, system


@pytest.fixture
async def queue(settings, wall):
    async for opened in open_queue(settings, wall):
        yield opened


DELIVERY_DEADLINE = 30.0
"""Shorter than the queue's ``IDLE_STOP``: a jump past it leaves the queue running."""


@pytest.fixture
async def expiring(tmp_path, wall):
    """As ``queue``, with a delivery deadline of ``DELIVERY_DEADLINE`` (a test
    reaches it with ``clock.jump``: long enough that no command expires before
    the test has made and handed out what it needs, however slow the machine)."""
    base = settings_in(tmp_path)
    settings = attrs.evolve(base, commands=attrs.evolve(base.commands, delivery_deadline=DELIVERY_DEADLINE))
    async for opened in open_queue(settings, wall):
        yield (*opened, settings)


async def test_a_crash_mid_poll_loses_neither_queued_nor_new_commands(queue) -> None:
    deployment_hash, ref, reader, _ = queue
    ref: ActorRef
    waiting = Held()
    assert await ref.ask(waiting.poll) is None
    await ref.ask(Create(command(deployment_hash, 1), audit("command.create")))
    assert waiting.answer() is not None  # handed over at once
    ref.tell(Poison())  # crash while another poll is about to wait
    ref.tell(Create(command(deployment_hash, 2), audit("command.create")))  # queued behind the crash
    second = await ref.ask(new_poll())
    assert second is not None and second.id == "cmd_2" and second.status is CommandStatus.SENT
    # The restarted actor never saw the old poll; withdrawing it is harmless.
    assert await ref.ask(Withdraw(waiting.poll)) is None
    stored = {c.id: c.status for c in [await reader.command(f"cmd_{n}") for n in (1, 2)]}
    assert stored == {"cmd_1": CommandStatus.SENT, "cmd_2": CommandStatus.SENT}


async def test_one_command_goes_to_exactly_one_of_many_waiting_polls(queue) -> None:
    deployment_hash, ref, _, _ = queue
    held = [Held() for _ in range(5)]
    for h in held:
        assert await ref.ask(h.poll) is None
    await ref.ask(Create(command(deployment_hash, 3), audit("command.create")))
    answers = [h.answer() for h in held]
    assert answers[0] is not None and answers[0].id == "cmd_3"  # the oldest poll first
    assert answers[1:] == [None] * 4
    for h in held[1:]:
        h.end()
        assert await ref.ask(Withdraw(h.poll)) is None


async def test_two_replicas_of_a_queue_hand_a_command_to_one_poll_only(queue, settings) -> None:
    deployment_hash, first, reader, system = queue
    await first.ask(Create(command(deployment_hash, 4), audit("command.create")))
    # A second queue actor for the same deployment (as another server process
    # would run) loads the same queued command from the store.
    spec = attrs.evolve(queue_spec(deployment_hash, settings, store=system.lookup(STORE), reader=reader),
                        name=f"{deployment_hash}-replica")
    second = system.lookup(QUEUES).ensure_child(spec)
    results = [await ref.ask(new_poll()) for ref in (second, first)]
    delivered = [r for r in results if r is not None]
    assert len(delivered) == 1 and delivered[0].id == "cmd_4"
    assert (await reader.command("cmd_4")).status is CommandStatus.SENT


async def test_a_command_given_back_but_acknowledged_by_last_command_id_is_not_delivered_twice(queue) -> None:
    deployment_hash, ref, reader, _ = queue
    await ref.ask(Create(command(deployment_hash, 5), audit("command.create")))
    delivered = await ref.ask(new_poll())
    await ref.ask(Undeliverable(delivered))  # the poll seemed to go away...
    assert (await reader.command("cmd_5")).status is CommandStatus.QUEUED
    # ...but the agent had it: its next poll names it.
    assert await ref.ask(new_poll(skip="cmd_5")) is None
    stored = await reader.command("cmd_5")
    assert stored.status is CommandStatus.SENT
    assert [h.event.value for h in stored.history[1:]] == ["deliver", "return", "deliver"]


async def test_a_poll_abandoned_before_its_message_is_handled_gets_nothing(queue) -> None:
    # A poll whose ask timed out (the actor was still starting) has answered its
    # client already: the command must go to the next live poll instead.
    deployment_hash, ref, reader, _ = queue
    late = Held()
    late.end()
    assert await ref.ask(late.poll) is None
    live = Held()
    assert await ref.ask(live.poll) is None
    await ref.ask(Create(command(deployment_hash, 6), audit("command.create")))
    assert not late.poll.reply.holds  # nothing was sent to it
    delivered = live.answer()
    assert delivered is not None and delivered.id == "cmd_6"


async def test_a_burst_of_creates_to_one_deployment_is_not_held_for_company(queue, mock_clock) -> None:
    # The clock stands still unless jumped: a commit that waited for company (the store's GATHER)
    # would never end. The queue takes the creates one at a time and hands the first to the
    # waiting poll; every commit is its own, one after another, so none waits for others.
    deployment_hash, ref, reader, _ = queue
    waiting = Held()
    assert await ref.ask(waiting.poll) is None
    mock_clock.jump(store_module.BUSY)  # the deployment's creation was the last commit: long ago
    for n in range(5):
        await ref.ask(Create(command(deployment_hash, 100 + n), audit("command.create")))
    # Handed out once its "sent" is committed, which may end after the creates were answered.
    assert (await waiting.wait()).id == "cmd_100"
    statuses = [await status_of(reader, f"cmd_{100 + n}") for n in range(5)]
    assert statuses == [CommandStatus.SENT] + [CommandStatus.QUEUED] * 4


async def status_of(reader: StoreReader, command_id: str) -> CommandStatus:
    return (await reader.command(command_id)).status


async def test_deadlines_fire_without_a_fixed_tick(queue, settings, clock) -> None:
    deployment_hash, ref, reader, _ = queue
    short = attrs.evolve(command(deployment_hash, 7), timeout_seconds=1)
    await ref.ask(Create(short, audit("command.create")))
    assert (await ref.ask(new_poll())).id == "cmd_7"
    clock.jump(2 + settings.commands.timeout_grace)  # past the timeout: only the queue's own timer can see it

    async def failed() -> bool:
        return await status_of(reader, "cmd_7") is CommandStatus.FAILED

    await eventually(failed, deadline=5)


def actor_stats(system, path: str):
    stack = [system.snapshot().root]
    while stack:
        node = stack.pop()
        if node.path == path:
            return node
        stack.extend(getattr(node, "children", ()))
    raise LookupError(path)


async def test_a_command_given_back_then_expiring_expires_once_without_a_crash(expiring, clock) -> None:
    # Queued, handed to a poll that went away, queued again: it must expire
    # once. (It was reported overdue twice and crashed the actor on the second.)
    deployment_hash, ref, reader, system, _ = expiring
    await ref.ask(Create(command(deployment_hash, 1), audit("command.create")))
    await ref.ask(Create(attrs.evolve(command(deployment_hash, 2), priority=Priority.HIGH), audit("command.create")))
    delivered = await ref.ask(new_poll())
    assert delivered.id == "cmd_2"
    await ref.ask(Undeliverable(delivered))
    clock.jump(DELIVERY_DEADLINE + 1)  # past the delivery deadline

    async def both_expired() -> bool:
        return {await status_of(reader, f"cmd_{n}") for n in (1, 2)} == {CommandStatus.EXPIRED}

    await eventually(both_expired, deadline=5)
    stats = actor_stats(system, ref.path)
    assert (stats.restarts, stats.failed) == (0, 0)
    expired = await reader.command("cmd_2")
    assert [h.event.value for h in expired.history[1:]] == ["deliver", "return", "expire"]


async def test_two_replicas_expiring_the_same_command_expire_it_once_without_a_crash(expiring, wall, clock) -> None:
    deployment_hash, first, reader, system, settings = expiring
    await first.ask(Create(command(deployment_hash, 1), audit("command.create")))
    spec = queue_spec(deployment_hash, settings, store=system.lookup(STORE), reader=reader, clock=wall)
    second = system.lookup(QUEUES).ensure_child(attrs.evolve(spec, name=f"{deployment_hash}-replica"))
    await second.ask(Withdraw(new_poll()))  # started: it has loaded the queued command too
    clock.jump(DELIVERY_DEADLINE + 1)  # past the delivery deadline, for both

    async def both_empty() -> bool:
        # Both hold it until they expire it, or find it expired by the other.
        return [await ref.ask(Snapshot()) for ref in (first, second)] == [[], []]

    await eventually(both_empty, deadline=5)
    assert [(actor_stats(system, ref.path).restarts, actor_stats(system, ref.path).failed)
            for ref in (first, second)] == [(0, 0), (0, 0)]
    stored = await reader.command("cmd_1")
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
    actor.waiters.append(new_poll())
    assert actor._next_wake(now) == now  # a poll waits and one is due: hand it over
    actor.queue.take(now)  # handed over; the scheduled one is next
    assert actor._next_wake(now) == later.scheduled_for


# ---- polls name their agent: nothing goes to one that was decommissioned or replaced ----------

@attrs.define
class Gate:
    held: trio.Event = attrs.field(factory=trio.Event)
    opened: trio.Event = attrs.field(factory=trio.Event)


class GatedStore(Actor):
    """Passes commits on to the store, holding the first that marks a command
    sent until the gate opens: a test can act while ``sent`` is being committed."""

    def __init__(self, store: ActorRef, gate: Gate) -> None:
        self.store = store
        self.gate = gate

    async def handle(self, message: Any) -> None:
        if isinstance(message, Commit) and not self.gate.held.is_set() and any(
                isinstance(w, SaveCommand) and w.command.status is CommandStatus.SENT for w in message.writes):
            self.gate.held.set()
            await self.gate.opened.wait()
        await self.store.send(message)


class RefusingStore(Actor):
    """Passes commits on to the store but refuses the first that marks a command
    sent, as a store whose database is away does (nothing written)."""

    def __init__(self, store: ActorRef) -> None:
        self.store = store
        self.refused = False

    async def handle(self, message: Any) -> None:
        if isinstance(message, Commit) and not self.refused and any(
                isinstance(w, SaveCommand) and w.command.status is CommandStatus.SENT for w in message.writes):
            self.refused = True
            message.receipt.settle(outcome.Error(DatabaseUnavailable("connection refused")))
            return
        await self.store.send(message)


@attrs.define
class Enrolled:
    deployment_hash: str
    queue: ActorRef
    directory: ActorRef
    reader: StoreReader
    agent_id: str
    gate: Gate

    async def decommission(self, agent_id: str) -> None:
        await self.directory.ask(Decommission(agent_id, audit("agent.decommission")))

    async def enroll(self) -> str:
        """Enroll a new agent for the deployment (retiring the earlier ones); its id."""
        token = await self.directory.ask(NewEnrollmentToken(self.deployment_hash, audit("deployment.enrollment")))
        return await enroll(self.directory, self.deployment_hash, token)


async def enroll(directory: ActorRef, deployment_hash: str, token: str) -> str:
    agent, _ = await directory.ask(RegisterAgent(AgentRegistration(deployment_hash=deployment_hash), token,
                                                 audit("agent.register")))
    return agent.id  # type: ignore[no-any-return]


@asynccontextmanager
async def open_enrolled(settings, *, name: str | None = None, gated: bool = False,
                        refusing: bool = False) -> AsyncIterator[Enrolled]:
    """A deployment with an enrolled agent, and its queue actor reading the
    directory (named ``name`` instead of the hash: the directory cannot find it;
    ``gated``: its commits of ``sent`` can be held)."""
    reader = StoreReader(database_path(settings))
    async with open_actor_system(supervision_tree(settings, reader=reader)) as system:
        directory = system.lookup(DIRECTORY)
        deployment, token = await directory.ask(CreateDeployment("t", "u", {}, audit("deployment.create")))
        agent_id = await enroll(directory, deployment.hash, token)
        gate = Gate()
        store = system.lookup(STORE)
        if gated:
            real = system.lookup(STORE)
            store = system.lookup(QUEUES).ensure_child(ActorSpec(name="gated-store", factory=lambda: GatedStore(real, gate)))
        if refusing:
            real = system.lookup(STORE)
            store = system.lookup(QUEUES).ensure_child(ActorSpec(name="refusing-store",
                                                                 factory=lambda: RefusingStore(real)))
        spec = queue_spec(deployment.hash, settings, store=store, reader=reader, directory_path=DIRECTORY)
        if name is not None:
            spec = attrs.evolve(spec, name=name)
        yield Enrolled(deployment.hash, system.lookup(QUEUES).ensure_child(spec), directory, reader, agent_id, gate)


@pytest.fixture
async def enrolled(settings):
    async with open_enrolled(settings) as opened:
        yield opened


async def test_a_decommissioned_agents_waiting_poll_is_answered_at_once_and_gets_nothing(enrolled) -> None:
    e: Enrolled = enrolled
    waiting = Held(agent_id=e.agent_id)
    assert await e.queue.ask(waiting.poll) is None
    await e.decommission(e.agent_id)
    with trio.fail_after(5):  # the directory tells the queue: no timer, no next command needed
        assert await waiting.wait() is RETIRED
    await e.queue.ask(Create(command(e.deployment_hash, 1), audit("command.create")))
    assert waiting.answer() is None
    late = Held(agent_id=e.agent_id)  # a poll that reaches the queue after the decommission
    assert await e.queue.ask(late.poll) is RETIRED
    assert [(c.id, c.status) for c in await e.queue.ask(Snapshot())] == [("cmd_1", CommandStatus.QUEUED)]


async def test_a_replaced_agents_waiting_poll_is_answered_and_the_new_agents_poll_gets_the_command(enrolled) -> None:
    e: Enrolled = enrolled
    old = Held(agent_id=e.agent_id)
    assert await e.queue.ask(old.poll) is None
    new_agent = await e.enroll()
    with trio.fail_after(5):
        assert await old.wait() is RETIRED
    new = Held(agent_id=new_agent)
    assert await e.queue.ask(new.poll) is None
    await e.queue.ask(Create(command(e.deployment_hash, 2), audit("command.create")))
    assert old.answer() is None
    delivered = new.answer()
    assert delivered is not None and delivered.id == "cmd_2"


async def test_without_word_from_the_directory_the_next_hand_out_skips_a_retired_agents_poll(settings) -> None:
    # A queue the directory cannot find (as if its tell were lost): the
    # published snapshot, read at hand-out, is what keeps the command back.
    async with open_enrolled(settings, name="elsewhere") as e:
        waiting = Held(agent_id=e.agent_id)
        assert await e.queue.ask(waiting.poll) is None
        await e.decommission(e.agent_id)
        assert waiting.answer() is None
        await e.queue.ask(Create(command(e.deployment_hash, 3), audit("command.create")))
        assert waiting.answer() is RETIRED
        assert (await e.reader.command("cmd_3")).status is CommandStatus.QUEUED


async def test_an_agent_retired_while_sent_is_committed_gets_nothing_and_the_command_is_queued_again(settings) -> None:
    async with open_enrolled(settings, gated=True) as e:
        waiting = Held(agent_id=e.agent_id)
        assert await e.queue.ask(waiting.poll) is None
        async with trio.open_nursery() as nursery:
            nursery.start_soon(e.queue.ask, Create(command(e.deployment_hash, 4), audit("command.create")))
            with trio.fail_after(5):
                await e.gate.held.wait()  # ``sent`` is being committed
            await e.decommission(e.agent_id)
            e.gate.opened.set()
        assert waiting.answer() is RETIRED
        stored = await e.reader.command("cmd_4")
        assert stored.status is CommandStatus.QUEUED
        assert [(h.event.value, h.detail) for h in stored.history[1:]] == [
            ("deliver", {"agent_id": e.agent_id}), ("return", {"reason": AGENT_RETIRED})]


async def test_a_poll_that_ends_while_sent_is_committed_leaves_the_command_queued(settings) -> None:
    # It was handed over anyway, to a poll that had answered already: the
    # command stayed ``sent`` with nobody to run it until it timed out.
    async with open_enrolled(settings, gated=True) as e:
        ending = Held(agent_id=e.agent_id)
        assert await e.queue.ask(ending.poll) is None
        async with trio.open_nursery() as nursery:
            nursery.start_soon(e.queue.ask, Create(command(e.deployment_hash, 5), audit("command.create")))
            with trio.fail_after(5):
                await e.gate.held.wait()
            ending.end()  # its request timed out meanwhile
            e.gate.opened.set()
        assert not ending.poll.reply.holds  # nothing was sent to it
        stored = await e.reader.command("cmd_5")
        assert stored.status is CommandStatus.QUEUED
        assert [h.detail for h in stored.history[1:]] == [{"agent_id": e.agent_id}, {"reason": POLL_CLOSED}]
        assert (await e.queue.ask(new_poll(agent_id=e.agent_id))).id == "cmd_5"


async def test_a_hand_out_the_database_refused_leaves_the_command_to_be_handed_out_again(settings) -> None:
    """The ``sent`` of a hand-out could not be committed (the database away):
    the command stayed taken, and no poll of that process ever got it (it
    expired an hour later); the create that set the hand-out off was answered
    with the failure though it was stored. Now the create is answered, and the
    waiting poll gets the command once the database is back (a retry a couple
    of seconds later)."""
    async with open_enrolled(settings, refusing=True) as e:
        waiting = Held(agent_id=e.agent_id)
        assert await e.queue.ask(waiting.poll) is None
        created = await e.queue.ask(Create(command(e.deployment_hash, 7), audit("command.create")))
        assert created.id == "cmd_7"
        assert (await e.reader.command("cmd_7")).status is CommandStatus.QUEUED
        with trio.fail_after(10):
            delivered = await waiting.wait()
        assert delivered.id == "cmd_7" and delivered.status is CommandStatus.SENT
        assert (await e.reader.command("cmd_7")).status is CommandStatus.SENT


async def test_a_command_not_acknowledged_twice_fails_instead_of_going_round_again(queue) -> None:
    deployment_hash, ref, reader, _ = queue
    await ref.ask(Create(command(deployment_hash, 6), audit("command.create")))
    await ref.ask(Undeliverable(await ref.ask(new_poll()), NOT_ACKNOWLEDGED))
    once = await reader.command("cmd_6")
    assert once.status is CommandStatus.QUEUED and once.history[-1].detail == {"reason": NOT_ACKNOWLEDGED}
    await ref.ask(Undeliverable(await ref.ask(new_poll()), NOT_ACKNOWLEDGED))
    twice = await reader.command("cmd_6")
    assert (twice.status, twice.error) == (CommandStatus.FAILED, UNACKNOWLEDGED_TWICE)
    assert [h.event.value for h in twice.history[1:]] == ["deliver", "return", "deliver", "fail"]


def test_a_large_outcome_is_left_out_of_the_users_event() -> None:
    done = attrs.evolve(command("d", 1), status=CommandStatus.COMPLETED,
                        result={"output": "x" * EVENT_OUTCOME_BYTES}, error="short")
    event = command_event(done)
    assert event["result"] is None and event["result_truncated"] is True
    assert event["result_bytes"] > EVENT_OUTCOME_BYTES and event["error"] == "short"
    small = command_event(attrs.evolve(done, result={"ok": True}))
    assert small["result"] == {"ok": True} and "result_truncated" not in small
