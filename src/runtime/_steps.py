"""Driving work done in steps (a generator that yields between slices and
returns its result) with a pause between the slices, so that one long piece
of work does not hold the event loop."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Generator
from typing import Any, TypeVar, cast

import trio

T = TypeVar("T")


async def in_steps(steps: Generator[None, Any, T],
                   pause: Callable[[], Awaitable[None]] = trio.lowlevel.checkpoint) -> T:
    """Run ``steps`` to its end, awaiting ``pause`` after each slice (a
    checkpoint by default; an actor's own rule, such as "after 20 ms without
    one", otherwise); its result. A cancellation during a pause leaves
    ``steps`` where it was, unfinished."""
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return cast(T, done.value)
        await pause()
