"""Driving work done in steps (a generator that yields between slices and
returns its result) with a pause between the slices, so that one long piece
of work does not hold the event loop; and the pause most such work wants
(``Slicer``: a checkpoint once it ran so long without one)."""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable, Generator
from typing import Any, TypeVar, cast

import trio

T = TypeVar("T")


async def in_steps(steps: Generator[None, Any, T],
                   pause: Callable[[], Awaitable[None]] = trio.lowlevel.checkpoint) -> T:
    """Run ``steps`` to its end, awaiting ``pause`` after each slice (a
    checkpoint by default; a ``Slicer``'s, such as "after 20 ms without
    one", otherwise); its result. A cancellation during a pause leaves
    ``steps`` where it was, unfinished."""
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return cast(T, done.value)
        await pause()


class Slicer:
    """A pause for long work done in slices: a checkpoint once ``after``
    seconds have passed since the last one (or since ``restart``), and
    nothing before, so that other tasks (requests) get in every ``after``
    seconds without the work paying a checkpoint, and a trip round the event
    loop, per slice. ``pause`` is an ``in_steps`` pause.

    ``clock``: seconds, for how long the work ran (``time.perf_counter``: the
    work holds the event loop, so Trio's clock is not the one to read)."""

    __slots__ = ("after", "_clock", "_since")

    def __init__(self, after: float, clock: Callable[[], float] = time.perf_counter) -> None:
        """Raises ``ValueError`` if ``after`` is negative or not finite."""
        if not (after >= 0 and math.isfinite(after)):
            raise ValueError(f"invalid after: {after!r}")
        self.after = after
        self._clock = clock
        self._since = clock()

    def restart(self) -> None:
        """Count from now: a piece of work starts (the time before it was not its own)."""
        self._since = self._clock()

    def due(self) -> bool:
        """More than ``after`` seconds since the last pause (or ``restart``)."""
        return self._clock() - self._since > self.after

    async def pause(self) -> None:
        """A checkpoint if one is ``due`` (then counting from after it), else nothing."""
        if self.due():
            await trio.lowlevel.checkpoint()
            self._since = self._clock()
