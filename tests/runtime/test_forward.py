"""Answering an ask by forwarding it (``Forward``): the actor it is handed to
answers the original asker, within the asker's one deadline."""

from __future__ import annotations

from typing import Any

import pytest
import trio

from trioscope.runtime import (
    Actor, ActorFailed, ActorSpec, ActorStopped, AskTimeout, Forward, MailboxFull, SupervisorSpec, open_actor_system,
)


class NotNow(Exception):
    """A refusal the worker declares."""


class Worker(Actor):
    refusals = (NotNow,)

    def __init__(self, handled: list[Any]) -> None:
        self.handled = handled

    async def handle(self, message: Any) -> Any:
        if message == "refuse":
            raise NotNow("not now")
        if message == "break":
            raise KeyError("a bug")
        if isinstance(message, tuple) and message[0] == "sleep":
            await trio.sleep(message[1])
        self.handled.append(message)
        return ("worker", message)


class Router(Actor):
    """Forwards ``(delay, message)`` to the worker after ``delay`` seconds of its own."""

    def __init__(self, routed: list[Any]) -> None:
        self.routed = routed

    async def on_start(self) -> None:
        self.worker = self.context.system.lookup("/root/worker")

    async def handle(self, message: Any) -> Any:
        delay, inner = message
        await trio.sleep(delay)
        self.routed.append(inner)
        return Forward(self.worker, inner)


def tree(handled: list[Any], routed: list[Any], worker_mailbox: int = 16) -> SupervisorSpec:
    return SupervisorSpec(name="root", children=[
        ActorSpec(name="worker", factory=lambda: Worker(handled), mailbox_size=worker_mailbox),
        ActorSpec(name="router", factory=lambda: Router(routed)),
    ])


async def test_the_forwarded_to_actor_answers_the_asker(autojump_clock):
    handled: list[Any] = []
    routed: list[Any] = []
    async with open_actor_system(tree(handled, routed)) as system:
        router = system.lookup("/root/router")
        assert await router.ask((0, "hello")) == ("worker", "hello")
        assert handled == ["hello"] and routed == ["hello"]
        router.tell((0, "told"))  # told: told on, nobody answers
        assert await router.ask((0, "after")) == ("worker", "after")
        assert handled == ["hello", "told", "after"]


async def test_a_refusal_of_the_forwarded_to_actor_is_raised_at_the_asker(autojump_clock):
    async with open_actor_system(tree([], [])) as system:
        with pytest.raises(NotNow, match="not now"):
            await system.lookup("/root/router").ask((0, "refuse"))


async def test_a_crash_of_the_forwarded_to_actor_reaches_the_asker_as_actor_failed(autojump_clock):
    async with open_actor_system(tree([], [])) as system:
        router = system.lookup("/root/router")
        with pytest.raises(ActorFailed) as info:
            await router.ask((0, "break"))
        assert info.value.path == "/root/worker" and isinstance(info.value.cause, KeyError)
        assert await router.ask((0, "again")) == ("worker", "again")  # the router never crashed
        assert system.snapshot().root.children[1].restarts == 0


async def test_a_forward_to_a_stopped_actor_is_raised_at_the_asker(autojump_clock):
    async with open_actor_system(tree([], [])) as system:
        await system.root.stop_child("worker")
        with pytest.raises(ActorStopped) as info:
            await system.lookup("/root/router").ask((0, "hello"))
        assert info.value.path == "/root/worker"


async def test_a_forward_to_a_full_mailbox_is_raised_at_the_asker(autojump_clock):
    handled: list[Any] = []
    async with open_actor_system(tree(handled, [], worker_mailbox=1)) as system:
        worker, router = system.lookup("/root/worker"), system.lookup("/root/router")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(worker.ask, ("sleep", 10), 20)  # busy for 10 s
            await trio.sleep(1)
            worker.tell("queued")  # its one place taken
            with pytest.raises(MailboxFull):
                await router.ask((0, "hello"))
        assert handled == [("sleep", 10), "queued"]


async def test_the_deadline_covers_the_forwarded_handling(autojump_clock):
    handled: list[Any] = []
    async with open_actor_system(tree(handled, [])) as system:
        started = trio.current_time()
        with pytest.raises(AskTimeout) as info:
            await system.lookup("/root/router").ask((1, ("sleep", 5)), timeout=3)
        assert trio.current_time() - started == pytest.approx(3)
        assert info.value.taken  # the worker had started on it: it finishes, unknown to the asker
        await trio.sleep(5)
        assert handled == [("sleep", 5)]


async def test_a_forwarded_ask_given_up_in_the_mailbox_is_not_taken_and_dropped(autojump_clock):
    handled: list[Any] = []
    routed: list[Any] = []
    async with open_actor_system(tree(handled, routed)) as system:
        worker, router = system.lookup("/root/worker"), system.lookup("/root/router")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(worker.ask, ("sleep", 10), 20)  # busy for 10 s
            await trio.sleep(1)
            with pytest.raises(AskTimeout) as info:
                await router.ask((1, "late"), timeout=3)  # routed at 2 s, waits in the worker's mailbox
            assert not info.value.taken  # the router's part happened, the worker's never will
            assert routed == ["late"]
        assert await worker.ask("next") == ("worker", "next")
        assert handled == [("sleep", 10), "next"]
