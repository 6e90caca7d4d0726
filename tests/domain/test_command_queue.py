"""One deployment's delivery order: cancel notices first, then priority, FIFO
within a priority, nothing before its time; deadlines of open commands."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from trioscope.domain.commands import (
    CancelNotice,
    Command,
    CommandEvent,
    CommandStatus,
    DeploymentQueue,
    Priority,
    cancel_notice_id,
    new_command,
)

E = CommandEvent
T0 = 1_760_000_000.0
DELIVERY_DEADLINE = 3600.0
GRACE = 30.0


def make(command_id: str, *, priority: Priority = Priority.NORMAL, sequence: int = 1, now: float = T0,
         schedule_at: float | None = None, requires_confirmation: bool = False, timeout_seconds: int = 60) -> Command:
    return new_command(
        command_id=command_id, deployment_hash="dep-1", tenant="acme", type="noop", parameters={},
        priority=priority, created_by="user-1", now=now, schedule_at=schedule_at,
        timeout_seconds=timeout_seconds, requires_confirmation=requires_confirmation, sequence=sequence,
    )


def new_queue() -> DeploymentQueue:
    return DeploymentQueue(delivery_deadline=DELIVERY_DEADLINE, timeout_grace=GRACE)


def queue_of(*commands: Command) -> DeploymentQueue:
    queue = new_queue()
    for command in commands:
        queue.put(command)
    return queue


def drain(queue: DeploymentQueue, now: float) -> list[str]:
    """Ids taken until nothing is due (commands only)."""
    taken = []
    while (delivery := queue.take(now)) is not None:
        assert isinstance(delivery, Command)
        taken.append(delivery.id)
    return taken


def sent_with_cancel(command_id: str, at: float = T0 + 1) -> Command:
    return make(command_id).apply(E.DELIVER, at).apply(E.REQUEST_CANCEL, at + 1)


# --- order -------------------------------------------------------------------------


def test_priority_order_is_critical_high_normal_low() -> None:
    queue = queue_of(make("low", priority=Priority.LOW, sequence=1),
                     make("normal", priority=Priority.NORMAL, sequence=2),
                     make("critical", priority=Priority.CRITICAL, sequence=3),
                     make("high", priority=Priority.HIGH, sequence=4))
    assert drain(queue, T0) == ["critical", "high", "normal", "low"]


def test_fifo_by_sequence_within_a_priority_whatever_the_put_order() -> None:
    queue = queue_of(make("third", sequence=30), make("first", sequence=10), make("second", sequence=20))
    assert drain(queue, T0) == ["first", "second", "third"]


def test_take_removes_from_the_order() -> None:
    queue = queue_of(make("a"))
    first = queue.take(T0)
    assert isinstance(first, Command) and first.id == "a"
    assert queue.take(T0) is None


def test_empty_queue_takes_nothing_and_has_nothing_due() -> None:
    queue = new_queue()
    assert queue.take(T0) is None
    assert queue.next_due(T0) is None
    assert len(queue) == 0


# --- scheduling --------------------------------------------------------------------


def test_nothing_is_taken_before_scheduled_for() -> None:
    queue = queue_of(make("later", schedule_at=T0 + 60))
    assert queue.take(T0) is None
    assert queue.take(T0 + 59.999) is None
    taken = queue.take(T0 + 60)
    assert isinstance(taken, Command) and taken.id == "later"


def test_next_due_is_the_earliest_scheduled_time_until_then_and_now_after() -> None:
    queue = queue_of(make("b", schedule_at=T0 + 120, sequence=2), make("a", schedule_at=T0 + 60, sequence=1))
    assert queue.next_due(T0) == T0 + 60
    assert queue.next_due(T0 + 90) == T0 + 90  # already due: now
    assert drain(queue, T0 + 90) == ["a"]
    assert queue.next_due(T0 + 90) == T0 + 120
    assert drain(queue, T0 + 120) == ["b"]
    assert queue.next_due(T0 + 120) is None


def test_next_due_ignores_commands_that_left_the_queue() -> None:
    scheduled = make("a", schedule_at=T0 + 60)
    queue = queue_of(scheduled)
    queue.put(scheduled.apply(E.CANCEL, T0 + 1))
    assert queue.next_due(T0) is None


def test_due_lower_priority_goes_before_a_not_yet_due_critical() -> None:
    queue = queue_of(make("critical-later", priority=Priority.CRITICAL, schedule_at=T0 + 60, sequence=1),
                     make("low-now", priority=Priority.LOW, sequence=2))
    assert drain(queue, T0) == ["low-now"]
    assert drain(queue, T0 + 60) == ["critical-later"]


def test_awaiting_confirmation_is_not_taken_until_confirmed() -> None:
    waiting = make("a", requires_confirmation=True)
    queue = queue_of(waiting)
    assert queue.take(T0) is None
    queue.put(waiting.apply(E.CONFIRM, T0 + 1))
    assert drain(queue, T0 + 1) == ["a"]


# --- filters -----------------------------------------------------------------------


def test_min_rank_leaves_lower_priorities_for_later_takes() -> None:
    queue = queue_of(make("low", priority=Priority.LOW, sequence=1),
                     make("normal", priority=Priority.NORMAL, sequence=2),
                     make("high", priority=Priority.HIGH, sequence=3))
    high = queue.take(T0, min_rank=Priority.HIGH.rank)
    assert isinstance(high, Command) and high.id == "high"
    assert queue.take(T0, min_rank=Priority.HIGH.rank) is None
    assert queue.take(T0, min_rank=Priority.CRITICAL.rank) is None
    assert drain(queue, T0) == ["normal", "low"]


def test_skip_leaves_that_command_for_later_takes() -> None:
    queue = queue_of(make("a", sequence=1), make("b", sequence=2))
    taken = queue.take(T0, skip="a")
    assert isinstance(taken, Command) and taken.id == "b"
    assert queue.take(T0, skip="a") is None
    assert drain(queue, T0) == ["a"]


# --- cancel notices ----------------------------------------------------------------


def test_cancel_notice_comes_before_any_command() -> None:
    queue = queue_of(make("urgent", priority=Priority.CRITICAL, sequence=1), sent_with_cancel("running"))
    notice = queue.take(T0 + 5)
    assert notice == CancelNotice("running")
    assert isinstance(notice, CancelNotice) and notice.notice_id == cancel_notice_id("running") == "cancel:running"
    assert drain(queue, T0 + 5) == ["urgent"]


def test_cancel_notice_ignores_min_rank_and_schedule() -> None:
    queue = queue_of(sent_with_cancel("running"))
    assert queue.take(T0 - 1000, min_rank=Priority.CRITICAL.rank) == CancelNotice("running")


def test_cancel_notice_is_taken_once_then_again_after_notice_again() -> None:
    queue = queue_of(sent_with_cancel("running"))
    assert queue.take(T0 + 5) == CancelNotice("running")
    assert queue.take(T0 + 5) is None
    queue.notice_again("running")
    assert queue.take(T0 + 5) == CancelNotice("running")
    assert queue.take(T0 + 5) is None


def test_putting_an_already_cancel_requested_command_again_does_not_repeat_the_notice() -> None:
    cancelled = sent_with_cancel("running")
    queue = queue_of(cancelled)
    assert queue.take(T0 + 5) == CancelNotice("running")
    queue.put(cancelled.apply(E.PROGRESS, T0 + 6))
    assert queue.take(T0 + 6) is None


def test_notice_again_is_ignored_without_a_requested_cancel_with_the_agent() -> None:
    sent = make("sent").apply(E.DELIVER, T0 + 1)
    finished = sent_with_cancel("finished")
    queue = queue_of(sent, finished)
    assert queue.take(T0 + 5) == CancelNotice("finished")
    queue.put(finished.apply(E.AGENT_CANCELLED, T0 + 6))
    for command_id in ("sent", "finished", "unknown"):
        queue.notice_again(command_id)
    assert queue.take(T0 + 6) is None


def test_finishing_a_command_drops_its_pending_notice() -> None:
    cancelled = sent_with_cancel("running")
    queue = queue_of(cancelled)
    queue.put(cancelled.apply(E.COMPLETE, T0 + 3))
    assert queue.take(T0 + 5) is None


# --- put and stale entries ---------------------------------------------------------


def test_put_of_a_terminal_command_removes_it() -> None:
    a, b = make("a", sequence=1), make("b", sequence=2)
    queue = queue_of(a, b)
    queue.put(a.apply(E.CANCEL, T0 + 1))
    assert len(queue) == 1 and queue.get("a") is None
    assert drain(queue, T0 + 1) == ["b"]


def test_entry_of_a_command_since_sent_is_skipped() -> None:
    a, b = make("a", sequence=1), make("b", sequence=2)
    queue = queue_of(a, b)
    queue.put(a.apply(E.DELIVER, T0 + 1))
    assert drain(queue, T0 + 1) == ["b"]
    still_open = queue.get("a")
    assert still_open is not None and still_open.status is CommandStatus.SENT


def test_returned_command_is_taken_again() -> None:
    queue = queue_of(make("a"))
    taken = queue.take(T0)
    assert isinstance(taken, Command)
    sent = taken.apply(E.DELIVER, T0 + 1)
    queue.put(sent)
    assert queue.take(T0 + 1) is None
    queue.put(sent.apply(E.RETURN, T0 + 2))
    assert drain(queue, T0 + 2) == ["a"]


def test_get_returns_the_latest_put_value() -> None:
    a = make("a")
    queue = queue_of(a)
    sent = a.apply(E.DELIVER, T0 + 1)
    queue.put(sent)
    assert queue.get("a") == sent
    assert queue.get("missing") is None


# --- size and deadlines ------------------------------------------------------------


def test_len_counts_open_commands_and_queued_counts_queued_ones() -> None:
    queue = queue_of(make("queued", sequence=1), make("waiting", requires_confirmation=True, sequence=2),
                     make("sent", sequence=3).apply(E.DELIVER, T0 + 1),
                     make("executing", sequence=4).apply(E.DELIVER, T0 + 1).apply(E.PROGRESS, T0 + 2))
    assert len(queue) == 4 and queue.queued == 1
    assert {c.id for c in queue} == {"queued", "waiting", "sent", "executing"}
    queue.take(T0 + 3)  # taking does not close a command
    assert len(queue) == 4
    queue.put(make("sent", sequence=3).apply(E.DELIVER, T0 + 1).apply(E.COMPLETE, T0 + 4))
    assert len(queue) == 3


def overdue_ids(queue: DeploymentQueue, now: float) -> set[tuple[str, CommandEvent]]:
    overdue = [(c.id, event) for c, event in queue.overdue(now)]
    assert len(overdue) == len(set(overdue)), f"a command reported twice: {overdue}"
    return set(overdue)


def test_queued_past_delivery_deadline_expires() -> None:
    queue = queue_of(make("queued", schedule_at=T0 + 60, sequence=1),
                     make("waiting", requires_confirmation=True, sequence=2))
    assert overdue_ids(queue, T0 + DELIVERY_DEADLINE - 0.001) == set()
    assert overdue_ids(queue, T0 + DELIVERY_DEADLINE) == {("waiting", E.EXPIRE)}
    assert overdue_ids(queue, T0 + 60 + DELIVERY_DEADLINE) == {("waiting", E.EXPIRE), ("queued", E.EXPIRE)}


def test_sent_past_timeout_plus_grace_times_out() -> None:
    sent = make("sent", timeout_seconds=60, sequence=1).apply(E.DELIVER, T0 + 10)
    executing = make("executing", timeout_seconds=120, sequence=2).apply(E.DELIVER, T0 + 10).apply(E.PROGRESS, T0 + 11)
    queue = queue_of(sent, executing)
    assert overdue_ids(queue, T0 + 10 + 60 + GRACE - 0.001) == set()
    assert overdue_ids(queue, T0 + 10 + 60 + GRACE) == {("sent", E.TIME_OUT)}
    assert overdue_ids(queue, T0 + 10 + 120 + GRACE) == {("sent", E.TIME_OUT), ("executing", E.TIME_OUT)}


def test_overdue_returns_the_current_command_value() -> None:
    sent = make("sent", timeout_seconds=60).apply(E.DELIVER, T0 + 10)
    queue = queue_of(sent)
    [(command, event)] = queue.overdue(T0 + 1000)
    assert command == sent and event is E.TIME_OUT
    assert command.apply(event, T0 + 1000).status.terminal


def test_next_deadline_is_the_earliest_open_deadline() -> None:
    queue = queue_of(make("queued", sequence=1), make("sent", timeout_seconds=60, sequence=2).apply(E.DELIVER, T0 + 10))
    assert queue.next_deadline() == T0 + 10 + 60 + GRACE
    assert new_queue().next_deadline() is None


# Each step: (command index, what happens to it, seconds later).
STEPS = st.lists(st.tuples(st.integers(0, 3),
                           st.sampled_from(["create", "deliver", "return", "progress", "finish", "cancel", "look"]),
                           st.integers(0, 900)), max_size=60)


@settings(max_examples=1000, deadline=None)
@given(STEPS, st.integers(0, 8000))
def test_deadlines_are_those_of_the_open_commands_however_they_changed(steps: list[tuple[int, str, int]],
                                                                       look_ahead: int) -> None:
    """The queue keeps deadlines in a heap of its own: after any history of
    puts, ``next_deadline`` and ``overdue`` agree with a look at every open command."""
    queue, now, current = new_queue(), T0, {}
    for index, what, later in steps:
        now += later
        command = current.get(index)
        if what == "look":  # the actor looks after every batch of messages: stale entries go
            queue.next_deadline()
            continue
        if what == "create" and command is None:
            command = make(f"c{index}", sequence=len(current) + 1, now=now, timeout_seconds=60 + index,
                           schedule_at=now + later if index % 3 == 0 else None, requires_confirmation=index == 3)
        elif command is None or command.status.terminal:
            continue
        elif what == "deliver" and command.status is CommandStatus.QUEUED:
            command = command.apply(E.DELIVER, now)
        elif what == "return" and command.status is CommandStatus.SENT:
            command = command.apply(E.RETURN, now)
        elif what == "progress" and command.status.with_agent:
            command = command.apply(E.PROGRESS, now)
        elif what == "finish" and command.status.with_agent:
            command = command.apply(E.COMPLETE, now)
        elif what == "cancel" and not command.status.with_agent:
            command = command.apply(E.CANCEL, now)
        else:
            continue
        current[index] = command
        queue.put(command)
    open_now = [c for c in current.values() if not c.status.terminal]
    deadlines = [c.deadline(delivery_deadline=DELIVERY_DEADLINE, timeout_grace=GRACE) for c in open_now]
    assert queue.next_deadline() == min((d for d in deadlines if d is not None), default=None)
    at = now + look_ahead
    expected = {(c.id, E.TIME_OUT if c.status.with_agent else E.EXPIRE)
                for c, d in zip(open_now, deadlines, strict=True) if d is not None and d <= at}
    assert overdue_ids(queue, at) == expected
    assert overdue_ids(queue, at) == expected  # looking does not consume them


def test_a_command_queued_again_is_overdue_once() -> None:
    # queued (deadline D), sent, returned: queued with deadline D again, while an
    # earlier deadline keeps the first D entry from surfacing.
    earlier = make("earlier", sequence=1, now=T0 - 10)
    command = make("c", sequence=2)
    queue = queue_of(earlier, command)
    queue.put(sent := command.apply(E.DELIVER, T0 + 1))
    queue.next_deadline()
    queue.put(sent.apply(E.RETURN, T0 + 2))
    at = T0 + DELIVERY_DEADLINE
    assert overdue_ids(queue, at) == {("earlier", E.EXPIRE), ("c", E.EXPIRE)}
    assert overdue_ids(queue, at) == {("earlier", E.EXPIRE), ("c", E.EXPIRE)}


def test_deadlines_of_finished_commands_do_not_pile_up() -> None:
    steady = make("steady", timeout_seconds=7200, sequence=0).apply(E.DELIVER, T0)
    queue = queue_of(steady)
    for i in range(1, 5001):  # each: queued (deadline in an hour), sent (in 90 s), done
        command = make(f"c{i}", sequence=i, now=T0 + i)
        queue.put(command)
        queue.put(command := command.apply(E.DELIVER, T0 + i))
        queue.put(command.apply(E.COMPLETE, T0 + i))
        assert len(queue._deadlines) <= 2 * len(queue) + 65  # stale entries are dropped as they go
    assert queue.next_deadline() == T0 + 7200 + GRACE
    assert overdue_ids(queue, T0 + 7200 + GRACE) == {("steady", E.TIME_OUT)}


# --- property ----------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(list(Priority)), st.integers(0, 600)), max_size=30),
       st.permutations(range(30)))
def test_taking_after_every_schedule_yields_each_once_by_rank_then_sequence(
    specs: list[tuple[Priority, int]], put_order: list[int]
) -> None:
    commands = [make(f"c{i}", priority=priority, sequence=i, schedule_at=T0 + offset)
                for i, (priority, offset) in enumerate(specs)]
    queue = queue_of(*(commands[i] for i in put_order if i < len(commands)))
    taken = drain(queue, T0 + 600)
    expected = [c.id for c in sorted(commands, key=lambda c: (-c.priority.rank, c.sequence))]
    assert taken == expected
    assert len(set(taken)) == len(commands)


def test_putting_a_taken_command_back_unchanged_makes_it_takeable_again() -> None:
    # What the queue actor does when storing the delivery fails.
    command = make("a")
    queue = queue_of(command)
    assert queue.take(T0) == command
    queue.put(command)
    assert queue.take(T0) == command


def test_a_command_with_two_entries_is_taken_once() -> None:
    command = make("a")
    queue = queue_of(command)
    queue.put(command.apply(CommandEvent.DELIVER, T0 + 1))
    queue.put(command.apply(CommandEvent.DELIVER, T0 + 1).apply(CommandEvent.RETURN, T0 + 2))
    first = queue.take(T0 + 3)
    assert first is not None and first.id == "a"
    assert queue.take(T0 + 3) is None
