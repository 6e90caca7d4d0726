"""Declared refusals: answers raised at the asker, not crashes."""

from __future__ import annotations

import pytest
import trio

from trioscope.runtime import Actor, ActorFailed, ActorSpec, SupervisorSpec, open_actor_system


class NotNow(Exception):
    """A refusal this actor declares."""


class Picky(Actor):
    refusals = (NotNow,)

    def __init__(self, starts: list[int]) -> None:
        starts.append(1)
        self.handled = 0

    async def handle(self, message: object) -> object:
        self.handled += 1
        if message == "refuse":
            raise NotNow("not now")
        if message == "break":
            raise KeyError("a bug")
        return self.handled


def tree(starts: list[int]) -> SupervisorSpec:
    return SupervisorSpec(name="root", children=[ActorSpec(name="p", factory=lambda: Picky(starts))])


async def test_a_refusal_is_raised_at_the_asker_and_the_actor_carries_on():
    starts: list[int] = []
    async with open_actor_system(tree(starts)) as system:
        ref = system.lookup("/root/p")
        with pytest.raises(NotNow, match="not now"):
            await ref.ask("refuse")
        assert await ref.ask("again") == 2  # the same incarnation: its state survived
        ref.tell("refuse")  # told: nobody to answer, and no crash either
        assert await ref.ask("again") == 4
        assert starts == [1]
        assert system.snapshot().root.children[0].restarts == 0


async def test_anything_else_is_a_crash():
    starts: list[int] = []
    async with open_actor_system(tree(starts)) as system:
        ref = system.lookup("/root/p")
        with pytest.raises(ActorFailed):
            await ref.ask("break")
        with trio.fail_after(5):
            assert await ref.ask("again") == 1  # a fresh incarnation
        assert starts == [1, 1]
