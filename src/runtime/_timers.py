"""Messages an actor sends itself later or periodically, owned by its incarnation.

Hand-written timer tasks got the edges wrong: a tick told after shutdown closed
the mailbox raised into the actor (cancelling ``on_stop`` halfway), a tick told
into a full mailbox crashed it, and a periodic tick that found the previous one
still queued queued another. A ``Timer`` belongs to the incarnation that made it
and is cancelled when it ends; its firings go through the mailbox like any
message, wrapped so that the cell can tell when one was handled.

All the timers of a system wait in one task (``TimerService``: a heap of due
times), not in a task each: every WebSocket client and every agent has a
periodic timer, and a waiting trio task (its coroutines, cancel scopes and
context) took a few KiB of each client's memory and a scheduler wake per tick.

An ``Alarm`` is one timer set, moved and cleared for "wake me when the next
thing is due", which actors with deadlines or a throttled flush each wrote by
hand (a timer, the time it was set for, a flag cleared by its message); a
``Sweep``, a periodic clean-up done in batches, each actor's own again. A
``Waiting`` is a background wait whose end the actor is told, at most one at
a time: five actors kept a flag beside a task for it, each clearing it at a
different point (one in the task, which started a second wait before the
first one's message had been handled).
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import trio

from ._exceptions import ActorStopped, MailboxFull

if TYPE_CHECKING:
    from ._mailbox import Mailbox
    from ._ref import ActorRef

MIN_TIMER = 0.05
"""An ``Alarm``'s shortest delay by default: never a busy loop, whatever the
due time says (a time read from the wall clock, and Trio's, may disagree by a hair)."""

_COMPACT_AT = 64
"""Cancelled timers stay in the heap until they come due, unless more than half
the heap (and at least this many) are cancelled: then it is rebuilt without them."""


class Timer:
    """A message due later (``ActorContext.send_after``) or every ``period``
    seconds (``ActorContext.every``). Cancel with ``cancel()``; it is cancelled
    anyway when the incarnation that made it ends."""

    __slots__ = ("message", "period", "pending", "cancelled", "mailbox", "scheduled", "_owner", "_service", "_spawn")

    def __init__(self, message: Any, period: float | None, owner: set[Timer], mailbox: Mailbox,
                 service: TimerService, spawn: Callable[..., Any]) -> None:
        self.message = message
        self.period = period
        self.pending = False
        """A firing is queued and not handled yet: a periodic timer does not queue another."""
        self.cancelled = False
        self.mailbox = mailbox
        self.scheduled = False
        """In the service's heap (waiting to come due)."""
        self._owner = owner
        self._service = service
        self._spawn = spawn
        """Starts a task in the incarnation's nursery: for a one-shot firing that must wait for room."""
        owner.add(self)

    def cancel(self) -> None:
        """No more firings; one already queued is dropped unhandled."""
        if not self.cancelled:
            self.cancelled = True
            self._owner.discard(self)
            if self.scheduled:
                self._service.forget()

    @property
    def active(self) -> bool:
        return not self.cancelled


class Fire:
    """Internal: a timer's firing as it sits in the mailbox."""

    __slots__ = ("timer",)

    def __init__(self, timer: Timer) -> None:
        self.timer = timer

    def take(self) -> tuple[bool, Any]:
        """Whether to handle the firing (the timer was not cancelled since), and its message."""
        timer = self.timer
        timer.pending = False
        if timer.cancelled:
            return False, None
        if timer.period is None:
            timer._owner.discard(timer)  # fired: nothing of it is left to cancel
        return True, timer.message


class Alarm:
    """One message an actor sends itself at the earliest of the times it was
    set for (``ActorContext.alarm``): "wake me when the next thing is due",
    for things due at times that move (deadlines, a throttled flush).

    Set for a later time than it is set for already, it stays as it is (the
    handler finds the later thing when it fires, and sets it again): one early
    look rather than a new timer each time. Set for an earlier one, it moves.
    Never sooner than ``minimum`` from now. Once its message is taken for
    handling it is clear again (``armed`` False), so that the handler may set
    it anew. A firing into a full mailbox waits for room, as ``send_after``'s;
    the alarm ends with the incarnation, as its timers do.
    """

    __slots__ = ("message", "minimum", "_send_after", "_timer", "_due")

    def __init__(self, message: Any, minimum: float, send_after: Callable[[float, Any], Timer]) -> None:
        self.message = message
        self.minimum = minimum
        self._send_after = send_after
        self._timer: Timer | None = None
        self._due = math.inf

    @property
    def armed(self) -> bool:
        """Set, and its message not yet taken (waiting to come due, or queued)."""
        timer = self._timer
        return timer is not None and not timer.cancelled and (timer.scheduled or timer.pending)

    @property
    def due(self) -> float | None:
        """When it comes due (``trio.current_time()``); None if not ``armed``."""
        return self._due if self.armed else None

    def at(self, when: float) -> None:
        """Fire at ``when`` (``trio.current_time()``; at least ``minimum`` from
        now), unless set to fire sooner.

        Raises:
            ValueError: ``when`` is not a number or infinite.
        """
        if not when < math.inf:
            raise ValueError(f"invalid time: {when!r}")
        now = trio.current_time()
        self._set(max(when, now + self.minimum), now)

    def after(self, delay: float) -> None:
        """Fire in ``delay`` seconds (at least ``minimum``; a negative delay is
        a time past), unless set to fire sooner.

        Raises:
            ValueError: ``delay`` is not a number or infinite.
        """
        if not delay < math.inf:
            raise ValueError(f"invalid delay: {delay!r}")
        now = trio.current_time()
        self._set(now + max(self.minimum, delay), now)

    def _set(self, due: float, now: float) -> None:
        if self.armed and self._due <= due:
            return
        self.cancel()
        self._due = due
        self._timer = self._send_after(due - now, self.message)

    def cancel(self) -> None:
        """Clear it; a firing already queued is dropped unhandled."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._due = math.inf


class Waiting:
    """One background wait at a time whose end is told to the actor
    (``ActorContext.waiting``): for what an actor waits on outside itself
    (another actor's answer, a socket's writer making room, a turn shared
    with others) while it goes on with its messages.

    ``start`` runs the wait as a task of the incarnation, unless one is
    ``active`` already. What the wait returns (the ``message`` the waiting was
    made with, if it returns None) is then handed to the actor through its
    mailbox as a ``send_after`` firing is: no sooner than ``not_before``,
    waiting for room in a full mailbox, and dropped unhandled if the
    incarnation has ended (it speaks of that incarnation's state). It is
    ``active`` from ``start`` until that message is taken for handling, so
    that its handler may start the next wait. A wait that raises crashes the
    actor, as any of its tasks.
    """

    __slots__ = ("message", "_spawn", "_send_after", "_running", "_timer")

    def __init__(self, message: Any, spawn: Callable[..., Any], send_after: Callable[[float, Any], Timer]) -> None:
        self.message = message
        self._spawn = spawn
        self._send_after = send_after
        self._running = False
        self._timer: Timer | None = None

    @property
    def active(self) -> bool:
        """Started, and its message not yet taken for handling."""
        timer = self._timer
        return self._running or (timer is not None and not timer.cancelled and (timer.scheduled or timer.pending))

    def start(self, wait: Callable[..., Awaitable[Any]], *args: Any, not_before: float = -math.inf) -> bool:
        """Run ``wait(*args)`` in the background and tell what it returns, no
        sooner than ``not_before`` (``trio.current_time()``); False, and
        nothing started, while ``active``."""
        if self.active:
            return False
        self._running = True
        self._spawn(self._run, wait, args, not_before)
        return True

    async def _run(self, wait: Callable[..., Awaitable[Any]], args: tuple[Any, ...], not_before: float) -> None:
        value = await wait(*args)
        message = self.message if value is None else value
        if message is None:
            raise TypeError(f"{wait!r} returned None and the waiting has no message to tell")
        self._timer = self._send_after(max(0.0, not_before - trio.current_time()), message)
        self._running = False


class Sweep:
    """A clean-up an actor does in batches (``ActorContext.sweep``): its
    message every period, and, while a batch found more to do, ``again``:
    the next batch goes to the back of the mailbox, so that the messages
    waiting meanwhile are not held up for the whole clean-up. Ends with the
    incarnation, as its timers."""

    __slots__ = ("message", "timer", "_ref")

    def __init__(self, message: Any, timer: Timer, ref: ActorRef) -> None:
        self.message = message
        self.timer = timer
        """The periodic firing (``ActorContext.every``)."""
        self._ref = ref

    def again(self) -> bool:
        """Another batch now, behind the messages waiting; False if the
        mailbox has no room (the next period comes back to what is left)."""
        return self._ref.offer(self.message)


def check_delay(name: str, value: float) -> None:
    if not (value >= 0 and math.isfinite(value)):
        raise ValueError(f"invalid {name}: {value!r}")


class TimerService:
    """When each timer of a system comes due, and one task that fires them."""

    def __init__(self) -> None:
        self._due: list[tuple[float, int, Timer]] = []
        self._order = itertools.count()
        self._cancelled = 0
        self._sleep: trio.CancelScope | None = None

    def __len__(self) -> int:
        """Timers waiting to come due."""
        return len(self._due) - self._cancelled

    @property
    def held(self) -> int:
        """Entries held, cancelled ones not yet dropped included: at most about
        twice ``len(self)`` (or ``_COMPACT_AT`` more)."""
        return len(self._due)

    def schedule(self, timer: Timer, delay: float) -> None:
        """Fire ``timer`` ``delay`` seconds from now (then every period, if it has one)."""
        self._push(timer, trio.current_time() + delay)

    def forget(self) -> None:
        """A timer was cancelled: its entry is skipped when it comes due (or compacted away)."""
        self._cancelled += 1
        if self._cancelled > _COMPACT_AT and self._cancelled * 2 > len(self._due):
            for entry in self._due:
                if entry[2].cancelled:
                    entry[2].scheduled = False
            self._due = [entry for entry in self._due if not entry[2].cancelled]
            heapq.heapify(self._due)
            self._cancelled = 0

    def _push(self, timer: Timer, at: float) -> None:
        timer.scheduled = True
        heapq.heappush(self._due, (at, next(self._order), timer))
        if self._sleep is not None and at < self._sleep.deadline:
            self._sleep.deadline = at

    async def run(self) -> None:
        """Fire timers as they come due, until cancelled."""
        while True:
            now = trio.current_time()
            while self._due and self._due[0][0] <= now:
                _, _, timer = heapq.heappop(self._due)
                timer.scheduled = False
                if timer.cancelled:
                    self._cancelled -= 1
                else:
                    self._fire(timer, now)
            due = self._due
            with trio.CancelScope(deadline=due[0][0] if due else math.inf) as self._sleep:
                await trio.sleep_forever()
            self._sleep = None

    def _fire(self, timer: Timer, now: float) -> None:
        """A one-shot firing waits for room in a full mailbox (it is owed: a
        task of the incarnation waits); a periodic one that finds the mailbox
        full, or its previous firing still queued, is skipped (the next period
        comes). A closed mailbox ends the timer quietly: the actor is stopping,
        and nothing is due any more."""
        try:
            if timer.period is None:
                timer.pending = True
                try:
                    timer.mailbox.put_nowait(Fire(timer))
                except MailboxFull:
                    timer._spawn(_put_when_room, timer)
                return
            if not timer.pending:
                try:
                    timer.mailbox.put_nowait(Fire(timer))
                    timer.pending = True
                except MailboxFull:
                    pass
        except ActorStopped:
            timer.cancel()
            return
        self._push(timer, now + timer.period)


async def _put_when_room(timer: Timer) -> None:
    try:
        await timer.mailbox.put(Fire(timer))
    except ActorStopped:
        return
