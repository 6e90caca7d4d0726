"""Dynamic supervisors: children on demand, limits, per-child intensity."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from tests.runtime.scripted import Block, Crash, Journal, settle, worker
from trioscope.runtime import (
    Actor,
    ActorNotFound,
    ActorRef,
    ActorSpec,
    ActorStopped,
    DuplicateChild,
    IntensityScope,
    Restart,
    RestartIntensityExceeded,
    StartFailed,
    SupervisorSpec,
    TooManyChildren,
    dynamic_supervisor,
    open_actor_system,
)


def tree(**kwargs) -> SupervisorSpec:
    return SupervisorSpec(name="root", children=[dynamic_supervisor("agents", **kwargs)])


async def test_start_child_runs_it_and_makes_it_findable_by_path(journal: Journal):
    async with open_actor_system(tree()) as system:
        agents = system.lookup("/root/agents")
        ref = await agents.start_child(worker("agent-7", journal))
        assert ref.path == "/root/agents/agent-7"
        assert system.lookup("/root/agents/agent-7") == ref
        assert journal.starts("agent-7") == 1
        with pytest.raises(DuplicateChild):
            await agents.start_child(worker("agent-7", journal))


async def test_ensure_child_returns_the_live_child_or_starts_one(journal: Journal):
    async with open_actor_system(tree()) as system:
        agents = system.lookup("/root/agents")
        first = agents.ensure_child(worker("a", journal))
        first.tell("told before it ran")  # the mailbox exists before the actor starts
        again = agents.ensure_child(worker("a", journal))
        assert again == first
        assert await first.ask("x") == ("a", 1, "x")
        assert journal.handled("a") == ["told before it ran", "x"]
        assert journal.starts("a") == 1 and len(agents) == 1



async def test_actor_children_are_found_and_made_with_typed_refs(journal: Journal):
    spec = SupervisorSpec(name="root", children=[dynamic_supervisor("agents"), dynamic_supervisor("pools")])
    async with open_actor_system(spec) as system:
        root, agents = system.lookup("/root"), system.lookup("/root/agents")
        assert agents.actor("a") is None
        made = agents.ensure_actor(worker("a", journal))
        assert isinstance(made, ActorRef) and agents.actor("a") == made == agents.ensure_actor(worker("a", journal))
        assert root.child("pools") is not None and root.actor("pools") is None  # a supervisor, not an actor

async def test_max_children_is_enforced(journal: Journal):
    async with open_actor_system(tree(max_children=2)) as system:
        agents = system.lookup("/root/agents")
        await agents.start_child(worker("a", journal))
        agents.ensure_child(worker("b", journal))
        with pytest.raises(TooManyChildren) as info:
            agents.ensure_child(worker("c", journal))
        assert info.value.limit == 2
        await agents.stop_child("a")
        await agents.start_child(worker("c", journal))


async def test_stop_child_drains_it_frees_the_name_and_stales_old_refs(journal: Journal):
    async with open_actor_system(tree()) as system:
        agents = system.lookup("/root/agents")
        ref = await agents.start_child(worker("a", journal))
        gate = trio.Event()
        ref.tell(Block(gate))
        await settle()
        ref.tell("queued")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(agents.stop_child, "a")
            await settle()
            gate.set()
        assert journal.handled("a")[-1] == "queued"
        assert not ref.alive and agents.child("a") is None
        with pytest.raises(ActorNotFound):
            system.lookup("/root/agents/a")
        with pytest.raises(ActorStopped):
            ref.tell("too late")
        fresh = await agents.start_child(worker("a", journal))
        assert fresh != ref and fresh.alive


async def test_a_child_whose_start_fails_is_not_kept(journal: Journal):
    async with open_actor_system(tree()) as system:
        agents = system.lookup("/root/agents")
        with pytest.raises(StartFailed):
            await agents.start_child(worker("bad", journal, fail_start=lambda: True))
        assert agents.child("bad") is None and len(agents) == 0
        ref = agents.ensure_child(worker("bad2", journal, fail_start=lambda: True))
        await ref.wait_stopped()
        assert agents.child("bad2") is None


async def test_asks_queued_for_a_child_that_fails_to_start_are_told_why(journal: Journal):
    """Their messages were never handled: the asker learns what kept the child
    from starting (a database away is answered as such at the HTTP edge)."""
    async with open_actor_system(tree()) as system:
        agents = system.lookup("/root/agents")
        ref = agents.ensure_child(worker("bad", journal, fail_start=lambda: True))
        with pytest.raises(ActorStopped) as stopped:
            await ref.ask("ping", timeout=5)
        assert isinstance(stopped.value.cause, RuntimeError)
        assert "failed to start" in str(stopped.value)
        with pytest.raises(ActorStopped) as again:  # and one asked after: stopped, for no start of its own
            await ref.ask("ping", timeout=5)
        assert again.value.cause is None


async def test_per_child_intensity_gives_up_on_one_child_and_spares_its_siblings(journal: Journal):
    async with open_actor_system(tree(intensity=2)) as system:
        agents = system.lookup("/root/agents")
        bad = await agents.start_child(worker("bad", journal))
        good = await agents.start_child(worker("good", journal))
        for _ in range(3):
            bad.tell(Crash())
            await settle()
        assert not bad.alive
        assert good.alive and journal.starts("good") == 1
        assert system.snapshot().root.status == "running"


async def test_supervisor_wide_intensity_escalates_like_otp(journal: Journal):
    spec = tree(intensity=1, intensity_scope=IntensityScope.SUPERVISOR)
    root_gave_up = pytest.RaisesExc(RestartIntensityExceeded, check=lambda e: e.path == "/root")
    with pytest.RaisesGroup(root_gave_up, flatten_subgroups=True):
        async with open_actor_system(spec) as system:
            agents = system.lookup("/root/agents")
            a = await agents.start_child(worker("a", journal))
            b = await agents.start_child(worker("b", journal))
            a.tell(Crash())
            await settle()
            b.tell(Crash())  # second restart within the period: /root/agents gives up
            await settle()
            # /root restarts /root/agents, which comes back empty (OTP: dynamic
            # children do not survive their supervisor's restart).
            assert not a.alive and not b.alive and len(agents) == 0
            ref = await agents.start_child(worker("c", journal))
            assert ref.alive
            # Now make /root itself exceed its intensity of 5: every second crash of
            # "d" makes /root/agents give up, and /root restart it.
            for _ in range(2 * 6):
                agents.ensure_child(worker("d", journal, restart=Restart.PERMANENT)).tell(Crash())
                await settle()
            pytest.fail("the root supervisor never gave up")


async def test_dynamic_children_are_all_stopped_on_shutdown(journal: Journal):
    """Together, in no order (as OTP's simple_one_for_one children): they are
    alike and independent (``test_dynamic_children_stop_together_...``)."""
    async with open_actor_system(tree()) as system:
        agents = system.lookup("/root/agents")
        for name in ("one", "two", "three"):
            await agents.start_child(worker(name, journal))
    assert sorted(e[1] for e in journal.of("stop")) == ["one", "three", "two"]



class _Gated(Actor):
    """An actor whose ``on_start`` and ``on_stop`` wait for their gates, noting that they began."""

    def __init__(self, gates: dict[str, trio.Event], began: list[str]) -> None:
        self.gates, self.began = gates, began

    async def on_start(self) -> None:
        self.began.append("start")
        await self.gates["start"].wait()

    async def on_stop(self) -> None:
        self.began.append("stop")
        await self.gates["stop"].wait()


async def test_children_asked_for_together_start_together_and_stop_together():
    """Each start waits for its child's ``on_start`` and each stop for its
    child's end: one at a time, a burst of 500 live views on a busy server
    took a turn of the event loop each."""
    gates, began = {"start": trio.Event(), "stop": trio.Event()}, []
    async with open_actor_system(tree()) as system, trio.open_nursery() as nursery:
        agents = system.lookup("/root/agents")
        for index in range(10):
            spec = ActorSpec(name=f"client-{index}", factory=lambda: _Gated(gates, began))
            nursery.start_soon(agents.start_child, spec)
        await trio.testing.wait_all_tasks_blocked()
        assert began == ["start"] * 10  # all in on_start at once, not one after another
        gates["start"].set()
        await trio.testing.wait_all_tasks_blocked()
        assert len(agents) == 10
        for index in range(10):
            nursery.start_soon(agents.stop_child, f"client-{index}")
        await trio.testing.wait_all_tasks_blocked()
        assert began == ["start"] * 10 + ["stop"] * 10
        gates["stop"].set()
        await trio.testing.wait_all_tasks_blocked()
        assert len(agents) == 0


async def test_two_stops_of_one_child_asked_together_both_wait_for_its_queue(journal: Journal):
    """Handled together, the second stop found the child stopping and cut its
    queue short (dead letters), and returned before the child had ended."""
    async with open_actor_system(tree()) as system:
        agents = system.lookup("/root/agents")
        ref = await agents.start_child(worker("a", journal))
        gate = trio.Event()
        ref.tell(Block(gate))
        for index in range(3):
            ref.tell(f"queued {index}")
        await trio.testing.wait_all_tasks_blocked()
        returned: list[int] = []

        async def stop() -> None:
            await agents.stop_child("a")
            returned.append(len(journal.handled("a")))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(stop)
            nursery.start_soon(stop)
            await trio.testing.wait_all_tasks_blocked()
            assert returned == []
            gate.set()
    assert journal.handled("a")[-3:] == ["queued 0", "queued 1", "queued 2"]
    assert returned == [4, 4]


class _SlowToStop(Actor):
    """Stops only when killed at its shutdown timeout (a client waiting on a
    full mailbox, say); records when its stop began."""

    def __init__(self, began: list[float]) -> None:
        self.began = began

    async def handle(self, message: object) -> object:
        return None

    async def on_stop(self) -> None:
        self.began.append(trio.current_time())
        await trio.sleep_forever()


async def test_dynamic_children_stop_together_each_within_its_own_timeout(autojump_clock):
    """One after another, 20 children slow to stop took 20 of their 1 s
    timeouts, and the siblings stopped after them had the rest of the shutdown."""
    began: list[float] = []
    tree = SupervisorSpec(name="root", children=[dynamic_supervisor("clients")])
    async with open_actor_system(tree) as system:
        clients = system.lookup("/root/clients")
        for i in range(20):
            await clients.start_child(ActorSpec(name=f"c{i}", factory=lambda: _SlowToStop(began),
                                                shutdown_timeout=1.0, restart=Restart.TEMPORARY))
        stopping = trio.current_time()
    assert len(began) == 20 and set(began) == {stopping}  # every stop asked at once, none after another's timeout
