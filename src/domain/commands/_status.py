"""The command state machine: statuses, events, and the transition table.

Every change of a command's status is an event applied through ``TRANSITIONS``;
an event a status has no entry for raises ``IllegalTransition`` and changes nothing.
"""

from __future__ import annotations

import enum


class CommandStatus(enum.Enum):
    AWAITING_CONFIRMATION = "awaiting_confirmation"
    QUEUED = "queued"
    SENT = "sent"
    EXECUTING = "executing"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"

    @property
    def terminal(self) -> bool:
        """Finished: no event changes its status any more (a late outcome is
        recorded beside a failure without changing it)."""
        return all(after is self for after in TRANSITIONS[self].values())

    @property
    def with_agent(self) -> bool:
        """Handed to the agent and not finished: a timeout applies, a cancel must be delivered."""
        return self in (CommandStatus.SENT, CommandStatus.EXECUTING)


class CommandEvent(enum.Enum):
    CONFIRM = "confirm"
    """An operator confirmed a command that requires it."""
    DELIVER = "deliver"
    """Handed to one poll (or agent WebSocket)."""
    RETURN = "return"
    """The hand-off failed before the agent got it (the poll went away): queue again."""
    PROGRESS = "progress"
    """The agent reports it is executing (percent, stage)."""
    COMPLETE = "complete"
    FAIL = "fail"
    CANCEL = "cancel"
    """An operator cancelled a command the agent does not have yet."""
    REQUEST_CANCEL = "request_cancel"
    """An operator cancelled a command the agent has: a cancel is delivered to it."""
    AGENT_CANCELLED = "agent_cancelled"
    """The agent reports it stopped the command after a cancel."""
    TIME_OUT = "time_out"
    """Sent or executing past ``timeout_seconds`` plus the grace period."""
    EXPIRE = "expire"
    """Not delivered within the delivery deadline."""
    LATE_OUTCOME = "late_outcome"
    """The agent reported how the command ended after the server had timed it
    out: recorded beside the time-out (its result kept), the status stays."""


S, E = CommandStatus, CommandEvent

TRANSITIONS: dict[CommandStatus, dict[CommandEvent, CommandStatus]] = {
    S.AWAITING_CONFIRMATION: {E.CONFIRM: S.QUEUED, E.CANCEL: S.CANCELLED, E.EXPIRE: S.EXPIRED},
    S.QUEUED: {E.DELIVER: S.SENT, E.CANCEL: S.CANCELLED, E.EXPIRE: S.EXPIRED},
    S.SENT: {
        E.RETURN: S.QUEUED, E.PROGRESS: S.EXECUTING, E.COMPLETE: S.COMPLETED, E.FAIL: S.FAILED,
        E.REQUEST_CANCEL: S.SENT, E.AGENT_CANCELLED: S.CANCELLED, E.TIME_OUT: S.FAILED,
    },
    S.EXECUTING: {
        E.PROGRESS: S.EXECUTING, E.COMPLETE: S.COMPLETED, E.FAIL: S.FAILED,
        E.REQUEST_CANCEL: S.EXECUTING, E.AGENT_CANCELLED: S.CANCELLED, E.TIME_OUT: S.FAILED,
    },
    S.COMPLETED: {},
    S.FAILED: {E.LATE_OUTCOME: S.FAILED},
    S.CANCELLED: {},
    S.EXPIRED: {},
}

OPEN_STATUSES = tuple(status for status in CommandStatus if not status.terminal)


class IllegalTransition(ValueError):
    """``event`` is not allowed in ``status``."""

    def __init__(self, status: CommandStatus, event: CommandEvent) -> None:
        super().__init__(f"cannot {event.value.replace('_', ' ')} a command that is {status.value}")
        self.status = status
        self.event = event


def next_status(status: CommandStatus, event: CommandEvent) -> CommandStatus:
    """The status after ``event``.

    Raises:
        IllegalTransition: ``status`` has no transition for ``event``.
    """
    try:
        return TRANSITIONS[status][event]
    except KeyError:
        raise IllegalTransition(status, event) from None
