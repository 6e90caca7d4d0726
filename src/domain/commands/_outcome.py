"""What an agent's report makes of a command: the outcome a final report
records, and who may report on a command at all.

One function decides the outcome (``report_outcome``), so a repeated report is
recognised as a repeat (``repeats_outcome``) by the same rule that recorded the
first: a report that differs in status, result or error is another outcome,
not a duplicate to answer as if it were recorded.
"""

from __future__ import annotations

from typing import Any

import attrs

from ._events import TIMED_OUT
from ._model import Command
from ._status import CommandEvent, CommandStatus
from ._wire import CommandReport

FINAL_STATUSES = {"completed": CommandStatus.COMPLETED, "success": CommandStatus.COMPLETED,
                  "failed": CommandStatus.FAILED, "error": CommandStatus.FAILED, "timeout": CommandStatus.FAILED,
                  "cancelled": CommandStatus.CANCELLED}
"""The status a final report's ``status`` says the command ended in (``executing`` is progress)."""
_EVENTS = {CommandStatus.COMPLETED: CommandEvent.COMPLETE, CommandStatus.FAILED: CommandEvent.FAIL,
           CommandStatus.CANCELLED: CommandEvent.AGENT_CANCELLED}


@attrs.frozen(kw_only=True)
class ReportOutcome:
    """How a final report ends its command."""

    status: CommandStatus
    result: Any
    error: Any

    @property
    def event(self) -> CommandEvent:
        """The event that records it."""
        return _EVENTS[self.status]


def report_outcome(report: CommandReport) -> ReportOutcome | None:
    """The outcome ``report`` records; None for a progress report (``executing``).

    A ``completed`` report that lists ``errors`` is a failure (the TryDirect
    status agent's rule); a failure without an ``error`` takes its ``errors``,
    else, for ``timeout``, ``TIMED_OUT``. ``errors`` beside an ``error`` are
    kept in the result (``{"errors": [...]}``, or added to an object result
    that has none).
    """
    final = FINAL_STATUSES.get(report.status)
    if final is None:
        return None
    error, result = report.error, report.result
    if final is CommandStatus.COMPLETED and report.errors:
        final, error = CommandStatus.FAILED, error or report.errors
    elif final is CommandStatus.FAILED and error is None:
        error = report.errors or (TIMED_OUT if report.status == "timeout" else None)
    if report.errors and error is not report.errors and (result is None or (
            isinstance(result, dict) and "errors" not in result)):
        # Its message is the error; the structured errors beside it (a code and
        # its cause: vault_init_failed, npm_error) were nowhere: kept in the result.
        result = {**(result or {}), "errors": report.errors}
    return ReportOutcome(status=final, result=result, error=error)


def repeats_outcome(command: Command, report: CommandReport) -> bool:
    """Whether ``report`` says what the finished ``command`` recorded (a retried
    report): the same status, result and error. A late failure with its error
    after the server timed the command out is another outcome, not a repeat."""
    outcome = report_outcome(report)
    return outcome is not None and (outcome.status, outcome.result, outcome.error) == (
        command.status, command.result, command.error)


def delivered_to(command: Command) -> str | None:
    """The agent the command's latest delivery went to; None if it was never
    delivered, or delivered by a server that did not record to whom (any agent
    of the deployment is then taken at its word, as before)."""
    for entry in reversed(command.history.entries):
        if entry.event is CommandEvent.DELIVER:
            agent_id = (entry.detail or {}).get("agent_id")
            return agent_id if isinstance(agent_id, str) else None
    return None


def returned_undelivered(command: Command) -> bool:
    """Queued again after a delivery the server thought had not reached the
    agent (a poll gone, a socket that did not acknowledge in time): the agent
    may have it after all."""
    return command.status is CommandStatus.QUEUED and any(h.event is CommandEvent.RETURN for h in command.history)


def holder_of(command: Command) -> str | None:
    """The agent that has ``command`` now (sent or executing), if its delivery named it."""
    return delivered_to(command) if command.status.with_agent else None


def given_back_to(command: Command, agent_id: str | None) -> bool:
    """Whether ``command`` went back to the queue after a delivery to
    ``agent_id`` (a delivery that recorded no agent was made by an older
    server: any agent of the deployment may have had it). The agent saying it
    has it (its report, or a poll's ``last_command_id``) acknowledges it then:
    the command is delivered, not to be handed out a second time."""
    holder = delivered_to(command)
    return returned_undelivered(command) and (holder is None or holder == agent_id)
