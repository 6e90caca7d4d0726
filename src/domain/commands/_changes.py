"""What a deployment's queue makes of each request on a command: which event,
with which detail in its history, which fields it sets, and, where a delivered
command ends, who ended it and how (its ``command.execute`` audit). Or why the
request is refused.

The queue actor commits what these decide; deciding is pure (``now`` passed
in), so every rule here is tested with plain values. Each function decides on
the command as the caller holds it: after a compare-and-set conflict the
caller reloads the command and asks again.
"""

from __future__ import annotations

from typing import Any

import attrs

from ._events import DEADLINE_EXPIRY, TIMED_OUT
from ._model import Command
from ._outcome import FINAL_STATUSES, delivered_to, repeats_outcome, report_outcome
from ._status import CommandEvent, CommandStatus
from ._wire import CommandReport

POLL_CLOSED = "the poll closed before delivery"
AGENT_RETIRED = "the agent was decommissioned or replaced before delivery"
NOT_ACKNOWLEDGED = "not acknowledged by the agent socket"
"""Reasons a delivered command went back to the queue, as its history says.
``NOT_ACKNOWLEDGED`` is also read back from the stored history
(``_returned_for``: a second time fails the command), so its words are part
of the stored format: a new wording must still recognise this one."""
AGENT_GONE = "the agent that had it was decommissioned or replaced before it reported"
"""The error of a command whose agent was retired while it had the command."""
ACKNOWLEDGED_BY_POLL = "acknowledged by last_command_id"
ACKNOWLEDGED_BY_REPORT = "acknowledged by a report"
"""Reasons a command given back to the queue was marked delivered again: its agent had it."""
UNACKNOWLEDGED_TWICE = ("not acknowledged by the agent socket, twice: not delivered a third time, "
                        "as the agent may have it")
"""The error of a command that went back to the queue for want of an
acknowledgement once already: it fails rather than going round again, since a
command the agent may have received twice must not be run a third time unseen."""
TARGET_RETIRED = ("the agent that reported the container was decommissioned or replaced before the command was "
                  "delivered; another agent may not run it")
"""The error of a command for one agent that was retired before delivery."""


class ReportConflict(Exception):
    """A final report that contradicts the recorded outcome, or one for a command
    the agent was never given. Nothing of the report is recorded."""


@attrs.frozen
class Executed:
    """How a delivered command ended, and who said so: the actor and outcome
    of its ``command.execute`` audit record, written with the change."""

    actor: str
    """``agent:<id>`` for the agent's word, ``system`` for the server's."""
    outcome: str
    """``completed``, ``failed``, ``cancelled``, ``timed_out``, or ``late_`` and the status reported late."""


@attrs.frozen(kw_only=True)
class Change:
    """One change of a command: ``event`` with ``detail`` in its history entry,
    the ``fields`` it sets, and ``executed`` where it ends a delivered command."""

    event: CommandEvent
    detail: dict[str, Any] | None = None
    fields: dict[str, Any] = attrs.field(factory=dict)
    executed: Executed | None = None

    def apply(self, command: Command, now: float) -> Command:
        """``command`` after this change at ``now``.

        Raises:
            IllegalTransition: ``command``'s status does not allow ``event``.
        """
        return command.apply(self.event, now, self.detail, **self.fields)


def next_sequence(last: int, now: float) -> int:
    """The sequence of a command created at ``now`` after one numbered ``last``:
    microseconds of the wall clock, kept increasing (FIFO within a priority,
    and creation order across restarts of the queue)."""
    return max(int(now * 1e6), last + 1)


def confirm_change(by: str) -> Change:
    """An operator (``by``) confirmed a command that awaited it."""
    return Change(event=CommandEvent.CONFIRM, detail={"by": by})


def cancel_change(command: Command, by: str) -> Change | None:
    """An operator (``by``) cancels ``command``: at once if its agent does not
    have it, else by a cancel delivered to the agent. None: that cancel is on
    its way already."""
    if not command.status.with_agent:
        return Change(event=CommandEvent.CANCEL, detail={"by": by})
    if command.cancel_requested:
        return None
    return Change(event=CommandEvent.REQUEST_CANCEL, detail={"by": by})


def delivery_change(agent_id: str | None, reason: str | None = None) -> Change:
    """Handed to ``agent_id``'s poll, or (``reason``) acknowledged by that agent
    after it went back to the queue. The entry names the agent, so that no
    other may report on the command (None: not known, nothing recorded)."""
    detail = {**({"reason": reason} if reason is not None else {}),
              **({"agent_id": agent_id} if agent_id is not None else {})}
    return Change(event=CommandEvent.DELIVER, detail=detail or None)


def return_change(reason: str) -> Change:
    """A delivery that did not reach the agent: queued again, saying why."""
    return Change(event=CommandEvent.RETURN, detail={"reason": reason})


def undelivered_change(command: Command, reason: str) -> Change:
    """The delivered (``sent``) ``command`` never reached its agent: queued
    again, unless it went back for want of an acknowledgement before and is
    not acknowledged again (it fails with ``UNACKNOWLEDGED_TWICE``)."""
    if reason == NOT_ACKNOWLEDGED and _returned_for(command, NOT_ACKNOWLEDGED):
        return Change(event=CommandEvent.FAIL, detail={"error": UNACKNOWLEDGED_TWICE},
                      fields={"error": UNACKNOWLEDGED_TWICE})
    return return_change(reason)


def deadline_change(event: CommandEvent) -> Change:
    """A command past its deadline, ended by ``event`` (``DeploymentQueue.overdue``):
    timed out with its agent, or expired before delivery."""
    if event is CommandEvent.TIME_OUT:
        return Change(event=event, detail={"error": TIMED_OUT}, fields={"error": TIMED_OUT},
                      executed=Executed("system", "timed_out"))
    return Change(event=event, detail={"reason": DEADLINE_EXPIRY})


def orphaned_change(holder: str) -> Change:
    """A command with its agent ``holder``, which was retired before it reported:
    it fails (no other agent may report on it)."""
    return Change(event=CommandEvent.FAIL, detail={"error": AGENT_GONE, "agent_id": holder},
                  fields={"error": AGENT_GONE}, executed=Executed("system", "failed"))


def untargetable_change() -> Change:
    """A command for one agent (a container control) whose agent was retired
    before delivery: it expires, since no other agent may run it."""
    return Change(event=CommandEvent.EXPIRE, detail={"reason": TARGET_RETIRED}, fields={"error": TARGET_RETIRED})


def report_change(command: Command, report: CommandReport, agent_id: str, now: float) -> Change | None:
    """What ``agent_id``'s ``report`` records on ``command``; None for a final
    report that repeats the recorded outcome (a retry: nothing to change).

    A command given back to the queue that the agent reports on is to be
    delivered again first (``given_back_to``, ``ACKNOWLEDGED_BY_REPORT``); this
    decides on the command after that.

    Raises:
        ReportConflict: the command was delivered to another agent, or not
            delivered at all; it is finished with another outcome; the report
            says cancelled for a command not asked to cancel.
    """
    _check_reporter(command, agent_id)
    if command.status.terminal:
        if report.status in FINAL_STATUSES and repeats_outcome(command, report):
            return None
        if report.status in FINAL_STATUSES and _timed_out(command):
            return _late_outcome_change(command, report, agent_id)
        raise ReportConflict(f"command {command.id} is already {command.status.value}, with another outcome "
                             "(status, result or error) than this report's; the report was not recorded")
    if command.status in (CommandStatus.QUEUED, CommandStatus.AWAITING_CONFIRMATION):
        raise ReportConflict(f"command {command.id} was not delivered to an agent; it is {command.status.value}")
    detail: dict[str, Any] = {"agent_id": agent_id}
    outcome = report_outcome(report)
    if outcome is None:
        progress = {"percent": report.progress, "stage": report.stage}
        detail.update(progress)
        return Change(event=CommandEvent.PROGRESS, detail=detail, fields={"progress": progress})
    if outcome.status is CommandStatus.CANCELLED and not command.cancel_requested:
        raise ReportConflict(f"command {command.id} was not asked to cancel; report failed, with an error, "
                             "if the agent stopped it")
    detail["error"] = outcome.error if outcome.status is CommandStatus.FAILED else None
    fields: dict[str, Any] = {"result": outcome.result, "error": outcome.error}
    if report.started_at is not None and command.started_at is None:
        # The agent's word, within what the server saw: not before it was
        # sent, nor after now (a 2099 or a 1970 was kept as it came).
        earliest = command.sent_at if command.sent_at is not None else command.created_at
        fields["started_at"] = min(max(report.started_at.timestamp(), earliest), now)
    return Change(event=outcome.event, detail=detail, fields=fields,
                  executed=Executed(f"agent:{agent_id}", outcome.status.value))


def _late_outcome_change(command: Command, report: CommandReport, agent_id: str) -> Change | None:
    """An outcome the agent reports for a command the server timed out: the
    agent did run it, so its word (and result) is recorded beside the
    time-out, once, the status left as it is (refused 409, the result was
    lost without a trace and the user, told "timed out", might run it
    again). The same report again is a duplicate (None); another, a conflict."""
    outcome = report_outcome(report)
    assert outcome is not None
    late = next((h for h in reversed(command.history.entries) if h.event is CommandEvent.LATE_OUTCOME), None)
    if late is not None:
        said = late.detail or {}
        if (said.get("status"), said.get("error"), command.result) == (
                outcome.status.value, outcome.error, outcome.result):
            return None
        raise ReportConflict(f"command {command.id} timed out, and its agent's late outcome was recorded "
                             "already; this report was not recorded")
    return Change(event=CommandEvent.LATE_OUTCOME,
                  detail={"agent_id": agent_id, "status": outcome.status.value, "error": outcome.error},
                  fields={"result": outcome.result},
                  executed=Executed(f"agent:{agent_id}", f"late_{outcome.status.value}"))


def _check_reporter(command: Command, agent_id: str) -> None:
    """Refuse a report on ``command`` from an agent it was not delivered to (an
    agent enrolled after another received it had completed that one's command
    with a result of its own)."""
    holder = delivered_to(command)
    if holder is not None and holder != agent_id:
        raise ReportConflict(f"command {command.id} was delivered to another agent of this deployment, not to "
                             f"agent {agent_id}: only the agent that received a command reports on it")


def _timed_out(command: Command) -> bool:
    """Whether ``command`` failed because the server timed it out (its agent may still report how it ended)."""
    return command.status is CommandStatus.FAILED and any(
        h.event is CommandEvent.TIME_OUT for h in command.history.entries)


def _returned_for(command: Command, reason: str) -> bool:
    """Whether ``command`` went back to the queue for ``reason`` before."""
    return any(h.event is CommandEvent.RETURN and (h.detail or {}).get("reason") == reason for h in command.history)
