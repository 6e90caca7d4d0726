"""Work done in steps: a generator that yields between slices of the work and
returns its result. An actor or a request drives it with chances for others
to run in between (``trioscope.runtime.in_steps``); a caller with nothing to
let in runs it ``at_once``."""

from __future__ import annotations

from collections.abc import Generator
from typing import TypeVar, cast

T = TypeVar("T")

Steps = Generator[None, None, T]
"""Yields between slices; returns what the work gives."""


def at_once(steps: Steps[T]) -> T:
    """Run ``steps`` to its end without a pause; its result."""
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return cast(T, done.value)
