"""One deployment's open commands, in delivery order.

Order: cancel notices first, then priority (critical > high > normal > low),
FIFO within a priority, and nothing before its ``scheduled_for`` time. The heaps
are lazy: an entry whose command changed since it was pushed is skipped when
it surfaces, so transitions never search a heap.
"""

from __future__ import annotations

import heapq
import sys
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

import attrs
import orjson

from ._model import Command
from ._status import CommandEvent, CommandStatus


@attrs.frozen
class CancelNotice:
    """A cancel to deliver to the agent for a command it already has."""

    command_id: str

    @property
    def notice_id(self) -> str:
        return cancel_notice_id(self.command_id)


CANCEL_PREFIX = "cancel:"


def cancel_notice_id(command_id: str) -> str:
    return CANCEL_PREFIX + command_id


Delivery = Command | CancelNotice


def parameters_bytes(parameters: dict[str, Any]) -> int:
    """What ``parameters`` take: their size as compact JSON (as
    ``MAX_PARAMETERS_BYTES`` counts it) or the memory the parsed objects
    hold, whichever is more. JSON alone undercounts what an open command
    keeps: ``[{},{},...]`` is 3 bytes an item and ~72 in memory, and 4 MiB of
    it a deployment (``commands.max_open_parameter_bytes``) held ~98 MiB, at
    every start again (the queues reload their open commands)."""
    return max(len(orjson.dumps(parameters)), _memory(parameters))


def _memory(value: Any) -> int:
    """Bytes the objects of a parsed JSON value hold (``sys.getsizeof`` of
    each, as the parser made them; the singletons ``None``, ``True`` and
    ``False`` and CPython's cached small integers counted as the pointer to them
    that their container already counts). Each item once: a command's
    parameters are at most ``MAX_PARAMETERS_BYTES`` of JSON, ~22,000 items."""
    total = 0
    stack = [value]
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind is dict:
            total += sys.getsizeof(item)
            stack.extend(item)
            stack.extend(item.values())
        elif kind is list:
            total += sys.getsizeof(item)
            stack.extend(item)
        elif item is None or kind is bool or (kind is int and _CACHED_INTS[0] <= item <= _CACHED_INTS[1]):
            continue
        else:
            total += sys.getsizeof(item)
    return total


_CACHED_INTS = (-5, 256)
"""The integers CPython makes once (``[0, 0, ...]`` holds one ``0``)."""

FINISHED_KEPT = 4096
"""Finished commands a queue remembers with their last version, so that a
refresh older than the change that finished one does not bring it back."""


class DeploymentQueue:
    """Open commands of one deployment: queued, awaiting confirmation, or with the agent."""

    def __init__(self, *, delivery_deadline: float, timeout_grace: float,
                 finished_kept: int = FINISHED_KEPT) -> None:
        self.delivery_deadline = delivery_deadline
        """Seconds a queued command may wait for delivery (from its ``scheduled_for``)."""
        self.timeout_grace = timeout_grace
        """Seconds past its ``timeout_seconds`` a delivered command may take."""
        self._open: dict[str, Command] = {}
        self._ready: list[tuple[int, int, str]] = []
        """(-rank, sequence, id) of queued commands that are due."""
        self._scheduled: list[tuple[float, int, str]] = []
        """(scheduled_for, sequence, id) of queued commands not yet due."""
        self._notices: dict[str, CancelNotice] = {}
        self._taken: set[str] = set()
        """Queued commands handed out by ``take`` and not ``put`` back yet."""
        self._parameter_sizes: dict[str, int] = {}
        """``parameters_bytes`` of each open command: parameters never change."""
        self.parameter_bytes = 0
        """The parameters of the open commands, in bytes of compact JSON: what
        they hold in memory is bounded by a budget on this."""
        self._deadlines: list[tuple[float, str]] = []
        """(deadline, id) pushed whenever an open command's deadline changes: the
        next one is found without looking at every open command (up to a
        million of them per deployment)."""
        self._finished: OrderedDict[str, int] = OrderedDict()
        """Commands that left finished, with their version (``len(history)``):
        the newest ``finished_kept``, the oldest forgotten."""
        self._finished_kept = finished_kept

    def __len__(self) -> int:
        return len(self._open)

    def __iter__(self) -> Iterator[Command]:
        return iter(list(self._open.values()))

    def get(self, command_id: str) -> Command | None:
        return self._open.get(command_id)

    def put(self, command: Command, *, size: int | None = None) -> None:
        """Record ``command``'s current value: queued ones join the delivery order,
        finished ones leave, and a requested cancel of one with the agent is queued
        for delivery. ``size``: its ``parameters_bytes``, where the caller has
        them already (walking 64 KiB of parameters takes milliseconds)."""
        previous = self._open.get(command.id)
        returned = command.id in self._taken
        self._taken.discard(command.id)
        if command.status.terminal:
            self._open.pop(command.id, None)
            self._notices.pop(command.id, None)
            self.parameter_bytes -= self._parameter_sizes.pop(command.id, 0)
            self._compact_deadlines()
            self._finished[command.id] = len(command.history)
            self._finished.move_to_end(command.id)
            while len(self._finished) > self._finished_kept:
                self._finished.popitem(last=False)
            return
        self._open[command.id] = command
        if previous is None:
            if size is None:
                size = parameters_bytes(command.parameters)
            self._parameter_sizes[command.id] = size
            self.parameter_bytes += size
        deadline = self._deadline(command)
        if deadline is not None and (previous is None or self._deadline(previous) != deadline):
            heapq.heappush(self._deadlines, (deadline, command.id))
            self._compact_deadlines()
        if command.status is CommandStatus.QUEUED and (
                returned or previous is None or previous.status is not CommandStatus.QUEUED):
            heapq.heappush(self._scheduled, (command.scheduled_for, command.sequence, command.id))
        if command.cancel_requested and command.status.with_agent and (previous is None or not previous.cancel_requested):
            self._notices[command.id] = CancelNotice(command.id)

    def newer(self, command: Command) -> bool:
        """Whether ``command`` (as stored, perhaps changed by another replica) is
        a later version (``len(history)``) than what this queue holds of it,
        open or lately finished."""
        held = self._open.get(command.id)
        known = len(held.history) if held is not None else self._finished.get(command.id, 0)
        return len(command.history) > known

    def notice_again(self, command_id: str) -> None:
        """A cancel notice was not delivered after all: deliver it on the next poll."""
        command = self._open.get(command_id)
        if command is not None and command.cancel_requested and command.status.with_agent:
            self._notices[command_id] = CancelNotice(command_id)

    @property
    def queued(self) -> int:
        return sum(1 for c in self._open.values() if c.status is CommandStatus.QUEUED)

    def take(self, now: float, *, min_rank: int = 0, skip: str | None = None) -> Delivery | None:
        """The next thing to hand to a poll, removed from the order (``put`` the
        command back to undo); None when nothing is due."""
        if self._notices:
            _, notice = self._notices.popitem()
            return notice
        self._promote(now)
        deferred = []
        found = None
        while self._ready:
            entry = heapq.heappop(self._ready)
            command = self._open.get(entry[2])
            if (command is None or command.status is not CommandStatus.QUEUED or command.sequence != entry[1]
                    or command.id in self._taken):
                continue  # stale or duplicate entry
            if -entry[0] < min_rank or command.id == skip:
                deferred.append(entry)
                continue
            found = command
            self._taken.add(command.id)
            break
        for entry in deferred:
            heapq.heappush(self._ready, entry)
        return found

    def _promote(self, now: float) -> None:
        while self._scheduled and self._scheduled[0][0] <= now:
            _, sequence, command_id = heapq.heappop(self._scheduled)
            command = self._open.get(command_id)
            if command is not None and command.status is CommandStatus.QUEUED:
                heapq.heappush(self._ready, (-command.priority.rank, sequence, command_id))

    def next_due(self, now: float) -> float | None:
        """When a scheduled command becomes deliverable (None: none waiting)."""
        while self._scheduled:
            due, _, command_id = self._scheduled[0]
            command = self._open.get(command_id)
            if command is None or command.status is not CommandStatus.QUEUED:
                heapq.heappop(self._scheduled)
                continue
            return due if due > now else now
        return None

    def _compact_deadlines(self) -> None:
        """Once stale entries outnumber the open commands (they would pile up for
        as long as the delivery deadline), keep only the current deadlines: O(open
        commands), amortised over the more than as many puts since the last time."""
        if len(self._deadlines) > 2 * len(self._open) + 64:
            self._deadlines = [(d, c.id) for c in self._open.values() if (d := self._deadline(c)) is not None]
            heapq.heapify(self._deadlines)

    def _deadline(self, command: Command) -> float | None:
        return command.deadline(delivery_deadline=self.delivery_deadline, timeout_grace=self.timeout_grace)

    def _current(self, entry: tuple[float, str]) -> Command | None:
        """The command of a deadline entry, if the entry is still its deadline."""
        command = self._open.get(entry[1])
        return command if command is not None and self._deadline(command) == entry[0] else None

    def overdue(self, now: float) -> list[tuple[Command, CommandEvent]]:
        """Commands past their deadline, with the event that ends them. They stay
        open (and overdue) until they are ``put`` with their new status."""
        ended, due, seen = [], [], set()
        while self._deadlines and self._deadlines[0][0] <= now:
            entry = heapq.heappop(self._deadlines)
            command = self._current(entry)
            # A command can hold two entries of its current deadline (queued,
            # sent, returned: queued again); one of them is dropped here.
            if command is not None and command.id not in seen:
                seen.add(command.id)
                due.append(entry)
                ended.append((command, CommandEvent.TIME_OUT if command.status.with_agent else CommandEvent.EXPIRE))
        for entry in due:
            heapq.heappush(self._deadlines, entry)
        return ended

    def next_deadline(self) -> float | None:
        """The earliest deadline of an open command (None: none has one)."""
        while self._deadlines:
            if self._current(self._deadlines[0]) is not None:
                return self._deadlines[0][0]
            heapq.heappop(self._deadlines)
        return None


def next_wake(queue: DeploymentQueue, now: float, *, polls_waiting: bool, retry_at: float | None,
              idle_until: float) -> float | None:
    """When the owner of ``queue`` has something to do next: a deadline, a
    scheduled command coming due (only when a poll waits to be handed it),
    ``retry_at`` (a hand-out to try again), or ``idle_until`` once nothing is
    open and no poll waits (to stop). None: nothing until a request comes."""
    times = [queue.next_deadline(), retry_at]
    if polls_waiting:
        times.append(queue.next_due(now))
    if not len(queue) and not polls_waiting:
        times.append(idle_until)
    return min((t for t in times if t is not None), default=None)
