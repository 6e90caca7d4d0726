"""State an actor keeps across restarts, for as long as its spec lives."""

from __future__ import annotations

import pytest

from trioscope.runtime import Actor, ActorFailed, ActorSpec, Kept, SupervisorSpec, open_actor_system


class Counter(Actor):
    def __init__(self, counts: list[int]) -> None:
        self.counts = counts

    async def handle(self, message: object) -> object:
        if message == "count":
            self.counts.append(1)
            return len(self.counts)
        raise RuntimeError("crash")


async def test_every_incarnation_takes_the_state_the_first_one_made() -> None:
    made: list[list[int]] = []

    def make() -> list[int]:
        made.append([])
        return made[-1]

    kept = Kept(make)
    tree = SupervisorSpec(name="root", intensity=10, children=[
        ActorSpec(name="counter", factory=lambda: Counter(kept.take()))])
    async with open_actor_system(tree) as system:
        counter = system.lookup("/root/counter")
        assert await counter.ask("count") == 1
        for crashes in (1, 2, 3):  # crash after crash, quickly: the state goes on
            with pytest.raises(ActorFailed):
                await counter.ask("crash")
            assert await counter.ask("count") == 1 + crashes
        assert len(made) == 1
