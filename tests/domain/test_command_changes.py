"""What a deployment's queue makes of each request on a command, decided with
plain values (no actor, no store, no clock): reports and who may make them,
cancels, deliveries that did not arrive, deadlines, retired agents; the
versions a queue remembers and when it has something to do next."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from trioscope.domain.commands import (
    ACKNOWLEDGED_BY_POLL, AGENT_GONE, DEADLINE_EXPIRY, NOT_ACKNOWLEDGED, POLL_CLOSED, TARGET_RETIRED, TIMED_OUT,
    UNACKNOWLEDGED_TWICE, Change, Command, CommandEvent, CommandReport, CommandStatus, DeploymentQueue, Executed,
    Priority, ReportConflict, cancel_change, confirm_change, deadline_change, delivery_change, given_back_to,
    holder_of, new_command, next_sequence, next_wake, orphaned_change, report_change, return_change,
    undelivered_change, untargetable_change,
)

E, S = CommandEvent, CommandStatus
T0 = 1_760_000_000.0
DELIVERY_DEADLINE = 3600.0
GRACE = 30.0


def make(command_id: str = "cmd-1", *, now: float = T0, schedule_at: float | None = None) -> Command:
    return new_command(
        command_id=command_id, deployment_hash="dep-1", tenant="acme", type="backup", parameters={},
        priority=Priority.NORMAL, created_by="user-1", now=now, schedule_at=schedule_at, timeout_seconds=60,
        requires_confirmation=False, sequence=1,
    )


def sent(agent_id: str | None = "agent-1", at: float = T0 + 1) -> Command:
    return delivery_change(agent_id).apply(make(), at)


def report(status: str, **fields: object) -> CommandReport:
    return CommandReport(command_id="cmd-1", deployment_hash="dep-1", status=status, **fields)  # type: ignore[arg-type]


def timed_out() -> Command:
    return deadline_change(E.TIME_OUT).apply(sent(), T0 + 100)


# --- sequence ----------------------------------------------------------------------

def test_next_sequence_is_the_wall_clock_in_microseconds() -> None:
    assert next_sequence(0, T0) == int(T0 * 1e6)


def test_next_sequence_keeps_increasing_within_a_microsecond_and_when_the_clock_goes_back() -> None:
    first = next_sequence(0, T0)
    assert next_sequence(first, T0) == first + 1
    assert next_sequence(first, T0 - 60) == first + 1


# --- operators' requests -------------------------------------------------------------

def test_confirm_records_who_confirmed() -> None:
    assert confirm_change("user-2") == Change(event=E.CONFIRM, detail={"by": "user-2"})


def test_cancel_of_a_command_the_agent_does_not_have_cancels_it_at_once() -> None:
    change = cancel_change(make(), "user-2")
    assert change == Change(event=E.CANCEL, detail={"by": "user-2"})
    assert change.apply(make(), T0 + 1).status is S.CANCELLED


def test_cancel_of_a_command_with_the_agent_is_requested_once() -> None:
    change = cancel_change(sent(), "user-2")
    assert change == Change(event=E.REQUEST_CANCEL, detail={"by": "user-2"})
    requested = change.apply(sent(), T0 + 2)
    assert requested.cancel_requested
    assert cancel_change(requested, "user-3") is None  # already on its way to the agent


# --- deliveries ----------------------------------------------------------------------

def test_a_delivery_names_its_agent_and_why_when_it_is_an_acknowledgement() -> None:
    assert delivery_change("agent-1").detail == {"agent_id": "agent-1"}
    assert delivery_change("agent-1", ACKNOWLEDGED_BY_POLL).detail == {
        "reason": ACKNOWLEDGED_BY_POLL, "agent_id": "agent-1"}
    assert delivery_change(None).detail is None  # no agent known: nothing recorded
    assert sent().sent_at == T0 + 1


def test_an_undelivered_command_goes_back_to_the_queue_saying_why() -> None:
    change = undelivered_change(sent(), POLL_CLOSED)
    assert change == return_change(POLL_CLOSED) == Change(event=E.RETURN, detail={"reason": POLL_CLOSED})
    assert change.apply(sent(), T0 + 2).status is S.QUEUED


def test_a_command_not_acknowledged_twice_fails_rather_than_going_round_again() -> None:
    once = undelivered_change(sent(), NOT_ACKNOWLEDGED).apply(sent(), T0 + 2)
    again = delivery_change("agent-1").apply(once, T0 + 3)
    twice = undelivered_change(again, NOT_ACKNOWLEDGED)
    assert twice == Change(event=E.FAIL, detail={"error": UNACKNOWLEDGED_TWICE},
                           fields={"error": UNACKNOWLEDGED_TWICE})
    assert (twice.apply(again, T0 + 4).status, twice.apply(again, T0 + 4).error) == (S.FAILED, UNACKNOWLEDGED_TWICE)
    # A poll that went away is no missing acknowledgement: back to the queue again.
    assert undelivered_change(again, POLL_CLOSED).event is E.RETURN


def test_given_back_to_the_agent_it_was_delivered_to_or_to_any_when_none_was_recorded() -> None:
    returned = return_change(POLL_CLOSED).apply(sent("agent-1"), T0 + 2)
    assert given_back_to(returned, "agent-1")
    assert not given_back_to(returned, "agent-2")
    assert given_back_to(return_change(POLL_CLOSED).apply(sent(None), T0 + 2), "agent-2")
    assert not given_back_to(sent("agent-1"), "agent-1")  # with the agent: nothing given back
    assert not given_back_to(make(), "agent-1")  # never delivered


# --- deadlines and retired agents ----------------------------------------------------

def test_a_command_with_its_agent_past_its_deadline_times_out_and_is_audited() -> None:
    change = deadline_change(E.TIME_OUT)
    assert change == Change(event=E.TIME_OUT, detail={"error": TIMED_OUT}, fields={"error": TIMED_OUT},
                            executed=Executed("system", "timed_out"))
    assert (timed_out().status, timed_out().error) == (S.FAILED, TIMED_OUT)


def test_a_queued_command_past_its_deadline_expires_unaudited() -> None:
    change = deadline_change(E.EXPIRE)
    assert change == Change(event=E.EXPIRE, detail={"reason": DEADLINE_EXPIRY})
    assert change.apply(make(), T0 + DELIVERY_DEADLINE).status is S.EXPIRED


def test_a_command_whose_agent_was_retired_fails_naming_it() -> None:
    holder = holder_of(sent("agent-1"))
    assert holder == "agent-1"
    change = orphaned_change(holder)
    assert change.executed == Executed("system", "failed")
    failed = change.apply(sent("agent-1"), T0 + 5)
    assert (failed.status, failed.error, failed.history[-1].detail) == (
        S.FAILED, AGENT_GONE, {"error": AGENT_GONE, "agent_id": "agent-1"})


def test_only_a_command_with_its_agent_has_a_holder() -> None:
    assert holder_of(make()) is None
    assert holder_of(sent(None)) is None
    assert holder_of(return_change(POLL_CLOSED).apply(sent(), T0 + 2)) is None
    assert holder_of(report_change(sent(), report("executing", progress=10), "agent-1", T0 + 2)
                     .apply(sent(), T0 + 2)) == "agent-1"  # type: ignore[union-attr]


def test_a_command_for_a_retired_agent_expires_saying_why() -> None:
    expired = untargetable_change().apply(make(), T0 + 1)
    assert (expired.status, expired.error, expired.history[-1].detail) == (
        S.EXPIRED, TARGET_RETIRED, {"reason": TARGET_RETIRED})


# --- agents' reports -----------------------------------------------------------------

def test_progress_is_recorded_with_its_agent() -> None:
    change = report_change(sent(), report("executing", progress=40, stage="dump"), "agent-1", T0 + 2)
    assert change == Change(event=E.PROGRESS, detail={"agent_id": "agent-1", "percent": 40, "stage": "dump"},
                            fields={"progress": {"percent": 40, "stage": "dump"}})


def test_a_final_report_records_the_outcome_and_its_audit() -> None:
    change = report_change(sent(), report("completed", result={"ok": True}), "agent-1", T0 + 2)
    assert change == Change(event=E.COMPLETE, detail={"agent_id": "agent-1", "error": None},
                            fields={"result": {"ok": True}, "error": None}, executed=Executed("agent:agent-1", "completed"))
    failed = report_change(sent(), report("failed", error="disk full"), "agent-1", T0 + 2)
    assert failed is not None and failed.detail == {"agent_id": "agent-1", "error": "disk full"}
    assert failed.executed == Executed("agent:agent-1", "failed")


def test_the_agents_start_time_is_kept_within_what_the_server_saw() -> None:
    def started(at: datetime) -> float:
        change = report_change(sent(at=T0 + 10), report("completed", started_at=at), "agent-1", T0 + 20)
        assert change is not None
        return change.fields["started_at"]

    assert started(datetime.fromtimestamp(T0 + 15, UTC)) == T0 + 15
    assert started(datetime(1970, 1, 2, tzinfo=UTC)) == T0 + 10  # not before it was sent
    assert started(datetime(2099, 1, 1, tzinfo=UTC)) == T0 + 20  # nor after now


def test_only_the_agent_a_command_was_delivered_to_reports_on_it() -> None:
    with pytest.raises(ReportConflict, match="delivered to another agent"):
        report_change(sent("agent-1"), report("completed"), "agent-2", T0 + 2)
    assert report_change(sent(None), report("completed"), "agent-2", T0 + 2) is not None  # not recorded: any


def test_a_report_on_a_command_never_delivered_is_refused() -> None:
    with pytest.raises(ReportConflict, match="was not delivered"):
        report_change(make(), report("completed"), "agent-1", T0 + 2)


def test_a_cancelled_report_needs_a_cancel_asked_for() -> None:
    with pytest.raises(ReportConflict, match="not asked to cancel"):
        report_change(sent(), report("cancelled"), "agent-1", T0 + 2)
    requested = cancel_change(sent(), "user-2").apply(sent(), T0 + 2)  # type: ignore[union-attr]
    change = report_change(requested, report("cancelled"), "agent-1", T0 + 3)
    assert change is not None and change.event is E.AGENT_CANCELLED


def test_a_repeated_final_report_changes_nothing_and_another_outcome_is_refused() -> None:
    change = report_change(sent(), report("completed", result=1), "agent-1", T0 + 2)
    assert change is not None
    completed = change.apply(sent(), T0 + 2)
    assert report_change(completed, report("completed", result=1), "agent-1", T0 + 3) is None
    with pytest.raises(ReportConflict, match="already completed"):
        report_change(completed, report("completed", result=2), "agent-1", T0 + 3)
    with pytest.raises(ReportConflict):
        report_change(completed, report("executing", progress=50), "agent-1", T0 + 3)


def test_a_late_outcome_is_recorded_beside_the_time_out_once() -> None:
    change = report_change(timed_out(), report("completed", result="done"), "agent-1", T0 + 200)
    assert change == Change(event=E.LATE_OUTCOME,
                            detail={"agent_id": "agent-1", "status": "completed", "error": None},
                            fields={"result": "done"}, executed=Executed("agent:agent-1", "late_completed"))
    late = change.apply(timed_out(), T0 + 200)
    assert (late.status, late.error, late.result) == (S.FAILED, TIMED_OUT, "done")
    assert report_change(late, report("completed", result="done"), "agent-1", T0 + 300) is None
    with pytest.raises(ReportConflict, match="late outcome was recorded already"):
        report_change(late, report("failed", error="no"), "agent-1", T0 + 300)


# --- what a queue remembers, and when it has something to do -------------------------

def new_queue(finished_kept: int = 4096) -> DeploymentQueue:
    return DeploymentQueue(delivery_deadline=DELIVERY_DEADLINE, timeout_grace=GRACE, finished_kept=finished_kept)


def test_a_queue_takes_only_newer_versions_of_open_and_finished_commands() -> None:
    queue = new_queue()
    assert queue.newer(make())  # never seen
    queue.put(sent())
    assert not queue.newer(make())  # older than the one held
    assert queue.newer(timed_out())
    queue.put(timed_out())
    assert queue.get("cmd-1") is None
    assert not queue.newer(sent())  # finished meanwhile: an older refresh does not bring it back
    assert not queue.newer(timed_out())


def test_a_queue_forgets_the_oldest_finished_commands_past_its_bound() -> None:
    queue = new_queue(finished_kept=2)
    for command_id in ("a", "b", "c"):
        queue.put(make(command_id).apply(E.CANCEL, T0 + 1))
    assert queue.newer(make("a"))  # forgotten
    assert not queue.newer(make("b")) and not queue.newer(make("c"))


def test_next_wake_is_the_earliest_deadline_and_a_due_command_only_with_a_poll_waiting() -> None:
    queue = new_queue()
    due_now = make("due")
    later = make("later", schedule_at=T0 + 600)
    queue.put(due_now)
    queue.put(later)

    def wake(*, polls_waiting: bool, retry_at: float | None = None) -> float | None:
        return next_wake(queue, T0, polls_waiting=polls_waiting, retry_at=retry_at, idle_until=T0 + 60)

    assert wake(polls_waiting=False) == T0 + DELIVERY_DEADLINE
    assert wake(polls_waiting=True) == T0  # one is due and a poll waits: hand it over
    assert wake(polls_waiting=False, retry_at=T0 + 2) == T0 + 2
    queue.take(T0)
    assert wake(polls_waiting=True) == T0 + 600


def test_next_wake_of_an_empty_queue_is_its_idle_stop_unless_a_poll_waits() -> None:
    queue = new_queue()
    assert next_wake(queue, T0, polls_waiting=False, retry_at=None, idle_until=T0 + 60) == T0 + 60
    assert next_wake(queue, T0, polls_waiting=True, retry_at=None, idle_until=T0 + 60) is None
