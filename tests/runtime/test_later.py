"""Answering an ask later (``Later``): the work runs beside the actor's next
messages, and its outcome answers the asker as ``handle``'s would."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing

from trioscope.runtime import (
    Actor, ActorFailed, ActorSpec, ActorStopped, Later, SupervisorSpec, open_actor_system,
)


class NotNow(Exception):
    """A refusal the actor declares."""


class Slow(Actor):
    """``("later", name)`` is answered once ``release(name)`` was asked; the
    rest at once."""

    refusals = (NotNow,)

    def __init__(self, done: list[Any], started: list[int]) -> None:
        self.done = done
        self.gates: dict[str, trio.Event] = {}
        started.append(1)

    async def handle(self, message: Any) -> Any:
        if isinstance(message, tuple) and message[0] == "later":
            gate = self.gates.setdefault(message[1], trio.Event())
            return Later(lambda: self._answer(message[1], gate))
        if isinstance(message, tuple) and message[0] == "release":
            self.gates.setdefault(message[1], trio.Event()).set()
            return "released"
        return ("now", message)

    async def _answer(self, name: str, gate: trio.Event) -> Any:
        await gate.wait()
        if name == "refuse":
            raise NotNow("not now")
        if name == "break":
            raise KeyError("a bug")
        self.done.append(name)
        return ("later", name)


def tree(done: list[Any], started: list[int]) -> SupervisorSpec:
    return SupervisorSpec(name="root", children=[ActorSpec(name="slow", factory=lambda: Slow(done, started))])


async def test_the_actor_answers_other_messages_while_a_later_answer_waits(autojump_clock):
    done: list[Any] = []
    async with open_actor_system(tree(done, [])) as system, trio.open_nursery() as nursery:
        slow = system.lookup("/root/slow")
        answers: list[Any] = []

        async def ask_later(name: str) -> None:
            answers.append(await slow.ask(("later", name), timeout=60))

        nursery.start_soon(ask_later, "a")
        nursery.start_soon(ask_later, "b")
        await trio.testing.wait_all_tasks_blocked()
        assert answers == [] and done == []
        assert await slow.ask("x") == ("now", "x")  # not held up behind "a" and "b"
        assert await slow.ask(("release", "b")) == "released"
        await trio.testing.wait_all_tasks_blocked()
        assert answers == [("later", "b")]
        await slow.ask(("release", "a"))
        await trio.testing.wait_all_tasks_blocked()
        assert answers == [("later", "b"), ("later", "a")]


async def test_a_refusal_of_the_later_work_is_raised_at_the_asker(autojump_clock):
    async with open_actor_system(tree([], [])) as system:
        slow = system.lookup("/root/slow")
        await slow.ask(("release", "refuse"))
        with pytest.raises(NotNow, match="not now"):
            await slow.ask(("later", "refuse"))
        assert await slow.ask("still") == ("now", "still")


async def test_a_failure_of_the_later_work_crashes_the_actor_and_reaches_the_asker(autojump_clock):
    started: list[int] = []
    async with open_actor_system(tree([], started)) as system:
        slow = system.lookup("/root/slow")
        await slow.ask(("release", "break"))
        with pytest.raises(ActorFailed, match="a bug"):
            await slow.ask(("later", "break"))
        assert await slow.ask("after") == ("now", "after")
        assert len(started) == 2  # restarted


async def test_a_later_answer_still_waiting_when_another_work_crashes_the_actor_is_that_crash(autojump_clock):
    """Not ``ActorStopped`` (nothing done, the actor gone for good): its work
    was under way when the crash of another cut it short."""
    started: list[int] = []
    async with open_actor_system(tree([], started)) as system, trio.open_nursery() as nursery:
        slow = system.lookup("/root/slow")
        failed: list[BaseException] = []

        async def ask_later() -> None:
            try:
                await slow.ask(("later", "never"), timeout=60)
            except ActorFailed as exc:
                failed.append(exc)

        nursery.start_soon(ask_later)
        await trio.testing.wait_all_tasks_blocked()
        await slow.ask(("release", "break"))
        with pytest.raises(ActorFailed):
            await slow.ask(("later", "break"))
        await trio.testing.wait_all_tasks_blocked()
        assert len(failed) == 1 and len(started) == 2
        assert isinstance(failed[0], ActorFailed) and isinstance(failed[0].cause, KeyError)


async def test_told_later_work_runs_and_its_answer_is_dropped(autojump_clock):
    done: list[Any] = []
    async with open_actor_system(tree(done, [])) as system:
        slow = system.lookup("/root/slow")
        slow.tell(("later", "told"))
        await slow.ask(("release", "told"))
        await trio.testing.wait_all_tasks_blocked()
        assert done == ["told"]


class AnswerLater:
    """Answered by work that fails once ``gate`` is set."""


class Hold:
    """Handled until ``hold`` is set."""


class Failing(Actor):
    def __init__(self, gate: trio.Event, hold: trio.Event) -> None:
        self.gate, self.hold = gate, hold

    async def handle(self, message: Any) -> Any:
        if isinstance(message, AnswerLater):
            return Later(self._fail)
        await self.hold.wait()
        return "held"

    async def _fail(self) -> None:
        await self.gate.wait()
        raise KeyError("a bug")


async def test_a_failed_later_work_is_logged_as_the_message_it_answered(autojump_clock, caplog):
    gate, hold = trio.Event(), trio.Event()
    spec = SupervisorSpec(name="root", children=[ActorSpec(name="failing", factory=lambda: Failing(gate, hold))])
    async with open_actor_system(spec) as system:
        failing = system.lookup("/root/failing")
        failing.tell(AnswerLater())
        failing.tell(Hold())  # handled (and waiting) when the work fails
        await trio.testing.wait_all_tasks_blocked()
        gate.set()
        await trio.testing.wait_all_tasks_blocked()
        crashes = [r.getMessage() for r in caplog.records if getattr(r, "event", None) == "crashed"]
        assert len(crashes) == 1 and "crashed handling AnswerLater: KeyError" in crashes[0], crashes
        hold.set()


class _TaskBreaks(Actor):
    """Handles ``("slow", x)`` for 5 s; ``"task"`` starts a task that fails in 1 s."""

    def __init__(self, handled: list[str]) -> None:
        self.handled = handled

    async def handle(self, message: Any) -> Any:
        if message == "task":
            self.context.start_soon(self._fails)
            return None
        await trio.sleep(5)
        self.handled.append(message)
        return message

    async def _fails(self) -> None:
        await trio.sleep(1)
        raise KeyError("the task's bug")


async def test_a_message_cut_short_by_a_background_tasks_crash_is_told_that_crash(autojump_clock):
    """Its asker was told ``ActorStopped`` (gone for good, nothing done) though
    the actor restarted at once, and a told one vanished uncounted."""
    handled: list[str] = []
    spec = SupervisorSpec(name="root", children=[ActorSpec(name="a", factory=lambda: _TaskBreaks(handled))])
    async with open_actor_system(spec) as system:
        actor = system.lookup("/root/a")
        await actor.ask("task")
        with pytest.raises(ActorFailed) as cut:
            await actor.ask("innocent", timeout=30)
        assert isinstance(cut.value.cause, KeyError)
        await actor.ask("task")
        actor.tell("told")
        before = system.dead_letters
        await trio.sleep(3)
        assert system.dead_letters == before + 1 and handled == []
        assert await actor.ask("after", timeout=30) == "after"  # restarted
