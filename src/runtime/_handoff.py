"""A value one task hands, later, to another that waits for it (a held
long-poll's answer from its queue actor; a publish's acknowledgement from the
bus's sender)."""

from __future__ import annotations

from typing import Generic, TypeVar

import outcome
import trio

T = TypeVar("T")


class Handoff(Generic[T]):
    """One value from an actor (or any task) to a waiting task: a memory
    channel of one, in its lightest form. The waiter parks its task directly
    (as an ``Ask``'s asker does), so a held long-poll keeps ~100 bytes here
    where a channel pair and its waiting ``receive`` kept ~2.5 KB (bench/RESULTS.md).

    Both sides share the one object. The waiter ``close``s it when it stops
    waiting (answered, timed out, cancelled): from then on ``give`` refuses,
    so the actor knows that what it kept was not taken. The actor ``end``s it
    when it stops with nothing to give: a waiting ``receive`` raises
    ``trio.EndOfChannel``. A value given is either received (the waiter's task
    rescheduled with it cannot lose it) or held for ``receive_nowait``.
    """

    __slots__ = ("_value", "_holds", "_given", "_task", "_closed", "_ended")

    def __init__(self) -> None:
        self._value: T | None = None
        self._holds = False
        self._given = False
        self._task: trio.lowlevel.Task | None = None
        self._closed = False
        self._ended = False

    @property
    def closed(self) -> bool:
        """The waiter stopped waiting: nothing is given any more."""
        return self._closed

    @property
    def holds(self) -> bool:
        """A value was given and not yet received."""
        return self._holds

    # The actor's side.
    def give(self, value: T) -> bool:
        """Hand ``value`` over; False (nothing done) if the waiter closed it, it
        was ended, or a value was given already (one value only)."""
        if self._closed or self._ended or self._given:
            return False
        self._given = True
        task, self._task = self._task, None
        if task is not None:
            trio.lowlevel.reschedule(task, outcome.Value(value))
        else:
            self._value, self._holds = value, True
        return True

    def end(self) -> None:
        """Nothing will be given: a waiting or later ``receive`` raises ``trio.EndOfChannel``."""
        self._ended = True
        task, self._task = self._task, None
        if task is not None:
            trio.lowlevel.reschedule(task, outcome.Error(trio.EndOfChannel()))

    # The waiter's side (one task).
    async def receive(self) -> T:
        """Wait for the value (a checkpoint, cancellable: a value given after a
        cancellation is left for ``receive_nowait``).

        Raises:
            trio.EndOfChannel: ended with nothing given.
            trio.ClosedResourceError: closed by the waiter.
        """
        if self._holds or self._ended or self._closed:
            await trio.lowlevel.checkpoint()
            return self.receive_nowait()
        self._task = trio.lowlevel.current_task()
        return await trio.lowlevel.wait_task_rescheduled(self._abort)  # type: ignore[no-any-return]  # give sends a T

    def _abort(self, _raise_cancel: object) -> trio.lowlevel.Abort:
        # A method, not a closure: a held poll keeps whatever its wait refers to.
        self._task = None
        return trio.lowlevel.Abort.SUCCEEDED

    def receive_nowait(self) -> T:
        """The value given, if one waits.

        Raises:
            trio.WouldBlock: none given yet.
            trio.EndOfChannel: ended with nothing given.
            trio.ClosedResourceError: closed by the waiter.
        """
        if self._holds:
            value, self._value, self._holds = self._value, None, False
            return value  # type: ignore[return-value]  # set with _holds
        if self._closed:
            raise trio.ClosedResourceError
        if self._ended:
            raise trio.EndOfChannel
        raise trio.WouldBlock

    def close(self) -> None:
        """The waiter stops waiting: ``give`` refuses from now on."""
        self._closed = True
