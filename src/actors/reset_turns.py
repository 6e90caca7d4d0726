"""The turns of the live-view clients to build resets (and to make the diffs
of a filter), and the frames they hold until sent: ``ResetBudget``'s rules
for the client actors of one server, waited for on Trio."""

from __future__ import annotations

import functools
import itertools
import sys
from collections.abc import Callable, Hashable

import trio

from trioscope.config import WebSocketSettings
from trioscope.domain.live import Frame, PreFramed
from trioscope.domain.reset_budget import ResetBudget

RESET_BUILDS = 2
"""Resets built at once in all. A reset is built in pieces of a few
milliseconds between which the server runs on, but every build under way adds
a piece to each turn of the event loop: 100 at once (one address's clients
resyncing a filtered view of 30,000 processes) took another client's ping from
6 to 530 ms at the 95th percentile. Whoever needs one beyond these waits its
turn."""


def frame_bytes(frame: Frame) -> int:
    """What a queued frame weighs: a ``PreFramed`` its frame's bytes; a
    ``str`` its text, and as much again once the transport has framed it for
    the socket (``SharedFrame.wire``)."""
    if isinstance(frame, PreFramed):
        return sys.getsizeof(frame.wire)
    return 2 * sys.getsizeof(frame)


class ResetTurns:
    """``ResetBudget`` for the client actors of one server: the address's
    turn to build a reset, waited for (``turn``), and the frames queued for
    clients, held against their address's room until sent (``hold``)."""

    def __init__(self, budget: ResetBudget) -> None:
        self.budget = budget
        self._wakes: dict[Hashable, trio.Event] = {}
        """The clients waiting for a turn, each woken by its own event."""
        self._granted: set[Hashable] = set()
        self._tickets = itertools.count()

    @classmethod
    def from_settings(cls, settings: WebSocketSettings) -> ResetTurns:
        return cls(ResetBudget(share=settings.reset_time_percent_per_address / 100, builds=RESET_BUILDS,
                               bytes_per_address=settings.max_reset_bytes_per_address,
                               total_bytes=settings.max_reset_bytes))

    def take(self, address: str) -> Turn | None:
        """The light turn of ``address`` (to make diffs, in one step) if it
        is free now (``ResetBudget.take``), else None: ``turn(light=True)``."""
        return Turn(self, address, light=True) if self.budget.take(address, trio.current_time()) else None

    async def turn(self, address: str, *, light: bool = False) -> Turn:
        """Wait for the turn of ``address`` to build one reset (``light``: to
        make diffs, in one step); the caller ends it (``Turn.done``).
        Cancelled, it takes no turn."""
        ticket = next(self._tickets)
        self._wakes[ticket] = trio.Event()
        self.budget.ask(address, ticket, light=light)
        try:
            self._grant()
            while ticket not in self._granted:
                # Woken when granted; and the first of the address's clients
                # waiting also when its address's time comes, which nothing
                # else would bring (told when that time changes: ``_retime``).
                wake = self._wakes[ticket]
                with trio.move_on_at(self.budget.wake_at(address, ticket, trio.current_time())):
                    await wake.wait()
                if wake.is_set():
                    self._wakes[ticket] = trio.Event()
                self._grant()
        except BaseException:
            if ticket in self._granted:
                Turn(self, address).done()
            else:
                self.budget.cancel(address, ticket, trio.current_time())
                self._grant()
                self._retime(address)  # the next of its clients is first now
            raise
        finally:
            del self._wakes[ticket]
            self._granted.discard(ticket)
        return Turn(self, address, light=light)

    def may_take(self, address: str, frame: Frame) -> bool:
        """Whether a client of ``address`` may be sent ``frame``, built
        already, without waiting for a turn (``ResetBudget.may_take``)."""
        return self.budget.may_take(address, id(frame))

    def hold(self, address: str, frame: Frame) -> Callable[[], None]:
        """``frame`` is queued for a client of ``address``: it counts against
        the address's room until the returned function is called (once)."""
        # By id, not the frame: the budget must not keep alive what it counts.
        # The id stays the frame's while counted: a client holds it meanwhile.
        key = id(frame)
        self.budget.hold(address, key, frame_bytes(frame))
        return functools.partial(self._release, address, key)

    def _release(self, address: str, key: int) -> None:
        self.budget.release(address, key, trio.current_time())
        self._grant()

    def _end(self, address: str, took: float) -> None:
        self.budget.done(address, trio.current_time(), took)
        self._grant()
        self._retime(address)

    def _grant(self) -> None:
        for ticket in self.budget.grant(trio.current_time()):
            self._granted.add(ticket)
            self._wakes[ticket].set()

    def _retime(self, address: str) -> None:
        """The time of ``address`` may have changed: its first client waiting looks again."""
        first = self.budget.first_waiting(address)
        if first is not None:
            self._wakes[first].set()


class Turn:
    """One address's turn to build a reset (or make diffs), ended once (``done``)."""

    __slots__ = ("_turns", "_address", "light")

    def __init__(self, turns: ResetTurns, address: str, *, light: bool = False) -> None:
        self._turns: ResetTurns | None = turns
        self._address = address
        self.light = light
        """A turn to make diffs: no reset is built on it."""

    def done(self, took: float = 0.0) -> None:
        """The turn is over, after ``took`` seconds of work (idempotent)."""
        turns, self._turns = self._turns, None
        if turns is not None:
            turns._end(self._address, took)
