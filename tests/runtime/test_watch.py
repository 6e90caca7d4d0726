"""Death watch and links: each watcher told once; a linked actor dies with an
abnormal end of the one it is linked to."""

from __future__ import annotations

import trio

from tests.runtime.scripted import settle
from trioscope.runtime import (
    Actor, ActorSpec, Restart, Strategy, SupervisorSpec, Terminated, open_actor_system,
)


class Watcher(Actor):
    def __init__(self, seen: list[object], starts: list[str]) -> None:
        self.seen = seen
        starts.append("watcher")

    async def handle(self, message: object) -> object:
        if isinstance(message, tuple):
            verb, target = message
            getattr(self.context, verb)(self.context.system.lookup(target))
            return None
        self.seen.append(message)
        return None


class Target(Actor):
    async def handle(self, message: object) -> object:
        if message == "crash":
            raise RuntimeError("boom")
        if message == "stop":
            self.context.stop()
        return None


def tree(seen: list[object], starts: list[str], target_restart: Restart = Restart.TEMPORARY) -> SupervisorSpec:
    return SupervisorSpec(name="root", strategy=Strategy.ONE_FOR_ONE, children=[
        ActorSpec(name="target", factory=Target, restart=target_restart),
        ActorSpec(name="watcher", factory=lambda: Watcher(seen, starts)),
    ])


async def test_watching_twice_is_told_once():
    seen: list[object] = []
    async with open_actor_system(tree(seen, [])) as system:
        watcher = system.lookup("/root/watcher")
        await watcher.ask(("watch", "/root/target"))
        await watcher.ask(("watch", "/root/target"))
        system.lookup("/root/target").tell("stop")
        await settle()
    assert [m for m in seen if isinstance(m, Terminated)] == [Terminated(path="/root/target", reason="normal")]


async def test_unwatch_tells_nothing():
    seen: list[object] = []
    async with open_actor_system(tree(seen, [])) as system:
        watcher = system.lookup("/root/watcher")
        await watcher.ask(("watch", "/root/target"))
        await watcher.ask(("unwatch", "/root/target"))
        system.lookup("/root/target").tell("stop")
        await settle()
    assert seen == []


async def test_a_linked_actor_crashes_with_an_abnormal_end():
    seen: list[object] = []
    starts: list[str] = []
    async with open_actor_system(tree(seen, starts)) as system:
        watcher = system.lookup("/root/watcher")
        await watcher.ask(("link", "/root/target"))
        system.lookup("/root/target").tell("crash")  # temporary: gone for good, abnormally
        with trio.fail_after(5):
            while starts != ["watcher", "watcher"]:
                await trio.sleep(0.01)
    assert seen == []  # it crashed instead of being told


async def test_a_normal_end_of_a_linked_actor_is_only_told():
    seen: list[object] = []
    starts: list[str] = []
    async with open_actor_system(tree(seen, starts)) as system:
        watcher = system.lookup("/root/watcher")
        await watcher.ask(("link", "/root/target"))
        system.lookup("/root/target").tell("stop")
        await settle()
    assert starts == ["watcher"] and seen == [Terminated(path="/root/target", reason="normal")]
