"""Supervisors, along OTP's axes: strategy, restart type, intensity, backoff, shutdown."""

from __future__ import annotations

import itertools
import logging
from typing import Any

import pytest
import trio

from tests.runtime.scripted import Block, Crash, Hang, Journal, StopSelf, Worker, settle, worker
from trioscope.runtime import (
    ActorFailed,
    ActorSpec,
    Backoff,
    Restart,
    RestartIntensityExceeded,
    StartFailed,
    Strategy,
    SupervisorSpec,
    open_actor_system,
)


def three(journal: Journal, strategy: Strategy, **kwargs) -> SupervisorSpec:
    return SupervisorSpec(
        name="root",
        strategy=strategy,
        children=[worker(n, journal) for n in ("a", "b", "c")],
        **kwargs,
    )


async def crash_and_settle(system, path: str) -> None:
    system.lookup(path).tell(Crash())
    await settle()


async def test_one_for_one_restarts_only_the_crashed_child(journal: Journal):
    async with open_actor_system(three(journal, Strategy.ONE_FOR_ONE)) as system:
        await crash_and_settle(system, "/root/b")
        assert [journal.starts(n) for n in "abc"] == [1, 2, 1]
        assert journal.of("stop") == []


async def test_one_for_all_stops_the_others_in_reverse_order_and_restarts_all_in_order(journal: Journal):
    async with open_actor_system(three(journal, Strategy.ONE_FOR_ALL)) as system:
        journal.entries.clear()
        await crash_and_settle(system, "/root/b")
        events = [(e[0], e[1]) for e in journal.entries if e[0] in ("start", "stop")]
        assert events == [("stop", "c"), ("stop", "a"), ("start", "a"), ("start", "b"), ("start", "c")]


async def test_rest_for_one_restarts_the_crashed_child_and_those_started_after_it(journal: Journal):
    async with open_actor_system(three(journal, Strategy.REST_FOR_ONE)) as system:
        journal.entries.clear()
        await crash_and_settle(system, "/root/b")
        events = [(e[0], e[1]) for e in journal.entries if e[0] in ("start", "stop")]
        assert events == [("stop", "c"), ("start", "b"), ("start", "c")]


async def test_siblings_stopped_for_a_restart_keep_their_queued_messages(journal: Journal):
    async with open_actor_system(three(journal, Strategy.ONE_FOR_ALL)) as system:
        c = system.lookup("/root/c")
        gate = trio.Event()
        c.tell(Block(gate))
        await settle()
        c.tell("queued")
        system.lookup("/root/a").tell(Crash())
        await settle()
        gate.set()  # c finishes its current message, is stopped, restarted
        await settle()
        handled = [(e[2], e[3]) for e in journal.of("handle", "c")]
        assert handled[-1] == (journal.of("start", "c")[-1][2], "queued")


@pytest.mark.parametrize(
    ("restart", "message", "restarted"),
    [
        (Restart.PERMANENT, Crash(), True),
        (Restart.PERMANENT, StopSelf(), True),
        (Restart.TRANSIENT, Crash(), True),
        (Restart.TRANSIENT, StopSelf(), False),
        (Restart.TEMPORARY, Crash(), False),
        (Restart.TEMPORARY, StopSelf(), False),
    ],
    ids=[
        "permanent-abnormal-restarts",
        "permanent-normal-restarts",
        "transient-abnormal-restarts",
        "transient-normal-terminates",
        "temporary-abnormal-terminates",
        "temporary-normal-terminates",
    ],
)
async def test_restart_types(journal: Journal, restart: Restart, message, restarted: bool):
    spec = SupervisorSpec(name="root", children=[worker("w", journal, restart=restart)])
    async with open_actor_system(spec) as system:
        ref = system.lookup("/root/w")
        ref.tell(message)
        await settle()
        assert journal.starts("w") == (2 if restarted else 1)
        assert ref.alive is restarted


async def test_temporary_children_are_not_restarted_by_one_for_all(journal: Journal):
    spec = SupervisorSpec(
        name="root",
        strategy=Strategy.ONE_FOR_ALL,
        children=[worker("a", journal), worker("t", journal, restart=Restart.TEMPORARY)],
    )
    async with open_actor_system(spec) as system:
        system.lookup("/root/t").tell(StopSelf())
        await settle()
        await crash_and_settle(system, "/root/a")
        assert journal.starts("a") == 2 and journal.starts("t") == 1


async def test_intensity_allows_five_restarts_in_the_period(journal: Journal, autojump_clock):
    async with open_actor_system(three(journal, Strategy.ONE_FOR_ONE)) as system:
        for _ in range(5):
            await crash_and_settle(system, "/root/a")
        assert journal.starts("a") == 6
        assert system.snapshot().root.status == "running"


async def test_restarts_spread_beyond_the_period_never_escalate(journal: Journal, autojump_clock):
    async with open_actor_system(three(journal, Strategy.ONE_FOR_ONE, intensity=2, period=10)) as system:
        for _ in range(6):
            await crash_and_settle(system, "/root/a")
            await trio.sleep(6)
        assert journal.starts("a") == 7


async def test_one_for_all_escalates_after_intensity_and_the_root_takes_the_system_down(journal: Journal):
    with pytest.RaisesGroup(RestartIntensityExceeded, flatten_subgroups=True):
        async with open_actor_system(three(journal, Strategy.ONE_FOR_ALL, intensity=2)) as system:
            for _ in range(3):
                system.lookup("/root/a").tell(Crash())
                await settle()
            await trio.sleep_forever()  # cancelled when the root gives up
    assert journal.starts("a") == 3


async def test_a_nested_supervisor_that_gives_up_is_restarted_by_its_parent(journal: Journal):
    inner = SupervisorSpec(name="inner", intensity=1, children=[worker("w", journal)])
    spec = SupervisorSpec(name="root", children=[worker("first", journal), inner])
    async with open_actor_system(spec) as system:
        w = system.lookup("/root/inner/w")
        for _ in range(2):
            w.tell(Crash())
            await settle()
        root = system.snapshot().root
        inner_stats = root.children[1]
        assert inner_stats.restarts == 1 and inner_stats.status == "running"
        assert journal.starts("first") == 1  # one_for_one at the root
        assert journal.starts("w") == 3
        latest = journal.of("start", "w")[-1][2]
        assert await w.ask("same ref") == ("w", latest, "same ref")


async def test_backoff_delays_each_restart_exponentially(journal: Journal, autojump_clock):
    spec = SupervisorSpec(
        name="root",
        children=[worker("w", journal)],
        backoff=Backoff(initial=1.0, maximum=4.0, factor=2.0),
        intensity=10,
        period=1000,
    )
    async with open_actor_system(spec) as system:
        ref = system.lookup("/root/w")
        delays = []
        for _ in range(4):
            crashed_at = trio.current_time()
            ref.tell(Crash())
            assert await ref.ask("back?", timeout=None)
            delays.append(trio.current_time() - crashed_at)
        assert delays == pytest.approx([1.0, 2.0, 4.0, 4.0])


async def test_messages_sent_during_backoff_wait_for_the_restarted_actor(journal: Journal, autojump_clock):
    spec = SupervisorSpec(name="root", children=[worker("w", journal)], backoff=Backoff(initial=5.0))
    async with open_actor_system(spec) as system:
        ref = system.lookup("/root/w")
        ref.tell(Crash())
        await settle()
        assert system.snapshot().root.children[0].status == "restarting"
        ref.tell("waiting")
        assert await ref.ask("probe", timeout=None) == ("w", 2, "probe")
        assert journal.handled("w")[-2:] == ["waiting", "probe"]


async def test_a_restart_whose_start_fails_counts_against_the_intensity(journal: Journal):
    attempts = []

    def fail_after_first() -> bool:
        attempts.append(1)
        return len(attempts) > 1

    spec = SupervisorSpec(name="root", intensity=3, children=[worker("w", journal, fail_start=fail_after_first)])
    with pytest.RaisesGroup(RestartIntensityExceeded, flatten_subgroups=True):
        async with open_actor_system(spec) as system:
            system.lookup("/root/w").tell(Crash())
            await trio.sleep_forever()
    # The first start, then three failing restarts; the fourth restart would exceed
    # the intensity of 3, so the supervisor gives up instead of attempting it.
    assert len(attempts) == 1 + 3


def database_down(error: BaseException) -> bool:
    """The scripted children's dependency errors: a failing start (RuntimeError),
    a crash (ValueError, ``Crash``)."""
    return isinstance(error, RuntimeError | ValueError)


async def test_a_child_with_its_own_backoff_waits_out_failing_starts_without_escalating(
        journal: Journal, autojump_clock):
    # A database away for a minute: the child's start fails ~every attempt, yet
    # its supervisor (intensity 5 in 30 s) neither gives up nor restarts it in a burst.
    down_until = 60.0
    attempts: list[float] = []

    def database_is_down() -> bool:
        attempts.append(trio.current_time())
        return len(attempts) > 1 and trio.current_time() < down_until  # up at the first start

    store = worker("store", journal, fail_start=database_is_down,
                   backoff=Backoff(initial=0.5, maximum=5.0), backoff_on=database_down)
    spec = SupervisorSpec(name="root", children=[store, worker("other", journal)])
    with pytest.RaisesGroup(RestartIntensityExceeded, flatten_subgroups=True):
        async with open_actor_system(spec) as system:
            ref = system.lookup("/root/store")
            ref.tell(Crash())
            assert await ref.ask("back?", timeout=None)
            assert trio.current_time() >= down_until
            gaps = [b - a for a, b in itertools.pairwise(attempts[1:])]
            assert min(gaps) >= 0.5 and max(gaps) <= 5.0
            assert len(attempts) < 30  # paced, not a burst of thousands
            # The other child's crashes still count against the supervisor's
            # intensity, from zero: five are restarted, the sixth makes it give up.
            for _ in range(5):
                await crash_and_settle(system, "/root/other")
            assert system.snapshot().root.status == "running"
            assert journal.starts("other") == 6
            system.lookup("/root/other").tell(Crash())
            await trio.sleep_forever()
    assert journal.starts("other") == 6


async def test_a_child_with_its_own_backoff_escalates_crashes_it_does_not_back_off_on(
        journal: Journal, autojump_clock):
    # A bug (ValueError) in a child whose backoff is for its database (RuntimeError):
    # counted as any crash, so the supervisor gives up instead of restarting it for ever.
    store = worker("store", journal, backoff=Backoff(initial=0.5, maximum=5.0),
                   backoff_on=lambda error: isinstance(error, RuntimeError))
    spec = SupervisorSpec(name="root", intensity=3, children=[store])
    with pytest.RaisesGroup(RestartIntensityExceeded, flatten_subgroups=True):
        async with open_actor_system(spec) as system:
            for _ in range(4):
                await crash_and_settle(system, "/root/store")
            await trio.sleep_forever()
    assert journal.starts("store") == 4  # the first start and three restarts, at once (no backoff)


def test_a_child_backoff_says_which_crashes_it_paces():
    with pytest.raises(ValueError, match="backoff and backoff_on go together"):
        ActorSpec(name="store", factory=object, backoff=Backoff())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="backoff and backoff_on go together"):
        ActorSpec(name="store", factory=object, backoff_on=database_down)  # type: ignore[arg-type]


async def test_shutdown_stops_children_in_reverse_start_order(journal: Journal):
    inner = SupervisorSpec(name="inner", children=[worker("x", journal), worker("y", journal)])
    spec = SupervisorSpec(name="root", children=[worker("a", journal), inner, worker("b", journal)])
    async with open_actor_system(spec):
        assert [e[1] for e in journal.of("start")] == ["a", "x", "y", "b"]
    assert [e[1] for e in journal.of("stop")] == ["b", "y", "x", "a"]


async def test_shutdown_drains_queued_messages_first(journal: Journal):
    async with open_actor_system(three(journal, Strategy.ONE_FOR_ONE)) as system:
        ref = system.lookup("/root/a")
        gate = trio.Event()
        ref.tell(Block(gate))
        await settle()
        for i in range(5):
            ref.tell(i)
        gate.set()
    assert journal.handled("a")[1:] == [0, 1, 2, 3, 4]


async def test_stop_timeout_cancels_a_child_that_ignores_shutdown(journal: Journal, autojump_clock, caplog):
    spec = SupervisorSpec(
        name="root",
        children=[worker("ok", journal), worker("stuck", journal, shutdown_timeout=3.0)],
    )
    async with open_actor_system(spec) as system:
        system.lookup("/root/stuck").tell(Hang())
        await settle()
        stopping_at = trio.current_time()
    assert trio.current_time() - stopping_at == pytest.approx(3.0)
    killed = [r for r in caplog.records if getattr(r, "event", None) == "killed"]
    assert [r.actor for r in killed] == ["/root/stuck"]
    assert journal.of("stop", "stuck") == []  # cancelled: on_stop did not run
    assert [e[1] for e in journal.of("stop")] == ["ok"]  # the others still stopped gracefully


async def test_lifecycle_events_are_logged_one_line_each(journal: Journal, caplog):
    caplog.set_level(logging.INFO, logger="trioscope.runtime")
    spec = SupervisorSpec(name="root", intensity=0, children=[worker("w", journal)])
    with pytest.RaisesGroup(RestartIntensityExceeded, flatten_subgroups=True):
        async with open_actor_system(spec) as system:
            system.lookup("/root/w").tell(Crash("kaput"))
            await trio.sleep_forever()
    events = [(r.event, r.actor) for r in caplog.records if hasattr(r, "event")]
    assert events == [
        ("started", "/root/w"),
        ("started", "/root"),
        ("crashed", "/root/w"),
        ("gave_up", "/root"),
        ("stopped", "/root/w"),
        ("stopped", "/root"),
    ]
    crash = next(r for r in caplog.records if getattr(r, "event", None) == "crashed")
    assert crash.exc_info is not None and "kaput" in crash.getMessage()


async def test_a_child_failing_to_start_stops_those_started_before_it_in_reverse(journal: Journal):
    """OTP: a supervisor whose child cannot start stops the children it already
    started, last first, and fails to start itself."""
    spec = SupervisorSpec(name="root", children=[
        worker("a", journal), worker("b", journal), worker("c", journal, fail_start=lambda: True)])
    with pytest.raises(BaseException) as failed:  # the start failure, however the nurseries wrap it
        async with open_actor_system(spec):
            pass
    assert failed.group_contains(StartFailed) if isinstance(failed.value, BaseExceptionGroup) else \
        isinstance(failed.value, StartFailed)
    assert [(e[0], e[1]) for e in journal.entries if e[0] in ("start", "stop")] == [
        ("start", "a"), ("start", "b"), ("stop", "b"), ("stop", "a")]


async def test_a_busy_actor_lets_others_run_between_bursts(journal: Journal):
    """An actor with a long queue of quick messages yields every few dozen: a
    sibling's one message is handled long before the queue is done."""
    async with open_actor_system(SupervisorSpec(name="root", children=[worker("busy", journal, mailbox_size=2000),
                                                                       worker("other", journal)])) as system:
        busy, other = system.lookup("/root/busy"), system.lookup("/root/other")
        for i in range(1000):
            busy.tell(i)
        other.tell("me")
        await settle()
    order = [e[1] for e in journal.entries if e[0] == "handle"]
    assert order.index("other") < 200, order.index("other")


class _Relay(Worker):
    """Asks ``/root/inner`` whatever it is told: the inner actor's crash is its own too."""

    async def handle(self, message: Any) -> Any:
        return await self.context.system.lookup("/root/inner").ask(message)


async def test_a_crash_told_elsewhere_is_one_warning_line_without_its_traceback(
        journal: Journal, autojump_clock, caplog):
    """An asker's crash on another actor's (``ActorFailed``, whose traceback that
    actor logged) and a crash the spec paces as its dependency's (``backoff_on``)
    are one line at warning level; any other crash an error with its traceback."""
    caplog.set_level(logging.INFO, logger="trioscope.runtime")
    paced = worker("paced", journal, backoff=Backoff(initial=0.5, maximum=5.0),
                   backoff_on=lambda error: isinstance(error, ValueError))
    relay = ActorSpec(name="relay", factory=lambda: _Relay("relay", journal))
    spec = SupervisorSpec(name="root", intensity=10, children=[worker("inner", journal), relay, paced])
    async with open_actor_system(spec) as system:
        with pytest.raises(ActorFailed):
            await system.lookup("/root/relay").ask(Crash("inner's"))
        await crash_and_settle(system, "/root/paced")
        await settle()
    crashes = {r.actor: r for r in caplog.records if getattr(r, "event", None) == "crashed"}
    assert crashes["/root/inner"].levelno == logging.ERROR and crashes["/root/inner"].exc_info is not None
    for told_elsewhere in ("/root/relay", "/root/paced"):
        record = crashes[told_elsewhere]
        assert record.levelno == logging.WARNING and record.exc_info is None, told_elsewhere
    assert "inner's" in crashes["/root/relay"].getMessage()
