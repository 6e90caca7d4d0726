"""Commands as values: what an operator asked, for which deployment, and every
status it went through. Changing a command makes a new value (``apply``)."""

from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator
from typing import Any, overload

import attrs
import cattrs
from cattrs.gen import make_dict_unstructure_fn, override

from ._status import CommandEvent, CommandStatus, next_status
from ._wire import CommandMetadata


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
    """One entry of a command's history: one change, or a run of progress reports."""

    status: CommandStatus
    at: float
    """Unix seconds (of the first report, for a run of progress reports)."""
    event: CommandEvent | None
    """None for the entry that created the command."""
    detail: dict[str, Any] | None = None
    """What came with the event: progress percent and stage, the error, who cancelled
    (for a run of progress reports, the last report's)."""
    count: int = 1
    """How many changes this entry stands for: consecutive progress reports are
    one entry, so a command reporting for a week keeps a short history."""
    last_at: float | None = None
    """Unix seconds of the last report of a run of progress reports (None: one change)."""

    @property
    def until(self) -> float:
        """When the last change this entry stands for was made."""
        return self.at if self.last_at is None else self.last_at


HISTORY_FIRST = 20
HISTORY_LAST = 80
"""A history keeps at most its first ``HISTORY_FIRST`` and last ``HISTORY_LAST``
entries, and how many changes it left out between them. With progress reports
merged, only a command handed out and given back over and over (its polls
closing before delivery) gets this far; the cap keeps each change's cost (the
row the store rewrites, the copy made here) bounded whatever a client does."""


@attrs.frozen(eq=False)
class History:
    """A command's history: the entries kept, oldest first, and the count of
    changes left out after the first ``first`` of them (``HISTORY_FIRST``).

    ``len()`` is the number of changes the command went through, its version
    (the stores' compare-and-set and the change feed count changes this way),
    which is more than the entries kept once reports were merged or entries left
    out. Iterating, indexing and slicing see the kept entries.
    """

    entries: tuple[StatusChange, ...]
    left_out: int = 0
    """Changes left out (a merged entry counts as its ``count``)."""
    first: int = 0
    """Entries kept before the ones left out (0 while nothing was left out)."""
    changes: int = attrs.field(init=False, eq=False, repr=False)

    @changes.default
    def _count_changes(self) -> int:
        return self.left_out + sum(entry.count for entry in self.entries)

    def __eq__(self, other: object) -> bool:
        """Equal to a history of the same entries left out at the same place, or
        to a tuple of its entries when it left out nothing (as commands were built)."""
        if isinstance(other, tuple):
            return not self.left_out and self.entries == other
        if isinstance(other, History):
            return (self.entries, self.left_out, self.first) == (other.entries, other.left_out, other.first)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.entries) if not self.left_out else hash((self.entries, self.left_out, self.first))

    def __len__(self) -> int:
        return self.changes

    def __iter__(self) -> Iterator[StatusChange]:
        return iter(self.entries)

    @overload
    def __getitem__(self, index: int) -> StatusChange: ...

    @overload
    def __getitem__(self, index: slice) -> tuple[StatusChange, ...]: ...

    def __getitem__(self, index: int | slice) -> StatusChange | tuple[StatusChange, ...]:
        return self.entries[index]

    def add(self, entry: StatusChange) -> History:
        """This history with ``entry`` after it: merged into the last entry when
        both are progress reports of the same status, and the oldest entries after
        the first ``HISTORY_FIRST`` left out past ``HISTORY_FIRST + HISTORY_LAST``."""
        last = self.entries[-1]
        if entry.event is CommandEvent.PROGRESS and last.event is CommandEvent.PROGRESS and entry.status is last.status:
            merged = attrs.evolve(last, detail=entry.detail, count=last.count + entry.count, last_at=entry.until)
            return History((*self.entries[:-1], merged), self.left_out, self.first)
        entries, left_out, first = (*self.entries, entry), self.left_out, self.first
        if len(entries) > HISTORY_FIRST + HISTORY_LAST:
            first = first or HISTORY_FIRST
            left_out += entries[first].count
            entries = (*entries[:first], *entries[first + 1:])
        return History(entries, left_out, first)

    def entry_at(self, version: int) -> StatusChange | None:
        """The entry that recorded change number ``version`` (1: the creation), or
        None if that change was left out (or is not in this history)."""
        seen = 0
        for index, entry in enumerate(self.entries):
            if self.left_out and index == self.first:
                seen += self.left_out
                if version <= seen:
                    return None
            seen += entry.count
            if version <= seen:
                return entry
        return None

    def until(self, version: int) -> tuple[StatusChange, ...]:
        """The kept entries of the changes up to ``version``, the one recording it included."""
        seen = 0
        for index, entry in enumerate(self.entries):
            if self.left_out and index == self.first:
                seen += self.left_out
            seen += entry.count
            if version <= seen:
                return self.entries[:index + 1]
        return self.entries


def as_history(entries: History | Iterable[StatusChange]) -> History:
    """``entries`` as a ``History`` (a command may be built with a plain tuple of entries)."""
    return entries if isinstance(entries, History) else History(tuple(entries))


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
    history: History = attrs.field(converter=as_history)
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
    rollback_on_failure: bool = False
    """``metadata.rollback_on_failure`` as the operator said it (for the agent; the server keeps it only)."""
    estimated_duration: int | None = None
    """``metadata.estimated_duration``: whole seconds the operator expects it to take; None: not said."""
    checkpoint_support: bool = False
    """``metadata.checkpoint_support`` as the operator said it (for the agent; the server keeps it only)."""

    @property
    def updated_at(self) -> float:
        return self.history[-1].until

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
        if status.terminal and not self.status.terminal:
            changes.setdefault("completed_at", at)
        return attrs.evolve(self, status=status, history=self.history.add(entry), **changes)

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
                sequence: int, target_agent: str | None = None,
                metadata: CommandMetadata | None = None) -> Command:
    """A command as an operator creates it: queued, or awaiting confirmation
    (``requires_confirmation``, or the ``metadata``'s)."""
    metadata = metadata if metadata is not None else CommandMetadata()
    requires_confirmation = requires_confirmation or bool(metadata.requires_confirmation)
    status = CommandStatus.AWAITING_CONFIRMATION if requires_confirmation else CommandStatus.QUEUED
    return Command(
        id=command_id, deployment_hash=deployment_hash, tenant=tenant, type=type, parameters=parameters,
        priority=priority, created_by=created_by, created_at=now,
        scheduled_for=max(now, schedule_at) if schedule_at is not None else now,
        timeout_seconds=timeout_seconds, requires_confirmation=requires_confirmation, status=status,
        history=History((StatusChange(status=status, at=now, event=None),)), sequence=sequence, target_agent=target_agent,
        rollback_on_failure=metadata.rollback_on_failure, estimated_duration=metadata.estimated_duration,
        checkpoint_support=metadata.checkpoint_support,
    )


def _as_is(value: Any) -> Any:
    return value


# Parameters, results, errors and progress are JSON as parsed (plain dicts,
# lists and scalars): written as they are, not walked item by item by cattrs
# (``Any`` is unstructured by its runtime type, each list element a call): a
# 9.5 MB result of 220,000 small objects spent ~0.4 s of the store's writer
# thread, and of the GIL, in that walk at every save of its command.
_AS_IS = override(unstruct_hook=_as_is)
_STORED = cattrs.Converter()
_STORED.register_unstructure_hook(StatusChange, make_dict_unstructure_fn(  # rows as before for a one-change entry
    StatusChange, _STORED, count=override(omit_if_default=True), last_at=override(omit_if_default=True),
    detail=_AS_IS))
_LEFT_OUT = "left_out"
"""The key of the marker that stands, in a stored history, where entries were left out."""


def _history_document(history: History) -> list[dict[str, Any]]:
    entries = [_STORED.unstructure(entry) for entry in history.entries]
    if history.left_out:
        entries.insert(history.first, {_LEFT_OUT: history.left_out})
    return entries


def _history_from_document(document: list[dict[str, Any]], _: type) -> History:
    entries: list[StatusChange] = []
    left_out = first = 0
    for item in document:
        if _LEFT_OUT in item:
            left_out, first = item[_LEFT_OUT], len(entries)
        else:
            entries.append(_STORED.structure(item, StatusChange))
    return History(tuple(entries), left_out, first)


_STORED.register_unstructure_hook(History, _history_document)
_STORED.register_structure_hook(History, _history_from_document)

_STORED.register_unstructure_hook(Command, make_dict_unstructure_fn(
    Command, _STORED, parameters=_AS_IS, result=_AS_IS, error=_AS_IS, progress=_AS_IS))


def command_document(command: Command) -> dict[str, Any]:
    """The command as stored: plain JSON types, every field and the whole history."""
    return _STORED.unstructure(command)  # type: ignore[no-any-return]  # cattrs' unstructure is typed Any; a Command gives a dict


def command_from_document(document: dict[str, Any]) -> Command:
    """The inverse of ``command_document`` (documents written by this server only)."""
    return _STORED.structure(document, Command)
