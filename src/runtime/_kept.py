"""State an actor keeps across a restart: made for its spec, taken by each incarnation.

``ActorSpec.factory`` builds a fresh actor for every (re)start, so an actor
restarts from clean state; what must not be lost with it (accepted data: metric
history, written samples, alerts told) lives in a ``Kept`` the factory takes
from, as an OTP table given an heir outlives the process that owns it. Not
across a crash loop: an incarnation that took kept state and crashes soon
after may have crashed because of it, so the next one starts afresh and the
crash is the runtime's to count like any other.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")

log = logging.getLogger("trioscope.runtime")

SETTLE = 30.0
"""Seconds an incarnation that took kept state must live for its successor to take it too."""


class Kept(Generic[T]):
    __slots__ = ("_make", "_name", "_settle", "_clock", "_value", "_handed_on_at")

    def __init__(self, make: Callable[[], T], name: str, *, settle: float = SETTLE,
                 clock: Callable[[], float] = time.monotonic) -> None:
        """``make`` builds the state afresh; ``name`` says whose it is in the log."""
        self._make = make
        self._name = name
        self._settle = settle
        self._clock = clock
        self._value: T | None = None
        self._handed_on_at: float | None = None
        """When the last incarnation took the state an earlier one had (None: it made its own)."""

    def take(self) -> T:
        """The state, for an incarnation starting now (call it in the spec's
        factory): the one the last incarnation had, unless that one had taken
        it from an earlier one less than ``settle`` seconds ago (then a new
        one, logged)."""
        now = self._clock()
        if self._value is not None and self._handed_on_at is not None and now - self._handed_on_at < self._settle:
            log.warning("%s crashed again within %gs of a restart that kept its state: starting from fresh state, "
                        "in case what it kept is what made it crash", self._name, self._settle,
                        extra={"event": "kept_state_dropped", "actor": self._name})
            self._value = None
        if self._value is None:
            self._value = self._make()
            self._handed_on_at = None
        else:
            self._handed_on_at = now
        return self._value
