"""Messages an actor sends itself later or periodically, owned by its incarnation.

Hand-written timer tasks got the edges wrong: a tick told after shutdown closed
the mailbox raised into the actor (cancelling ``on_stop`` halfway), a tick told
into a full mailbox crashed it, and a periodic tick that found the previous one
still queued queued another. A ``Timer`` lives in the incarnation's nursery, so
it ends when the actor stops or restarts; its firings go through the mailbox
like any message, wrapped so that the cell can tell when one was handled.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import trio

from ._exceptions import ActorStopped, MailboxFull

if TYPE_CHECKING:
    from ._mailbox import Mailbox


class Timer:
    """A message due later (``ActorContext.send_after``) or every ``period``
    seconds (``ActorContext.every``). Cancel with ``cancel()``; it is cancelled
    anyway when the incarnation that made it ends."""

    __slots__ = ("message", "period", "pending", "cancelled", "_scope", "_owner")

    def __init__(self, message: Any, period: float | None, owner: set[Timer]) -> None:
        self.message = message
        self.period = period
        self.pending = False
        """A firing is queued and not handled yet: a periodic timer does not queue another."""
        self.cancelled = False
        self._scope = trio.CancelScope()
        self._owner = owner
        owner.add(self)

    def cancel(self) -> None:
        """No more firings; one already queued is dropped unhandled."""
        self.cancelled = True
        self._scope.cancel()
        self._owner.discard(self)

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


def check_delay(name: str, value: float) -> None:
    if not (value >= 0 and math.isfinite(value)):
        raise ValueError(f"invalid {name}: {value!r}")


async def run_timer(timer: Timer, mailbox: Mailbox, delay: float) -> None:
    """The timer's task: fire after ``delay``, then every ``period`` if periodic.

    A one-shot firing waits for room in a full mailbox (it is owed); a periodic
    one that finds the mailbox full, or its previous firing still queued, is
    skipped (the next period comes). A closed mailbox ends the timer quietly:
    the actor is stopping, and nothing is due any more."""
    try:
        with timer._scope:
            await trio.sleep(delay)
            while True:
                if timer.period is None:
                    timer.pending = True
                    await mailbox.put(Fire(timer))
                    return
                if not timer.pending:
                    try:
                        mailbox.put_nowait(Fire(timer))
                        timer.pending = True
                    except MailboxFull:
                        pass
                await trio.sleep(timer.period)
    except ActorStopped:
        return
