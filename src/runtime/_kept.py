"""State an actor keeps across a restart: made for its spec, taken by each incarnation.

``ActorSpec.factory`` builds a fresh actor for every (re)start, so an actor
restarts from clean state; what must not be lost with it (accepted data:
metric history, written samples, alerts told) lives in a ``Kept`` the factory
takes from, as an OTP table given an heir outlives the process that owns it.

It lives as long as the spec its supervisor holds, and no longer: state that
makes its actor crash again and again ends where restart intensity ends the
loop. The supervisor gives up on the child (a probe's actor under
``/root/agents`` is forgotten, and its state with it) or on itself, up to the
root, which stops the server (its service manager starts it afresh). A guess
from timing alone (two restarts within so many seconds) was tried and dropped:
it also threw away the state of actors whose two crashes had nothing to do with
it (two bad queries, a database away for a while), which is what ``Kept`` is for.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Kept(Generic[T]):
    __slots__ = ("_make", "_value")

    def __init__(self, make: Callable[[], T]) -> None:
        """``make`` builds the state, when the first incarnation takes it."""
        self._make = make
        self._value: T | None = None

    def take(self) -> T:
        """The state, for an incarnation starting now (call it in the spec's factory)."""
        if self._value is None:
            self._value = self._make()
        return self._value
