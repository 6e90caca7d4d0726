"""A ``Cutoff`` ends the scopes opened with it at a deadline set later, shields
and all; the system's ends what its actors shield from cancellation (an ask's
deadline given one, ``ActorRef.shielded``, ``ActorContext.in_thread``)."""

from __future__ import annotations

import threading
from typing import Any

import pytest
import trio

from tests.runtime.scripted import Block, Journal, settle, worker
from trioscope.runtime import Actor, ActorSpec, AskTimeout, Cutoff, SupervisorSpec, WorkAbandoned, open_actor_system


async def test_a_cut_ends_a_shielded_scope_that_no_other_cancellation_reaches(autojump_clock: Any) -> None:
    cutoff = Cutoff()
    with trio.CancelScope() as outer:
        outer.cancel()
        with cutoff.scope(shield=True) as shielded:
            started = trio.current_time()
            cutoff.cut(started + 3)
            await trio.sleep_forever()
        ended = trio.current_time()
    assert shielded.cancelled_caught and ended - started == pytest.approx(3)
    assert cutoff.cut_short == 1


async def test_a_scope_ends_at_its_own_timeout_or_the_cut_whichever_comes_first(autojump_clock: Any) -> None:
    cutoff = Cutoff()
    started = trio.current_time()
    cutoff.cut(started + 5)
    cutoff.cut(started + 50)  # later than the one set: nothing changes
    assert cutoff.at == started + 5 and not cutoff.reached
    with cutoff.scope(2) as early:
        await trio.sleep_forever()
    with cutoff.scope(10) as late:
        await trio.sleep_forever()
    assert early.cancelled_caught and late.cancelled_caught
    assert trio.current_time() - started == pytest.approx(5) and cutoff.reached
    with cutoff.scope(10) as after:  # opened once the cutoff has come: ended at once
        await trio.sleep_forever()
    assert after.cancelled_caught and trio.current_time() - started == pytest.approx(5)
    assert cutoff.cut_short == 1  # the late one alone: not the one that timed out, nor the one opened after


async def test_an_ask_given_a_cutoff_times_out_when_cut_and_says_it_was_taken(journal: Journal,
                                                                               autojump_clock: Any) -> None:
    cutoff = Cutoff()
    async with open_actor_system(SupervisorSpec(name="root", children=[worker("w", journal)])) as system:
        ref = system.lookup("/root/w")
        gate = trio.Event()
        started = trio.current_time()
        raised: list[AskTimeout] = []
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_cut_after, cutoff, 1.0)
            with trio.CancelScope(shield=True):  # as a poll shields its ask: only the cutoff ends it
                try:
                    await ref.ask(Block(gate), timeout=30, cutoff=cutoff)
                except AskTimeout as exc:
                    raised.append(exc)
        [timeout] = raised
        assert timeout.taken and trio.current_time() - started == pytest.approx(1)
        gate.set()


async def _cut_after(cutoff: Cutoff, seconds: float) -> None:
    await trio.sleep(seconds)
    cutoff.cut(trio.current_time())


class Writer(Actor):
    """Writes in a worker thread that waits for ``release``."""

    def __init__(self, release: threading.Event, outcomes: list[object]) -> None:
        self.release = release
        self.outcomes = outcomes

    async def handle(self, message: Any) -> Any:
        try:
            self.outcomes.append(await self.context.in_thread(self._write, what="a write"))
        except WorkAbandoned as exc:
            self.outcomes.append(exc)

    def _write(self) -> str:
        self.release.wait()
        return "written"


def _writer(release: threading.Event, outcomes: list[object]) -> SupervisorSpec:
    return SupervisorSpec(name="root", children=[
        ActorSpec(name="writer", factory=lambda: Writer(release, outcomes), shutdown_timeout=1.0)])


async def test_work_in_a_thread_is_waited_for_past_a_kill(autojump_clock: Any) -> None:
    release, outcomes = threading.Event(), []
    try:
        async with trio.open_nursery() as nursery:
            async with open_actor_system(_writer(release, outcomes)) as system:
                system.lookup("/root/writer").tell("write")
                await settle()
                started = trio.current_time()
                nursery.start_soon(_release_after, release, 5.0)
            # Leaving the block stops the system: the writer is killed after 1 s, and its write still waited for.
            assert outcomes == ["written"] and trio.current_time() - started >= 5
    finally:
        release.set()


async def _release_after(release: threading.Event, seconds: float) -> None:
    await trio.sleep(seconds)
    release.set()


async def test_work_in_a_thread_is_given_up_at_the_systems_cutoff(autojump_clock: Any) -> None:
    release, outcomes = threading.Event(), []
    try:
        async with open_actor_system(_writer(release, outcomes)) as system:
            system.lookup("/root/writer").tell("write")
            await settle()
            started = trio.current_time()
            system.cutoff.cut(started + 10)
        # Killed after 1 s, the writer waits for its thread until the cutoff, and not a moment more.
        assert trio.current_time() - started == pytest.approx(10)
        [abandoned] = outcomes
        assert isinstance(abandoned, WorkAbandoned) and abandoned.path == "/root/writer"
    finally:
        release.set()  # the thread left alone ends
