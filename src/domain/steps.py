"""Work done in steps: a generator that yields between slices of the work and
returns its result. An actor or a request drives it with chances for others
to run in between (``trioscope.runtime.in_steps``); a caller with nothing to
let in runs it ``at_once``."""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any, TypeVar, cast

T = TypeVar("T")

SORT_STEP = 16_384
"""Items ``sorted_in_steps`` sorts, or merges, between two yields."""

Steps = Generator[None, None, T]
"""Yields between slices; returns what the work gives."""


def at_once(steps: Steps[T]) -> T:
    """Run ``steps`` to its end without a pause; its result."""
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return cast(T, done.value)


def sorted_in_steps(items: list[T], key: Callable[[T], Any] | None = None, step: int = SORT_STEP) -> Steps[list[T]]:
    """``sorted(items, key=key)``, stable, as sorted runs of ``step`` merged two
    by two (a sort holds the GIL: 200,000 ids at once held the loop 60-120 ms;
    the longest step here, the last merge, is one pass over them)."""
    runs = []
    for start in range(0, len(items), step):
        runs.append(sorted(items[start:start + step], key=key))  # type: ignore[type-var, arg-type]
        yield
    while len(runs) > 1:
        merged = []
        for i in range(0, len(runs) - 1, 2):
            # Two sorted runs one after the other: timsort merges them in one pass.
            merged.append(sorted(runs[i] + runs[i + 1], key=key))  # type: ignore[type-var, arg-type]
            yield
        runs = merged + runs[len(merged) * 2:]
    return runs[0] if runs else []
