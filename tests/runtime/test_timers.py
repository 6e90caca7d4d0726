"""Timers owned by an actor's incarnation: ``send_after`` and ``every``."""

from __future__ import annotations

import pytest
import trio

from trioscope.runtime import (
    MIN_TIMER, Actor, ActorFailed, ActorSpec, Restart, StartFailed, SupervisorSpec, Timer, open_actor_system,
)


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


def tasks_under(task: trio.lowlevel.Task) -> int:
    return 1 + sum(tasks_under(child) for nursery in task.child_nurseries for child in nursery.child_tasks)


class ManyTimers(Actor):
    """Sets ``count`` periodic timers when asked, counting what they bring."""

    def __init__(self) -> None:
        self.fired = 0

    async def handle(self, message: object) -> object:
        if isinstance(message, int):
            for _ in range(message):
                self.context.every(1.0, "tick")
            return None
        if message == "tick":
            self.fired += 1
            return None
        if message == "fired":
            return self.fired
        return await super().handle(message)


async def test_timers_wait_in_one_task_not_one_each(autojump_clock):
    """Every WebSocket client and agent has a periodic timer: a task each cost a
    few KiB per client."""
    async with open_actor_system(tree(ManyTimers)) as system:
        ref = system.lookup("/root/t")
        root = trio.lowlevel.current_root_task()
        before = tasks_under(root)
        await ref.ask(500)
        assert tasks_under(root) == before
        assert len(system.timers) == 500
        await trio.sleep(3.5)
        assert await ref.ask("fired") == 1500


class Filling(Actor):
    """Handles nothing until released, so that its mailbox fills; logs what it handles."""

    def __init__(self, log: list[object], release: trio.Event) -> None:
        self.log = log
        self.release = release

    async def handle(self, message: object) -> object:
        if message == "arm":
            self.context.send_after(1.0, "owed")
            return None
        await self.release.wait()
        self.log.append(message)
        return None


async def test_a_one_shot_timer_into_a_full_mailbox_waits_for_room(autojump_clock):
    log: list[object] = []
    release = trio.Event()
    spec = SupervisorSpec(name="root", children=[
        ActorSpec(name="t", factory=lambda: Filling(log, release), mailbox_size=3)])
    async with open_actor_system(spec) as system:
        ref = system.lookup("/root/t")
        await ref.ask("arm")
        ref.tell(0)
        await trio.sleep(0.1)  # taken: the actor waits in handle(0)
        for i in (1, 2, 3):  # queued: full
            ref.tell(i)
        await trio.sleep(5)  # the timer came due meanwhile, into the full mailbox
        release.set()
        await trio.sleep(1)
    assert log == [0, 1, 2, 3, "owed"]


async def test_cancelled_timers_do_not_pile_up(autojump_clock):
    """A timer re-armed on every change (a deadline moved) and cancelled each
    time leaves no entry behind for long."""
    async with open_actor_system(tree(lambda: Ticking([]))) as system:
        ref = system.lookup("/root/t")
        for _ in range(2000):
            await ref.ask(("after", 3600.0, "x"))
            await ref.ask(("cancel", "x"))
        assert len(system.timers) == 0
        assert system.timers.held <= 130


class Closing(Actor):
    def __init__(self, closed: list[str]) -> None:
        self.closed = closed

    async def on_start(self) -> None:
        self.context.at_end(lambda: self.closed.append("closed"))

    async def handle(self, message: object) -> object:
        raise RuntimeError("boom")


async def test_at_end_runs_when_the_incarnation_crashes_and_when_it_stops(autojump_clock):
    closed: list[str] = []
    async with open_actor_system(tree(lambda: Closing(closed), restart=Restart.PERMANENT)) as system:
        system.lookup("/root/t").tell("crash")
        await trio.sleep(5)
        assert closed == ["closed"]  # the crashed one; its restart is running
    assert closed == ["closed", "closed"]


class Waking(Actor):
    """Sets its ``Alarm`` as told; records each ring with the time and whether
    the alarm still counted as armed in the handler, then sets it again for
    each of ``again`` in turn (seconds from the ring)."""

    def __init__(self, rings: list[tuple[float, bool]], *, minimum: float | None = None,
                 again: list[float] | None = None) -> None:
        self.rings = rings
        self.minimum = minimum
        self.again = again or []

    async def on_start(self) -> None:
        self.alarm = (self.context.alarm("ring") if self.minimum is None
                      else self.context.alarm("ring", minimum=self.minimum))

    async def handle(self, message: object) -> object:
        if message == "ring":
            self.rings.append((trio.current_time(), self.alarm.armed))
            if self.again:
                self.alarm.after(self.again.pop(0))
            return None
        if isinstance(message, tuple) and message[0] == "after":
            self.alarm.after(message[1])
            return self.alarm.due
        if isinstance(message, tuple) and message[0] == "at":
            self.alarm.at(trio.current_time() + message[1])
            return self.alarm.due
        if message == "cancel":
            self.alarm.cancel()
            return self.alarm.armed, self.alarm.due
        if message == "crash":
            raise RuntimeError("boom")
        return await super().handle(message)


async def test_an_alarm_fires_once_at_the_earliest_time_it_was_set_for(autojump_clock):
    rings: list[tuple[float, bool]] = []
    async with open_actor_system(tree(lambda: Waking(rings))) as system:
        ref = system.lookup("/root/t")
        start = trio.current_time()
        assert await ref.ask(("after", 5.0)) == start + 5.0
        assert await ref.ask(("after", 10.0)) == start + 5.0  # later: stays as it is
        assert await ref.ask(("at", 3.0)) == start + 3.0  # earlier: moves
        await trio.sleep(20)
    assert [(round(at - start, 3), armed) for at, armed in rings] == [(3.0, False)]


async def test_an_alarm_is_never_sooner_than_its_minimum(autojump_clock):
    rings: list[tuple[float, bool]] = []
    async with open_actor_system(tree(lambda: Waking(rings))) as system:
        ref = system.lookup("/root/t")
        start = trio.current_time()
        assert await ref.ask(("after", -30.0)) == start + MIN_TIMER  # a time past
        await trio.sleep(1)
    assert [round(at - start, 3) for at, _ in rings] == [MIN_TIMER]

    rings.clear()
    async with open_actor_system(tree(lambda: Waking(rings, minimum=0.0))) as system:
        start = trio.current_time()
        assert await system.lookup("/root/t").ask(("after", -1.0)) == start
        await trio.sleep(1)
    assert [at - start for at, _ in rings] == [0.0]


async def test_an_alarm_is_clear_once_its_message_is_taken_and_may_be_set_again(autojump_clock):
    """Its handler sees it unset, and sets it again for later: it fires again."""
    rings: list[tuple[float, bool]] = []
    async with open_actor_system(tree(lambda: Waking(rings, again=[2.0, 4.0]))) as system:
        start = trio.current_time()
        await system.lookup("/root/t").ask(("after", 1.0))
        await trio.sleep(20)
    assert [(round(at - start, 3), armed) for at, armed in rings] == [(1.0, False), (3.0, False), (7.0, False)]


async def test_a_cancelled_alarm_does_not_fire(autojump_clock):
    rings: list[tuple[float, bool]] = []
    async with open_actor_system(tree(lambda: Waking(rings))) as system:
        ref = system.lookup("/root/t")
        await ref.ask(("after", 1.0))
        assert await ref.ask("cancel") == (False, None)
        await trio.sleep(5)
        start = trio.current_time()
        await ref.ask(("after", 10.0))  # set again after a cancel: from scratch
        await trio.sleep(20)
    assert [round(at - start, 3) for at, _ in rings] == [10.0]


async def test_an_alarm_ends_with_its_incarnation(autojump_clock):
    rings: list[tuple[float, bool]] = []
    async with open_actor_system(tree(lambda: Waking(rings))) as system:
        ref = system.lookup("/root/t")
        await ref.ask(("after", 5.0))
        ref.tell("crash")
        await trio.sleep(20)
        assert len(system.timers) == 0
    assert rings == []


async def test_bad_alarm_times_are_refused(autojump_clock):
    async with open_actor_system(tree(lambda: Waking([]))) as system:
        ref = system.lookup("/root/t")
        for bad in (float("nan"), float("inf")):
            for how, words in (("after", "invalid delay"), ("at", "invalid time")):
                with pytest.raises(ActorFailed) as failed:
                    await ref.ask((how, bad))
                assert words in str(failed.value)
    with pytest.raises(StartFailed) as refused:
        async with open_actor_system(tree(lambda: Waking([], minimum=-1.0))):
            pytest.fail("the system must not start")
    assert "invalid minimum" in str(refused.value.cause)


class Sweeping(Actor):
    """Forgets up to ``batch`` of ``left`` items per sweep (each taking ``slow``
    seconds), each period; records every message it handles, with the time."""

    def __init__(self, log: list[tuple[float, object]], left: int, *, batch: int = 3, slow: float = 0.0,
                 release: trio.Event | None = None) -> None:
        self.log = log
        self.left = left
        self.batch = batch
        self.slow = slow
        self.release = release
        self.again: list[bool] = []

    async def on_start(self) -> None:
        self.sweep = self.context.sweep(60.0, "sweep", first=0.0)

    async def handle(self, message: object) -> object:
        if message == "again":
            return self.again
        if message == "more":
            self.left += 7
            return None
        if self.release is not None:
            await self.release.wait()
        self.log.append((trio.current_time(), message))
        if message == "sweep":
            done = min(self.batch, self.left)
            self.left -= done
            await trio.sleep(self.slow)
            if done == self.batch:
                self.again.append(self.sweep.again())
        return None


async def test_a_sweep_runs_each_period_and_again_behind_waiting_messages_while_a_batch_is_full(autojump_clock):
    log: list[tuple[float, object]] = []
    async with open_actor_system(tree(lambda: Sweeping(log, left=7, slow=1.0))) as system:
        ref = system.lookup("/root/t")
        start = trio.current_time()
        await trio.sleep(0.5)
        ref.tell("a")  # waiting while the first batch runs
        ref.tell("b")
        await trio.sleep(10)
        await ref.ask("more")
        await trio.sleep(60)
    assert [(round(at - start), m) for at, m in log] == [
        (0, "sweep"), (1, "a"), (1, "b"), (1, "sweep"), (2, "sweep"),  # 3, 3, then 1: done
        (60, "sweep"), (61, "sweep"), (62, "sweep")]


async def test_a_sweep_that_finds_the_mailbox_full_waits_for_the_next_period(autojump_clock):
    log: list[tuple[float, object]] = []
    release = trio.Event()
    spec = SupervisorSpec(name="root", children=[
        ActorSpec(name="t", factory=lambda: Sweeping(log, left=100, release=release), mailbox_size=2)])
    async with open_actor_system(spec) as system:
        ref = system.lookup("/root/t")
        await trio.sleep(1)  # the first sweep waits in handle
        ref.tell("x")
        ref.tell("y")  # full
        release.set()
        await trio.sleep(1)
        assert [m for _, m in log] == ["sweep", "x", "y"]
        assert await ref.ask("again") == [False]
        await trio.sleep(60)
        assert [m for _, m in log][3:] == ["sweep"] * 33  # the next period's, then batch after batch
        assert await ref.ask("again") == [False] + [True] * 32  # the last batch of 97 is 1: done


class Awaiting(Actor):
    """Starts its ``Waiting`` on a gate (a ``trio.Event`` the test sets) as
    told; records each message the wait tells, with the time and whether the
    waiting still counted as active in the handler, and each start of an incarnation."""

    def __init__(self, told: list[tuple[float, object, bool]], gates: list[trio.Event],
                 starts: list[float] | None = None, message: object = "opened") -> None:
        self.told = told
        self.gates = gates
        self.starts = starts if starts is not None else []
        self.message = message

    async def on_start(self) -> None:
        self.starts.append(trio.current_time())
        self.waiting = self.context.waiting(self.message)

    async def handle(self, message: object) -> object:
        if isinstance(message, tuple) and message[0] == "start":
            _, value, not_before = message
            return self.waiting.start(self._wait, value, not_before=trio.current_time() + not_before)
        if message == "active":
            return self.waiting.active
        if message == "crash":
            raise RuntimeError("boom")
        if isinstance(message, str):
            self.told.append((trio.current_time(), message, self.waiting.active))
            return None
        return await super().handle(message)

    async def _wait(self, value: object) -> object:
        gate = trio.Event()
        self.gates.append(gate)
        await gate.wait()
        if value == "raise":
            raise RuntimeError("the wait failed")
        return value


async def _until(condition) -> None:
    with trio.fail_after(5):
        while not condition():
            await trio.sleep(0.01)


async def test_a_waiting_tells_its_end_once_and_starts_no_second_wait_until_that_is_handled(autojump_clock):
    told: list[tuple[float, object, bool]] = []
    gates: list[trio.Event] = []
    async with open_actor_system(tree(lambda: Awaiting(told, gates))) as system:
        ref = system.lookup("/root/t")
        assert await ref.ask(("start", "first", 0.0)) is True
        assert await ref.ask(("start", "second", 0.0)) is False  # one at a time
        await _until(lambda: len(gates) == 1)
        assert await ref.ask("active") is True
        gates[0].set()
        await _until(lambda: len(told) == 1)
        assert await ref.ask("active") is False
        assert await ref.ask(("start", None, 0.0)) is True  # the next wait, once the first was handled
        await _until(lambda: len(gates) == 2)
        gates[1].set()
        await _until(lambda: len(told) == 2)
    assert [(message, active) for _, message, active in told] == [("first", False), ("opened", False)]
    assert len(gates) == 2


async def test_a_waiting_tells_no_sooner_than_it_was_asked(autojump_clock):
    told: list[tuple[float, object, bool]] = []
    gates: list[trio.Event] = []
    async with open_actor_system(tree(lambda: Awaiting(told, gates))) as system:
        ref = system.lookup("/root/t")
        start = trio.current_time()
        await ref.ask(("start", "later", 10.0))
        await _until(lambda: len(gates) == 1)
        gates[0].set()
        await trio.sleep(2)
        assert told == [] and await ref.ask("active") is True  # ended, its message not handled yet
        await trio.sleep(20)
    assert [(round(at - start), message) for at, message, _ in told] == [(10, "later")]


async def test_a_waiting_ends_with_its_incarnation(autojump_clock):
    told: list[tuple[float, object, bool]] = []
    gates: list[trio.Event] = []
    starts: list[float] = []
    async with open_actor_system(tree(lambda: Awaiting(told, gates, starts))) as system:
        ref = system.lookup("/root/t")
        await ref.ask(("start", "cancelled", 0.0))
        await _until(lambda: len(gates) == 1)
        ref.tell("crash")  # while it waits: the wait is cancelled
        await _until(lambda: len(starts) == 2)
        assert await ref.ask("active") is False  # the next incarnation's own
        gates[0].set()
        assert await ref.ask(("start", "dropped", 5.0)) is True
        await _until(lambda: len(gates) == 2)
        gates[1].set()
        await trio.sleep(1)
        ref.tell("crash")  # ended while its message waits for its time: dropped
        await _until(lambda: len(starts) == 3)
        await trio.sleep(20)
        assert len(system.timers) == 0
    assert told == []


async def test_a_wait_that_raises_or_has_nothing_to_tell_crashes_the_actor(autojump_clock):
    for value, message in (("raise", "opened"), (None, None)):
        told: list[tuple[float, object, bool]] = []
        gates: list[trio.Event] = []
        starts: list[float] = []
        async with open_actor_system(tree(lambda: Awaiting(told, gates, starts, message))) as system:
            ref = system.lookup("/root/t")
            await ref.ask(("start", value, 0.0))
            await _until(lambda: len(gates) == 1)
            gates[0].set()
            await _until(lambda: len(starts) == 2)
        assert told == []
