"""The command state machine (the transition table) and commands as values:
creation, events applied, deadlines, and the stored document."""

from __future__ import annotations

import json
from typing import Any

import attrs
import pytest

from trioscope.domain.commands import (
    OPEN_STATUSES,
    TRANSITIONS,
    Command,
    CommandEvent,
    CommandStatus,
    IllegalTransition,
    Priority,
    StatusChange,
    command_document,
    command_from_document,
    new_command,
    next_status,
)

S, E = CommandStatus, CommandEvent
T0 = 1_760_000_000.0
TERMINAL = (S.COMPLETED, S.FAILED, S.CANCELLED, S.EXPIRED)

# The specification, written out independently of TRANSITIONS.
EXPECTED = {
    (S.AWAITING_CONFIRMATION, E.CONFIRM): S.QUEUED,
    (S.AWAITING_CONFIRMATION, E.CANCEL): S.CANCELLED,
    (S.AWAITING_CONFIRMATION, E.EXPIRE): S.EXPIRED,
    (S.QUEUED, E.DELIVER): S.SENT,
    (S.QUEUED, E.CANCEL): S.CANCELLED,
    (S.QUEUED, E.EXPIRE): S.EXPIRED,
    (S.SENT, E.RETURN): S.QUEUED,
    (S.SENT, E.PROGRESS): S.EXECUTING,
    (S.SENT, E.COMPLETE): S.COMPLETED,
    (S.SENT, E.FAIL): S.FAILED,
    (S.SENT, E.REQUEST_CANCEL): S.SENT,
    (S.SENT, E.AGENT_CANCELLED): S.CANCELLED,
    (S.SENT, E.TIME_OUT): S.FAILED,
    (S.EXECUTING, E.PROGRESS): S.EXECUTING,
    (S.EXECUTING, E.COMPLETE): S.COMPLETED,
    (S.EXECUTING, E.FAIL): S.FAILED,
    (S.EXECUTING, E.REQUEST_CANCEL): S.EXECUTING,
    (S.EXECUTING, E.AGENT_CANCELLED): S.CANCELLED,
    (S.EXECUTING, E.TIME_OUT): S.FAILED,
    (S.FAILED, E.LATE_OUTCOME): S.FAILED,  # recorded beside a time-out, the status unchanged
}

ALL_PAIRS = [(status, event) for status in CommandStatus for event in CommandEvent]


def make(*, requires_confirmation: bool = False, now: float = T0, schedule_at: float | None = None,
         timeout_seconds: int = 30, parameters: dict[str, Any] | None = None) -> Command:
    return new_command(
        command_id="c-1", deployment_hash="dep-1", tenant="acme", type="restart_service",
        parameters={"service": "nginx"} if parameters is None else parameters, priority=Priority.HIGH,
        created_by="user-1", now=now, schedule_at=schedule_at, timeout_seconds=timeout_seconds,
        requires_confirmation=requires_confirmation, sequence=7,
    )


def walk(command: Command, *events: CommandEvent, start: float = T0 + 1) -> Command:
    """``command`` after ``events``, one second apart from ``start``."""
    for offset, event in enumerate(events):
        command = command.apply(event, start + offset)
    return command


# --- the transition table ------------------------------------------------------


@pytest.mark.parametrize(("status", "event"), ALL_PAIRS, ids=lambda v: v.value)
def test_each_status_event_pair_moves_per_table_or_raises(status: CommandStatus, event: CommandEvent) -> None:
    if (status, event) in EXPECTED:
        assert next_status(status, event) is EXPECTED[status, event]
    else:
        with pytest.raises(IllegalTransition) as caught:
            next_status(status, event)
        assert caught.value.status is status and caught.value.event is event


def test_transition_table_is_exactly_the_specification() -> None:
    assert set(TRANSITIONS) == set(CommandStatus)
    table = {(status, event): target for status, moves in TRANSITIONS.items() for event, target in moves.items()}
    assert table == EXPECTED


def test_illegal_transition_message_names_status_and_event() -> None:
    with pytest.raises(IllegalTransition, match="cannot request cancel a command that is queued"):
        next_status(S.QUEUED, E.REQUEST_CANCEL)
    with pytest.raises(ValueError, match="cannot time out a command that is completed"):
        next_status(S.COMPLETED, E.TIME_OUT)


@pytest.mark.parametrize("status", TERMINAL, ids=lambda s: s.value)
def test_terminal_status_changes_no_more(status: CommandStatus) -> None:
    assert status.terminal
    for event in CommandEvent:
        if (status, event) in EXPECTED:
            assert next_status(status, event) is status  # a late outcome, recorded beside a time-out
        else:
            with pytest.raises(IllegalTransition):
                next_status(status, event)


def test_open_statuses_are_the_non_terminal_ones_in_declaration_order() -> None:
    assert OPEN_STATUSES == (S.AWAITING_CONFIRMATION, S.QUEUED, S.SENT, S.EXECUTING)
    assert not any(status.terminal for status in OPEN_STATUSES)


def test_with_agent_is_sent_and_executing_only() -> None:
    assert {status for status in CommandStatus if status.with_agent} == {S.SENT, S.EXECUTING}


# --- new_command -----------------------------------------------------------------


def test_new_command_without_confirmation_is_queued_with_one_history_entry() -> None:
    command = make()
    assert command.status is S.QUEUED
    assert command.history == (StatusChange(status=S.QUEUED, at=T0, event=None),)
    assert command.created_at == T0 and command.updated_at == T0
    assert (command.sent_at, command.started_at, command.completed_at) == (None, None, None)
    assert not command.cancel_requested


def test_new_command_requiring_confirmation_awaits_it() -> None:
    command = make(requires_confirmation=True)
    assert command.status is S.AWAITING_CONFIRMATION
    assert command.history == (StatusChange(status=S.AWAITING_CONFIRMATION, at=T0, event=None),)


@pytest.mark.parametrize(
    ("schedule_at", "scheduled_for"),
    [(None, T0), (T0 + 60, T0 + 60), (T0 - 60, T0), (T0, T0)],
    ids=["unscheduled", "future", "past-clamped-to-now", "now"],
)
def test_scheduled_for_is_the_later_of_now_and_schedule_at(schedule_at: float | None, scheduled_for: float) -> None:
    assert make(schedule_at=schedule_at).scheduled_for == scheduled_for


# --- apply -----------------------------------------------------------------------


def test_deliver_sets_sent_at() -> None:
    sent = make().apply(E.DELIVER, T0 + 5)
    assert sent.status is S.SENT and sent.sent_at == T0 + 5


def test_return_clears_sent_at_and_queues_again() -> None:
    returned = walk(make(), E.DELIVER, E.RETURN)
    assert returned.status is S.QUEUED and returned.sent_at is None


def test_first_progress_sets_started_at_and_later_progress_keeps_it() -> None:
    sent = make().apply(E.DELIVER, T0 + 1)
    executing = sent.apply(E.PROGRESS, T0 + 2)
    assert executing.status is S.EXECUTING and executing.started_at == T0 + 2
    still = executing.apply(E.PROGRESS, T0 + 3)
    assert still.started_at == T0 + 2
    assert still.updated_at == T0 + 3


@pytest.mark.parametrize("with_agent", [(E.DELIVER,), (E.DELIVER, E.PROGRESS)], ids=["sent", "executing"])
def test_request_cancel_sets_cancel_requested_and_keeps_status(with_agent: tuple[CommandEvent, ...]) -> None:
    before = walk(make(), *with_agent)
    after = before.apply(E.REQUEST_CANCEL, T0 + 10, {"by": "user-2"})
    assert after.cancel_requested and not before.cancel_requested
    assert after.status is before.status
    assert after.completed_at is None


@pytest.mark.parametrize(
    ("events", "status"),
    [
        ((E.CANCEL,), S.CANCELLED),
        ((E.EXPIRE,), S.EXPIRED),
        ((E.DELIVER, E.COMPLETE), S.COMPLETED),
        ((E.DELIVER, E.FAIL), S.FAILED),
        ((E.DELIVER, E.TIME_OUT), S.FAILED),
        ((E.DELIVER, E.PROGRESS, E.REQUEST_CANCEL, E.AGENT_CANCELLED), S.CANCELLED),
    ],
    ids=["cancel", "expire", "complete", "fail", "time-out", "agent-cancelled"],
)
def test_terminal_event_sets_completed_at(events: tuple[CommandEvent, ...], status: CommandStatus) -> None:
    before = walk(make(), *events[:-1])
    assert before.completed_at is None
    after = before.apply(events[-1], T0 + 100)
    assert after.status is status and after.completed_at == T0 + 100


def test_non_terminal_events_leave_completed_at_unset() -> None:
    command = walk(make(requires_confirmation=True), E.CONFIRM, E.DELIVER, E.RETURN, E.DELIVER, E.PROGRESS,
                   E.PROGRESS, E.REQUEST_CANCEL)
    assert command.completed_at is None


def test_history_grows_by_one_status_change_per_event() -> None:
    command = make(requires_confirmation=True)
    steps = [(E.CONFIRM, S.QUEUED, {"by": "admin"}), (E.DELIVER, S.SENT, None),
             (E.PROGRESS, S.EXECUTING, {"percent": 50, "stage": "stopping"}), (E.COMPLETE, S.COMPLETED, None)]
    for n, (event, status, detail) in enumerate(steps, start=1):
        command = command.apply(event, T0 + n, detail)
        assert len(command.history) == n + 1
        assert command.history[-1] == StatusChange(status=status, at=T0 + n, event=event, detail=detail)
    assert command.history[0] == StatusChange(status=S.AWAITING_CONFIRMATION, at=T0, event=None)


def test_explicit_changes_win_over_the_event_defaults() -> None:
    sent = make().apply(E.DELIVER, T0 + 5, sent_at=T0 + 4)
    assert sent.sent_at == T0 + 4
    done = sent.apply(E.COMPLETE, T0 + 6, result={"ok": True}, completed_at=T0 + 5.5)
    assert done.result == {"ok": True} and done.completed_at == T0 + 5.5


def test_apply_returns_a_new_value_and_leaves_the_original() -> None:
    queued = make()
    queued.apply(E.DELIVER, T0 + 1)
    assert queued.status is S.QUEUED and len(queued.history) == 1 and queued.sent_at is None


@pytest.mark.parametrize(
    ("events", "illegal"),
    [((), E.PROGRESS), ((), E.CONFIRM), ((E.DELIVER,), E.CANCEL), ((E.DELIVER, E.COMPLETE), E.FAIL),
     ((E.EXPIRE,), E.DELIVER)],
    ids=["queued-progress", "queued-confirm", "sent-cancel", "completed-fail", "expired-deliver"],
)
def test_illegal_event_raises_and_changes_nothing(events: tuple[CommandEvent, ...], illegal: CommandEvent) -> None:
    command = walk(make(), *events)
    snapshot = command_document(command)
    with pytest.raises(IllegalTransition) as caught:
        command.apply(illegal, T0 + 50, {"x": 1}, result="nope")
    assert caught.value.status is command.status and caught.value.event is illegal
    assert command_document(command) == snapshot


def test_command_is_frozen() -> None:
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        make().status = S.SENT  # type: ignore[misc]


# --- deadline --------------------------------------------------------------------


@pytest.mark.parametrize("requires_confirmation", [False, True], ids=["queued", "awaiting-confirmation"])
def test_undelivered_deadline_is_scheduled_for_plus_delivery_deadline(requires_confirmation: bool) -> None:
    command = make(requires_confirmation=requires_confirmation, schedule_at=T0 + 60)
    assert command.deadline(delivery_deadline=3600, timeout_grace=30) == T0 + 60 + 3600


@pytest.mark.parametrize("events", [(E.DELIVER,), (E.DELIVER, E.PROGRESS)], ids=["sent", "executing"])
def test_with_agent_deadline_is_sent_at_plus_timeout_plus_grace(events: tuple[CommandEvent, ...]) -> None:
    command = walk(make(timeout_seconds=120), *events, start=T0 + 10)
    assert command.deadline(delivery_deadline=3600, timeout_grace=30) == T0 + 10 + 120 + 30


def test_returned_command_deadline_is_the_delivery_deadline_again() -> None:
    command = walk(make(timeout_seconds=120), E.DELIVER, E.RETURN)
    assert command.deadline(delivery_deadline=3600, timeout_grace=30) == T0 + 3600


@pytest.mark.parametrize("events", [(E.CANCEL,), (E.EXPIRE,), (E.DELIVER, E.COMPLETE), (E.DELIVER, E.TIME_OUT)],
                         ids=["cancelled", "expired", "completed", "failed"])
def test_finished_command_has_no_deadline(events: tuple[CommandEvent, ...]) -> None:
    assert walk(make(), *events).deadline(delivery_deadline=3600, timeout_grace=30) is None


# --- the stored document ---------------------------------------------------------


def test_document_holds_enum_values_as_strings() -> None:
    document = command_document(walk(make(), E.DELIVER))
    assert document["status"] == "sent" and document["priority"] == "high"
    assert [(h["status"], h["event"]) for h in document["history"]] == [("queued", None), ("sent", "deliver")]


def test_document_round_trips_through_json_with_the_whole_history() -> None:
    command = make(requires_confirmation=True, schedule_at=T0 + 30, parameters={"service": "nginx", "args": [1, 2]})
    command = command.apply(E.CONFIRM, T0 + 1, {"by": "admin"})
    command = walk(command, E.DELIVER, start=T0 + 31)
    command = command.apply(E.PROGRESS, T0 + 32, {"percent": 40, "stage": "draining"},
                            progress={"percent": 40, "stage": "draining"})
    command = command.apply(E.REQUEST_CANCEL, T0 + 33, {"by": "user-2"})
    command = command.apply(E.FAIL, T0 + 34, {"error": "boom"}, error={"message": "boom", "code": 3})
    document = json.loads(json.dumps(command_document(command)))
    restored = command_from_document(document)
    assert restored == command
    assert restored.history == command.history and len(restored.history) == 6
    assert restored.status is S.FAILED and restored.priority is Priority.HIGH
    assert restored.history[1].event is E.CONFIRM


@pytest.mark.parametrize("events", [(), (E.DELIVER,), (E.DELIVER, E.RETURN), (E.EXPIRE,)],
                         ids=["queued", "sent", "returned", "expired"])
def test_document_round_trip_at_each_stage(events: tuple[CommandEvent, ...]) -> None:
    command = walk(make(), *events)
    assert command_from_document(json.loads(json.dumps(command_document(command)))) == command
