"""Timers owned by an actor's incarnation: ``send_after`` and ``every``."""

from __future__ import annotations

import pytest
import trio

from trioscope.runtime import Actor, ActorFailed, ActorSpec, Restart, SupervisorSpec, Timer, open_actor_system


class Ticking(Actor):
    """Records what it handles, with trio's clock; its timers are set up by messages."""

    def __init__(self, log: list[tuple[float, object]], *, slow: float = 0.0, stop_log: list[str] | None = None,
                 period: float | None = None) -> None:
        self.log = log
        self.slow = slow
        self.stop_log = stop_log
        self.period = period
        self.timers: dict[str, Timer] = {}

    async def on_start(self) -> None:
        if self.period is not None:
            self.context.every(self.period, "tick")

    async def handle(self, message: object) -> object:
        if isinstance(message, tuple) and message[0] == "after":
            self.timers[message[2]] = self.context.send_after(message[1], message[2])
            return None
        if isinstance(message, tuple) and message[0] == "every":
            self.timers[message[2]] = self.context.every(message[1], message[2])
            return None
        if isinstance(message, tuple) and message[0] == "cancel":
            self.timers[message[1]].cancel()
            return None
        if message == "crash":
            raise RuntimeError("boom")
        self.log.append((trio.current_time(), message))
        if self.slow:
            await trio.sleep(self.slow)
        return None

    async def on_stop(self) -> None:
        if self.stop_log is not None:
            self.stop_log.append("stopping")
            await trio.sleep(0.5)  # a final flush that takes a while, as the topology's does
            self.stop_log.append("stopped")


def tree(factory, restart: Restart = Restart.PERMANENT) -> SupervisorSpec:
    return SupervisorSpec(name="root", children=[ActorSpec(name="t", factory=factory, restart=restart)])


async def test_send_after_delivers_once_after_the_delay(autojump_clock):
    log: list[tuple[float, object]] = []
    async with open_actor_system(tree(lambda: Ticking(log))) as system:
        start = trio.current_time()
        await system.lookup("/root/t").ask(("after", 5.0, "later"))
        await trio.sleep(20)
    assert [(round(at - start), m) for at, m in log] == [(5, "later")]


async def test_every_fires_each_period(autojump_clock):
    log: list[tuple[float, object]] = []
    async with open_actor_system(tree(lambda: Ticking(log, period=2.0))):
        start = trio.current_time()
        await trio.sleep(9)
    assert [round(at - start) for at, _ in log] == [2, 4, 6, 8]


async def test_a_periodic_tick_is_not_queued_twice(autojump_clock):
    """The actor takes 5 s per tick of a 1 s timer: ticks coalesce instead of piling up."""
    log: list[tuple[float, object]] = []
    async with open_actor_system(tree(lambda: Ticking(log, slow=5.0, period=1.0))) as system:
        await trio.sleep(30)
        depth = system.snapshot().root.children[0].mailbox_depth
    assert depth <= 1
    assert 5 <= len(log) <= 7


async def test_a_cancelled_timer_fires_no_more_and_its_queued_firing_is_dropped(autojump_clock):
    log: list[tuple[float, object]] = []
    async with open_actor_system(tree(lambda: Ticking(log))) as system:
        ref = system.lookup("/root/t")
        await ref.ask(("every", 1.0, "beat"))
        await trio.sleep(3.5)
        await ref.ask(("cancel", "beat"))
        await trio.sleep(10)
    assert [m for _, m in log] == ["beat"] * 3


async def test_timers_end_with_their_incarnation(autojump_clock):
    log: list[tuple[float, object]] = []
    async with open_actor_system(tree(lambda: Ticking(log))) as system:
        ref = system.lookup("/root/t")
        await ref.ask(("every", 1.0, "old"))
        await trio.sleep(2.5)
        ref.tell("crash")  # restarted: a fresh incarnation, without the old timer
        await trio.sleep(10)
    assert [m for _, m in log] == ["old", "old"]


async def test_a_timer_firing_during_shutdown_lets_on_stop_finish(autojump_clock):
    """A tick told after shutdown closed the mailbox used to raise into the actor
    and cut its on_stop short."""
    log: list[tuple[float, object]] = []
    stop_log: list[str] = []
    async with open_actor_system(tree(lambda: Ticking(log, stop_log=stop_log, period=0.1))):
        await trio.sleep(1)
    assert stop_log == ["stopping", "stopped"]


async def test_bad_delays_are_refused(autojump_clock):
    async with open_actor_system(tree(lambda: Ticking([]))) as system:
        ref = system.lookup("/root/t")
        for bad, words in ((("every", 0, "x"), "invalid period"), (("every", float("inf"), "x"), "invalid period"),
                           (("after", -1.0, "x"), "invalid delay")):
            with pytest.raises(ActorFailed) as failed:
                await ref.ask(bad)
            assert words in str(failed.value)
