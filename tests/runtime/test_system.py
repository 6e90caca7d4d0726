"""The system: lookup by path, death watch, snapshot counters (its exports: tests/test_packages.py)."""

from __future__ import annotations

import pytest
import trio

from tests.runtime.scripted import Block, Crash, Journal, settle, worker
from trioscope.runtime import (
    Actor,
    ActorNotFound,
    ActorSpec,
    ActorStats,
    Restart,
    SupervisorSpec,
    Terminated,
    dynamic_supervisor,
    open_actor_system,
)


class Watcher(Actor):
    def __init__(self, seen: list[Terminated]) -> None:
        self.seen = seen

    async def handle(self, message):
        if isinstance(message, Terminated):
            self.seen.append(message)
        else:
            self.context.watch(message)


def tree(journal: Journal, seen: list[Terminated]) -> SupervisorSpec:
    return SupervisorSpec(
        name="root",
        children=[
            ActorSpec(name="watcher", factory=lambda: Watcher(seen)),
            worker("temp", journal, restart=Restart.TEMPORARY),
            worker("perm", journal),
            dynamic_supervisor("clients"),
        ],
    )


async def test_lookup_by_path(journal: Journal):
    async with open_actor_system(tree(journal, [])) as system:
        assert system.lookup("/root/perm").path == "/root/perm"
        assert system.lookup("/root/clients").path == "/root/clients"
        assert system.lookup("/root") is system.root  # the one ref of the root, not a copy
        for missing in ("/root/nope", "/root/perm/x", "perm", ""):
            with pytest.raises(ActorNotFound):
                system.lookup(missing)


async def test_death_watch_reports_termination_but_not_restarts(journal: Journal):
    seen: list[Terminated] = []
    async with open_actor_system(tree(journal, seen)) as system:
        watcher = system.lookup("/root/watcher")
        watcher.tell(system.lookup("/root/perm"))
        watcher.tell(system.lookup("/root/temp"))
        await settle()
        system.lookup("/root/perm").tell(Crash())  # restarted: not a termination
        system.lookup("/root/temp").tell(Crash("gone"))
        await settle()
        assert [(t.path, t.reason) for t in seen] == [("/root/temp", "crashed: ValueError: gone")]


async def test_watching_an_already_terminated_actor_reports_at_once(journal: Journal):
    seen: list[Terminated] = []
    async with open_actor_system(tree(journal, seen)) as system:
        temp = system.lookup("/root/temp")
        temp.tell(Crash())
        await temp.wait_stopped()
        system.lookup("/root/watcher").tell(temp)
        await settle()
        assert [t.path for t in seen] == ["/root/temp"]


async def test_snapshot_reports_the_tree_and_its_counters(journal: Journal):
    async with open_actor_system(tree(journal, [])) as system:
        perm = system.lookup("/root/perm")
        for i in range(3):
            await perm.ask(i)
        perm.tell(Crash())
        await settle()
        gate = trio.Event()
        perm.tell(Block(gate))
        await settle()
        for i in range(4):
            perm.tell(i)
        await system.lookup("/root/clients").start_child(worker("c1", journal))

        snap = system.snapshot()
        assert snap.root.path == "/root" and snap.root.strategy == "one_for_one"
        by_path = {c.path: c for c in snap.root.children}
        assert list(by_path) == ["/root/watcher", "/root/temp", "/root/perm", "/root/clients"]
        stats = by_path["/root/perm"]
        assert isinstance(stats, ActorStats)
        assert (stats.actor_type, stats.status, stats.restarts) == ("Worker", "running", 1)
        assert (stats.processed, stats.failed) == (3, 1)
        assert (stats.mailbox_depth, stats.mailbox_high_water, stats.mailbox_capacity) == (4, 4, 1000)
        assert [c.path for c in by_path["/root/clients"].children] == ["/root/clients/c1"]
        assert snap.actors == 4
        gate.set()


def test_the_rate_meter_follows_the_message_rate():
    from trioscope.runtime._stats import RateMeter

    meter = RateMeter(0.0, window=5.0)
    for i in range(100):  # 10 a second for 10 s
        meter.tick(i / 10)
    assert meter.rate(10.0) == pytest.approx(10.0, rel=0.05)
    assert meter.rate(30.0) == 0.0  # quiet since


async def test_snapshot_reports_each_actors_message_rate(autojump_clock):
    from trioscope.runtime import Actor, ActorSpec, SupervisorSpec, open_actor_system

    class Echo(Actor):
        async def handle(self, message: object) -> object:
            return message

    async with open_actor_system(SupervisorSpec(name="root", children=[ActorSpec(name="e", factory=Echo)])) as system:
        ref = system.lookup("/root/e")
        for _ in range(40):  # 20 a second
            await ref.ask("x")
            await trio.sleep(0.05)
        [echo] = system.snapshot().root.children
        assert echo.message_rate == pytest.approx(20.0, rel=0.1)
