"""The deadline watch: the next deadline of each open command a replica holds
no queue for, newest version wins, gone once finished or once due."""

from __future__ import annotations

from trioscope.domain.commands import Command, CommandEvent, DeadlineWatch, Priority, new_command

DELIVERY = 100.0
GRACE = 5.0


def watch() -> DeadlineWatch:
    return DeadlineWatch(delivery_deadline=DELIVERY, timeout_grace=GRACE)


def created(n: int, deployment: str = "d1", now: float = 1000.0) -> Command:
    return new_command(command_id=f"cmd_{n}", deployment_hash=deployment, tenant="t", type="restart", parameters={},
                       priority=Priority.NORMAL, created_by="u", now=now, schedule_at=None, timeout_seconds=30,
                       requires_confirmation=False, sequence=n)


def test_a_queued_command_is_due_at_its_delivery_deadline() -> None:
    w = watch()
    w.note(created(1))
    assert w.next_deadline() == 1000.0 + DELIVERY
    assert w.due(1000.0 + DELIVERY - 1) == []
    assert w.due(1000.0 + DELIVERY) == ["d1"]
    assert w.next_deadline() is None and len(w) == 0


def test_a_delivery_moves_the_deadline_to_the_time_out() -> None:
    w = watch()
    queued = created(1)
    w.note(queued)
    w.note(queued.apply(CommandEvent.DELIVER, 1010.0))
    assert w.next_deadline() == 1010.0 + 30 + GRACE
    assert w.due(1010.0 + 30 + GRACE - 1) == []
    assert w.due(1010.0 + 30 + GRACE) == ["d1"]
    assert w.due(1000.0 + DELIVERY) == [], "the old deadline no longer counts"


def test_an_older_version_heard_late_changes_nothing() -> None:
    w = watch()
    queued = created(1)
    w.note(queued.apply(CommandEvent.DELIVER, 1010.0))
    w.note(queued)
    assert w.next_deadline() == 1010.0 + 30 + GRACE


def test_a_finished_command_is_no_longer_watched() -> None:
    w = watch()
    sent = created(1).apply(CommandEvent.DELIVER, 1010.0)
    w.note(sent)
    w.note(sent.apply(CommandEvent.COMPLETE, 1020.0))
    assert len(w) == 0 and w.next_deadline() is None and w.due(10_000.0) == []


def test_a_deployment_forgotten_or_due_is_dropped_whole() -> None:
    w = watch()
    w.note(created(1, "d1", now=1000.0))
    w.note(created(2, "d1", now=1050.0))
    w.note(created(3, "d2", now=1000.0))
    w.forget("d2")
    assert w.due(1000.0 + DELIVERY) == ["d1"], "the queue started for d1 reads both of its commands"
    assert len(w) == 0 and w.due(10_000.0) == []


def test_many_changes_keep_the_heap_bounded() -> None:
    w = watch()
    command = created(1)
    for i in range(1000):
        command = command.apply(CommandEvent.DELIVER, 1000.0 + i)
        w.note(command)
        command = command.apply(CommandEvent.RETURN, 1000.0 + i, {"reason": "test"})
        w.note(command)
    assert len(w._heap) <= 2 * len(w) + 65
    assert w.next_deadline() == 1000.0 + DELIVERY
