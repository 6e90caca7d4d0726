"""Actors and refs: tell, send, ask, crashes, hooks, self-stop, dead letters."""

from __future__ import annotations

import pytest
import trio

from tests.runtime.scripted import Block, Crash, Journal, StopSelf, settle, worker
from trioscope.runtime import (
    Actor,
    ActorFailed,
    ActorSpec,
    ActorStopped,
    AskTimeout,
    MailboxFull,
    Restart,
    StartFailed,
    SupervisorSpec,
    UnhandledMessage,
    open_actor_system,
)


def tree(*children):
    return SupervisorSpec(name="root", children=children)


async def test_ask_returns_what_handle_returns(journal: Journal):
    async with open_actor_system(tree(worker("w", journal))) as system:
        ref = system.lookup("/root/w")
        assert await ref.ask("hello") == ("w", 1, "hello")


async def test_tell_is_handled_in_order(journal: Journal):
    async with open_actor_system(tree(worker("w", journal))) as system:
        ref = system.lookup("/root/w")
        for i in range(10):
            ref.tell(i)
        await settle()
        assert journal.handled("w") == list(range(10))


async def test_tell_on_a_full_mailbox_raises_and_send_waits_for_room(journal: Journal):
    async with open_actor_system(tree(worker("w", journal, mailbox_size=2))) as system:
        ref = system.lookup("/root/w")
        gate = trio.Event()
        ref.tell(Block(gate))
        await settle()  # the actor is now inside handle(Block): the mailbox is empty
        ref.tell("a")
        ref.tell("b")
        with pytest.raises(MailboxFull):
            ref.tell("c")
        sent = []

        async def sender():
            await ref.send("c")
            sent.append("c")

        async with trio.open_nursery() as nursery:
            nursery.start_soon(sender)
            await settle()
            assert sent == []  # still waiting for room
            gate.set()
        await settle()
        assert sent == ["c"]
        assert journal.handled("w")[1:] == ["a", "b", "c"]


async def test_keyed_tells_wait_once_a_key_beside_a_full_mailbox_and_refusals_are_counted(journal: Journal):
    async with open_actor_system(tree(worker("w", journal, mailbox_size=1, keyed_capacity=2))) as system:
        ref = system.lookup("/root/w")
        gate = trio.Event()
        ref.tell(Block(gate))
        await settle()
        ref.tell("plain")
        for value in ("a1", "b1", "a2"):
            ref.tell_keyed(value[0], value)
        with pytest.raises(MailboxFull):
            ref.tell("refused")
        with pytest.raises(MailboxFull):
            ref.tell_keyed("c", "refused too")
        with pytest.raises(MailboxFull):
            await ref.ask("refused as well")
        assert system.snapshot().refused_by_type == {"Worker": 3}
        gate.set()
        await settle()
        assert journal.handled("w")[1:] == ["plain", "a2", "b1"]


async def test_offer_queues_or_drops_quietly_and_counts_what_it_drops(journal: Journal):
    async with open_actor_system(tree(worker("w", journal, mailbox_size=1, keyed_capacity=1),
                                      worker("t", journal, restart=Restart.TEMPORARY))) as system:
        ref = system.lookup("/root/w")
        gate = trio.Event()
        assert ref.offer(Block(gate))
        await settle()
        assert ref.offer("queued")
        assert not ref.offer("full")
        assert ref.offer_keyed("k", "keyed")
        assert not ref.offer_keyed("other", "no room for another key")
        assert system.snapshot().refused_by_type == {"Worker": 2}
        gate.set()
        await settle()
        assert journal.handled("w")[1:] == ["queued", "keyed"]

        stopped = system.lookup("/root/t")
        stopped.tell(Crash())
        await stopped.wait_stopped()
        assert not stopped.offer("lost")
        assert not stopped.offer_keyed("k", "lost too")
        assert system.dead_letters == 2


async def test_ask_times_out(journal: Journal, autojump_clock):
    async with open_actor_system(tree(worker("w", journal))) as system:
        ref = system.lookup("/root/w")
        ref.tell(Block(trio.Event()))
        with pytest.raises(AskTimeout) as info:
            await ref.ask("late", timeout=2.0)
        assert info.value.path == "/root/w"


async def test_an_ask_that_timed_out_in_the_mailbox_is_never_handled(journal: Journal, autojump_clock):
    # A timeout answers "retry": what was asked must then not happen behind the asker's back.
    async with open_actor_system(tree(worker("w", journal))) as system:
        ref = system.lookup("/root/w")
        gate = trio.Event()
        ref.tell(Block(gate))
        with pytest.raises(AskTimeout):
            await ref.ask("given up", timeout=2.0)
        gate.set()
        assert await ref.ask("next") == ("w", 1, "next")
        assert journal.handled("w") == [Block(gate), "next"]
        assert system.dead_letters == 1


async def test_an_ask_cancelled_in_the_mailbox_is_never_handled(journal: Journal):
    async with open_actor_system(tree(worker("w", journal))) as system:
        ref = system.lookup("/root/w")
        gate = trio.Event()
        ref.tell(Block(gate))
        with trio.CancelScope() as scope:
            scope.cancel()
            await ref.ask("cancelled", timeout=None)
        gate.set()
        assert await ref.ask("next") == ("w", 1, "next")
        assert journal.handled("w") == [Block(gate), "next"]


async def test_an_ask_whose_handling_overruns_the_deadline_times_out_as_taken(journal: Journal, autojump_clock):
    """The deadline covers the handling too: a hung handler does not hold its
    caller. The handling still finishes (its effect happens), its reply is
    discarded, and the timeout says the outcome is unknown."""
    async with open_actor_system(tree(worker("w", journal))) as system:
        ref = system.lookup("/root/w")
        gate = trio.Event()
        started = trio.current_time()
        with pytest.raises(AskTimeout) as info:
            await ref.ask(Block(gate), timeout=2.0)
        assert info.value.taken and trio.current_time() - started == pytest.approx(2.0)
        gate.set()
        assert await ref.ask("next") == ("w", 1, "next")
        assert journal.handled("w") == [Block(gate), "next"]  # it was handled, to the end
        assert system.dead_letters == 0


async def test_an_ask_given_up_in_the_mailbox_times_out_as_not_taken(journal: Journal, autojump_clock):
    async with open_actor_system(tree(worker("w", journal))) as system:
        ref = system.lookup("/root/w")
        gate = trio.Event()
        ref.tell(Block(gate))
        with pytest.raises(AskTimeout) as info:
            await ref.ask("given up", timeout=2.0)
        assert not info.value.taken
        gate.set()


async def test_ask_to_a_crashing_actor_fails_at_once_and_the_actor_restarts(journal: Journal, autojump_clock):
    async with open_actor_system(tree(worker("w", journal))) as system:
        ref = system.lookup("/root/w")
        with trio.fail_after(1):  # virtual time: an ask left to its timeout would jump past this
            with pytest.raises(ActorFailed) as info:
                await ref.ask(Crash("bad input"), timeout=60)
        assert isinstance(info.value.cause, ValueError)
        assert await ref.ask("after") == ("w", 2, "after")


async def test_messages_queued_behind_a_crash_are_handled_by_the_restarted_actor(journal: Journal):
    async with open_actor_system(tree(worker("w", journal))) as system:
        ref = system.lookup("/root/w")
        gate = trio.Event()
        ref.tell(Block(gate))
        await settle()
        ref.tell(Crash())
        ref.tell("a")
        ref.tell("b")
        gate.set()
        assert await ref.ask("c") == ("w", 2, "c")
        handled = [(e[2], e[3]) for e in journal.of("handle", "w")]
        assert handled[1:] == [(2, "a"), (2, "b"), (2, "c")]


async def test_ref_stays_valid_across_restarts(journal: Journal):
    async with open_actor_system(tree(worker("w", journal))) as system:
        before = system.lookup("/root/w")
        before.tell(Crash())
        await settle()
        assert system.lookup("/root/w") == before
        assert await before.ask("x") == ("w", 2, "x")


async def test_on_idle_runs_once_per_burst(journal: Journal):
    async with open_actor_system(tree(worker("w", journal))) as system:
        ref = system.lookup("/root/w")
        gate = trio.Event()
        ref.tell(Block(gate))
        await settle()
        for i in range(20):
            ref.tell(i)
        gate.set()
        await settle()
        assert len(journal.of("idle", "w")) == 1
        ref.tell("one more")
        await settle()
        assert len(journal.of("idle", "w")) == 2


async def test_on_stop_runs_on_shutdown_but_not_after_a_crash(journal: Journal):
    async with open_actor_system(tree(worker("w", journal))) as system:
        ref = system.lookup("/root/w")
        ref.tell(Crash())
        await settle()
        assert journal.of("stop", "w") == []
    assert [e[2] for e in journal.of("stop", "w")] == [2]


async def test_failing_on_start_fails_the_system_start(journal: Journal):
    spec = tree(worker("w", journal, fail_start=lambda: True))
    with pytest.raises(StartFailed) as info:
        async with open_actor_system(spec):
            pytest.fail("the system must not start")
    assert "cannot start" in str(info.value.cause)


@pytest.mark.parametrize(("restart", "restarted"), [(Restart.PERMANENT, True), (Restart.TRANSIENT, False)])
async def test_context_stop_is_a_normal_exit(journal: Journal, restart: Restart, restarted: bool):
    async with open_actor_system(tree(worker("w", journal, restart=restart))) as system:
        ref = system.lookup("/root/w")
        ref.tell(StopSelf())
        await settle()
        assert ref.alive is restarted
        assert journal.starts("w") == (2 if restarted else 1)


async def test_background_task_failure_crashes_the_actor():
    started = []

    class Ticker(Actor):
        async def on_start(self) -> None:
            started.append(True)
            if len(started) == 1:
                self.context.start_soon(self._fail)

        async def _fail(self) -> None:
            raise OSError("socket went away")

        async def handle(self, message):
            return len(started)

    async with open_actor_system(tree(ActorSpec(name="t", factory=Ticker))) as system:
        await settle()
        assert await system.lookup("/root/t").ask("incarnation") == 2


class Fetcher(Actor):
    """Fetches in a background task what each ``("fetch", event, value)`` asks
    for, once ``event`` is set, and hands it back with ``tell_self``; records
    what it handles, and when each task is done."""

    def __init__(self, log: list[object], gate: trio.Event) -> None:
        self.log = log
        self.gate = gate

    async def _fetch(self, ready: trio.Event, value: object) -> None:
        await ready.wait()
        await self.context.tell_self(("fetched", value))
        self.log.append(("task done", value))

    async def handle(self, message: object) -> object:
        if isinstance(message, tuple) and message[0] == "fetch":
            self.context.start_soon(self._fetch, message[1], message[2])
            return None
        if message == "block":
            await self.gate.wait()
        self.log.append(message)
        return None


async def test_tell_self_hands_a_tasks_result_back_waiting_for_room():
    log: list[object] = []
    gate = trio.Event()
    ready = trio.Event()
    async with open_actor_system(tree(ActorSpec(name="f", factory=lambda: Fetcher(log, gate),
                                                mailbox_size=1))) as system:
        ref = system.lookup("/root/f")
        ref.tell(("fetch", ready, 1))
        await settle()
        ref.tell("block")
        await settle()  # handling "block"
        ref.tell("queued")  # the mailbox is full
        ready.set()
        await settle()
        assert log == []  # the task waits for room: not dropped, not raised
        gate.set()
        await settle()
        assert log[:2] == ["block", "queued"]  # then what the task handed back, behind them
        assert sorted(log[2:], key=str) == [("fetched", 1), ("task done", 1)]


async def test_tell_self_returns_quietly_once_the_actor_takes_no_more():
    log: list[object] = []
    gate = trio.Event()
    ready = trio.Event()
    async with open_actor_system(tree(ActorSpec(name="f", factory=lambda: Fetcher(log, gate),
                                                restart=Restart.TEMPORARY))) as system:
        ref = system.lookup("/root/f")
        ref.tell(("fetch", ready, 1))
        ref.tell("block")
        await settle()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(system.root.stop_child, "f")  # its mailbox closes: it finishes "block", then stops
            await settle()
            with pytest.raises(ActorStopped):
                ref.tell("refused")
            ready.set()
            await settle()
            assert log == [("task done", 1)]  # no crash: the task went on
            gate.set()
        assert log == [("task done", 1), "block"]
        assert system.dead_letters == 2  # "refused" and what the task handed back


async def test_unhandled_message_crashes_with_a_clear_error():
    class Quiet(Actor):
        pass

    async with open_actor_system(tree(ActorSpec(name="q", factory=Quiet))) as system:
        with pytest.raises(ActorFailed) as info:
            await system.lookup("/root/q").ask(42)
        assert isinstance(info.value.cause, UnhandledMessage)
        assert "cannot handle int" in str(info.value.cause)


async def test_tell_to_a_terminated_actor_raises_and_counts_a_dead_letter(journal: Journal):
    async with open_actor_system(tree(worker("w", journal, restart=Restart.TEMPORARY))) as system:
        ref = system.lookup("/root/w")
        ref.tell(Crash())
        await ref.wait_stopped()
        with pytest.raises(ActorStopped):
            ref.tell("lost")
        with pytest.raises(ActorStopped):
            await ref.ask("lost too")
        assert system.dead_letters == 2
        assert system.snapshot().dead_letters_by_type == {"Worker": 2}


async def test_pending_asks_fail_when_the_actor_terminates(journal: Journal):
    async with open_actor_system(tree(worker("w", journal, restart=Restart.TEMPORARY))) as system:
        ref = system.lookup("/root/w")
        gate = trio.Event()
        ref.tell(Block(gate))
        await settle()
        ref.tell(Crash())
        outcomes = []

        async def asker():
            try:
                await ref.ask("queued", timeout=60)
            except ActorStopped as exc:
                outcomes.append(exc)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(asker)
            await settle()
            gate.set()
        assert len(outcomes) == 1 and outcomes[0].path == "/root/w"
        assert system.dead_letters == 1


async def test_an_idle_actor_does_not_keep_its_last_message_alive(journal: Journal):
    import gc
    import weakref

    class Payload:
        pass

    async with open_actor_system(tree(worker("w", journal))) as system:
        ref = system.lookup("/root/w")
        payload = Payload()
        watcher = weakref.ref(payload)
        await ref.ask(payload)
        journal.entries.clear()  # the journal itself recorded the message
        del payload
        await settle()
        gc.collect()
        assert watcher() is None


async def test_an_idle_actor_keeps_no_exception_alive(journal: Journal):
    """Found in a server's memory: every idle actor's loop waited inside the
    ``except WouldBlock`` that found its mailbox empty, keeping that exception,
    its traceback and a frame alive (1,000 WebSocket clients: 1,000 of each)."""
    import gc

    async with open_actor_system(tree(*(worker(f"w{i}", journal) for i in range(20)))) as system:
        for i in range(20):
            await system.lookup(f"/root/w{i}").ask("x")
        await settle()
        assert sum(isinstance(o, trio.WouldBlock) for o in gc.get_objects()) == 0
