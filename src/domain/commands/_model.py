"""Commands as values: what an operator asked, for which deployment, and every
status it went through. Changing a command makes a new value (``apply``)."""

from __future__ import annotations

import enum
from typing import Any

import attrs
import cattrs

from ._status import CommandEvent, CommandStatus, next_status


class Priority(enum.Enum):
    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        """Higher is delivered first."""
        return _PRIORITY_RANKS[self]


_PRIORITY_RANKS = {Priority.LOW: 0, Priority.NORMAL: 1, Priority.HIGH: 2, Priority.CRITICAL: 3}


@attrs.frozen(kw_only=True)
class StatusChange:
    """One entry of a command's history."""

    status: CommandStatus
    at: float
    """Unix seconds."""
    event: CommandEvent | None
    """None for the entry that created the command."""
    detail: dict[str, Any] | None = None
    """What came with the event: progress percent and stage, the error, who cancelled."""


@attrs.frozen(kw_only=True)
class Command:
    id: str
    deployment_hash: str
    tenant: str
    type: str
    parameters: dict[str, Any]
    priority: Priority
    created_by: str
    created_at: float
    scheduled_for: float
    """When it becomes deliverable (``schedule_at``, else ``created_at``)."""
    timeout_seconds: int
    requires_confirmation: bool
    status: CommandStatus
    history: tuple[StatusChange, ...]
    sequence: int
    """Creation order within the server's store: FIFO within a priority."""
    sent_at: float | None = None
    started_at: float | None = None
    completed_at: float | None = None
    result: Any = None
    error: Any = None
    progress: dict[str, Any] | None = None
    cancel_requested: bool = False
    target_agent: str | None = None
    """The one agent that may run it (a container control goes to the agent that
    reported the container); None: whichever agent the deployment has."""

    @property
    def updated_at(self) -> float:
        return self.history[-1].at

    def apply(self, event: CommandEvent, at: float, detail: dict[str, Any] | None = None,
              **changes: Any) -> Command:
        """This command after ``event`` at ``at``, with ``changes`` to its fields.

        Raises:
            IllegalTransition: the current status does not allow ``event``.
        """
        status = next_status(self.status, event)
        entry = StatusChange(status=status, at=at, event=event, detail=detail)
        if event is CommandEvent.DELIVER:
            changes.setdefault("sent_at", at)
        elif event is CommandEvent.RETURN:
            changes.setdefault("sent_at", None)
        elif event is CommandEvent.PROGRESS and self.started_at is None:
            changes.setdefault("started_at", at)
        elif event is CommandEvent.REQUEST_CANCEL:
            changes.setdefault("cancel_requested", True)
        if status.terminal:
            changes.setdefault("completed_at", at)
        return attrs.evolve(self, status=status, history=(*self.history, entry), **changes)

    def deadline(self, *, delivery_deadline: float, timeout_grace: float) -> float | None:
        """When this command expires (not yet delivered) or times out (with the
        agent); None once it is finished."""
        if self.status in (CommandStatus.QUEUED, CommandStatus.AWAITING_CONFIRMATION):
            return self.scheduled_for + delivery_deadline
        if self.status.with_agent:
            assert self.sent_at is not None
            return self.sent_at + self.timeout_seconds + timeout_grace
        return None


def new_command(*, command_id: str, deployment_hash: str, tenant: str, type: str,
                parameters: dict[str, Any], priority: Priority, created_by: str, now: float,
                schedule_at: float | None, timeout_seconds: int, requires_confirmation: bool,
                sequence: int, target_agent: str | None = None) -> Command:
    """A command as an operator creates it: queued, or awaiting confirmation."""
    status = CommandStatus.AWAITING_CONFIRMATION if requires_confirmation else CommandStatus.QUEUED
    return Command(
        id=command_id, deployment_hash=deployment_hash, tenant=tenant, type=type, parameters=parameters,
        priority=priority, created_by=created_by, created_at=now,
        scheduled_for=max(now, schedule_at) if schedule_at is not None else now,
        timeout_seconds=timeout_seconds, requires_confirmation=requires_confirmation, status=status,
        history=(StatusChange(status=status, at=now, event=None),), sequence=sequence, target_agent=target_agent,
    )


_STORED = cattrs.Converter()


def command_document(command: Command) -> dict[str, Any]:
    """The command as stored: plain JSON types, every field and the whole history."""
    return _STORED.unstructure(command)  # type: ignore[no-any-return]  # cattrs' unstructure is typed Any; a Command gives a dict


def command_from_document(document: dict[str, Any]) -> Command:
    """The inverse of ``command_document`` (documents written by this server only)."""
    return _STORED.structure(document, Command)
