"""The actor base class and what the runtime gives each running actor."""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import attrs
import trio

from ._exceptions import ActorStopped, UnhandledMessage, WorkAbandoned
from ._timers import MIN_TIMER, Alarm, Sweep, Timer, Waiting, check_delay

log = logging.getLogger("trioscope.runtime")

T = TypeVar("T")

if TYPE_CHECKING:
    from ._node import ActorCell
    from ._ref import ActorRef
    from ._system import ActorSystem


@attrs.frozen(kw_only=True)
class Terminated:
    """Death-watch notice: told to every watcher when an actor terminates for good
    (it will not be restarted)."""

    path: str
    reason: str
    """``normal``, ``shutdown``, ``crashed: <error>``, ``gave up`` or ``start failed: <error>``."""


@attrs.frozen
class Forward:
    """A ``handle`` return value that answers by handing the message on:
    ``message`` goes to ``target`` as if its asker had sent it there.

    Asked, the same pending ask moves to ``target``'s mailbox: its answer, its
    refusal or its crash (``ActorFailed``) reaches the original asker directly,
    within the asker's one deadline, and this actor goes on with its next
    message at once. A full or stopped ``target`` is raised at the asker
    (``MailboxFull`` / ``ActorStopped``). Told, ``message`` is told to
    ``target`` (dropped if it has no room: a tell promises nothing).

    The way for an owner actor to route requests to children it starts on
    demand, without the caller ever starting one.
    """

    target: ActorRef
    message: Any


@attrs.frozen
class Later:
    """A ``handle`` return value that answers when ``work()`` is done, while
    the actor goes on with its next messages: ``work`` runs as a task of this
    incarnation; its value answers the asker, one of the actor's ``refusals``
    is raised at the asker, and anything else crashes the actor as ``handle``
    raising it would (the asker gets ``ActorFailed``). Cancelled with the
    incarnation (a stop, a restart), the asker gets ``ActorStopped``. Told,
    ``work`` runs and its value is dropped.

    For an answer that waits on something other than the actor's state (a
    worker thread reading what the actor keeps safe for readers beside it),
    so that the messages behind it are not held up for as long as it takes.
    ``work`` interleaves with ``handle``: it changes no state that ``handle``
    relies on without taking care of that itself, and bounds how many of it
    may wait at once (each holds its message until it answers).
    """

    work: Callable[[], Awaitable[Any]]


@attrs.frozen(kw_only=True)
class LinkDown:
    """Internal: a linked actor terminated abnormally; the cell crashes the
    actor with ``LinkedActorTerminated`` instead of handing it this."""

    path: str
    reason: str


class ActorContext:
    """What the runtime hands a running actor: its address, the system, and a scope
    for background tasks. Replaced on every restart."""

    __slots__ = ("_cell", "_tasks", "_timers", "_at_end")

    def __init__(self, cell: ActorCell, tasks: trio.Nursery) -> None:
        self._cell = cell
        self._tasks = tasks
        self._timers: set[Timer] = set()
        self._at_end: list[Callable[[], None]] = []

    @property
    def ref(self) -> ActorRef:
        """This actor's own address (equal across restarts)."""
        return self._cell.ref

    @property
    def path(self) -> str:
        return self._cell.path

    @property
    def system(self) -> ActorSystem:
        return self._cell.system

    @property
    def backlog(self) -> int:
        """Messages waiting in this actor's mailbox (for an ``on_idle`` that
        waited, to tell whether more work arrived meanwhile)."""
        return len(self._cell.mailbox)

    def start_soon(self, fn: Callable[..., Awaitable[Any]], *args: Any, name: str | None = None) -> None:
        """Run ``fn(*args)`` in the background for as long as this incarnation lives.

        It is cancelled when the actor stops or restarts; if it raises, the actor
        crashes (and is restarted per its spec), exactly as if ``handle`` had.
        Use it to wait for something outside the actor (a socket, another
        actor's answer, an event) and hand what came back with ``tell_self``
        (``waiting`` for a wait that must not be started twice at once);
        never for handling messages, nor for timers (``send_after``, ``every``
        and ``alarm`` wait in one task for the whole system).
        """
        self._tasks.start_soon(fn, *args, name=name)

    async def tell_self(self, message: Any) -> None:
        """Hand ``message`` to this actor, from one of its background tasks
        (``start_soon``): what the task waited for, handled as a message, one
        at a time with the others.

        Waits for room in the mailbox (back-pressure on the task, never a
        drop). Returns quietly if the actor takes no more messages (it is
        stopping: counted as a dead letter), never raising into the task.
        Queued when the incarnation ends (a restart), it is handled by the
        next one, as any message waiting.
        """
        try:
            await self._cell.ref.send(message)
        except ActorStopped:
            pass

    async def in_thread(self, work: Callable[..., T], *args: Any, limiter: trio.CapacityLimiter | None = None,
                        what: str = "work in a thread") -> T:
        """``work(*args)`` in a worker thread (of ``limiter``), waited for
        to its end whatever cancels the actor, as ``trio.to_thread.run_sync``
        waits (a kill past the shutdown timeout included: a commit's caller
        must learn whether it landed); an exception of ``work`` is raised here.

        Raises:
            WorkAbandoned: the system's cutoff came first (``ActorSystem.cutoff``,
                the end of a shutdown): the thread is left to end alone, and
                holds whatever ``work`` uses (and ``limiter``'s token) until
                then; ``what`` names it in the error.
        """
        with self.ref.shielded():
            return await trio.to_thread.run_sync(work, *args, limiter=limiter, abandon_on_cancel=True)
        raise WorkAbandoned(self.path, what)

    def send_after(self, delay: float, message: Any) -> Timer:
        """Send ``message`` to this actor in ``delay`` seconds (through its
        mailbox, waiting for room if it is full).

        The timer ends with this incarnation (stop or restart): a firing still
        queued then is dropped unhandled, and a closed mailbox (shutdown) ends
        it quietly, never raising into the actor.

        Raises:
            ValueError: ``delay`` is negative or not finite.
        """
        check_delay("delay", delay)
        timer = self._timer(message, None)
        self._cell.system.timers.schedule(timer, delay)
        return timer

    def every(self, period: float, message: Any, *, first: float | None = None) -> Timer:
        """Send ``message`` to this actor every ``period`` seconds (the first after
        ``first``, default ``period``). Coalescing: a firing is skipped while the
        previous one is still queued, or while the mailbox is full. Ends with
        this incarnation, as ``send_after``.

        Raises:
            ValueError: ``period`` is not positive, or ``first`` negative.
        """
        if not (period > 0 and math.isfinite(period)):
            raise ValueError(f"invalid period: {period!r}")
        check_delay("first", period if first is None else first)
        timer = self._timer(message, period)
        self._cell.system.timers.schedule(timer, period if first is None else first)
        return timer

    def sweep(self, period: float, message: Any, *, first: float | None = None) -> Sweep:
        """A ``Sweep``: ``message`` every ``period`` seconds (the first after
        ``first``, default ``period``), as ``every``, and again at once from its
        handler while a batch found more (``Sweep.again``).

        Raises:
            ValueError: ``period`` is not positive, or ``first`` negative.
        """
        return Sweep(message, self.every(period, message, first=first), self.ref)

    def alarm(self, message: Any, *, minimum: float = MIN_TIMER) -> Alarm:
        """An ``Alarm`` sending ``message`` to this actor at the earliest time
        it is set for, never sooner than ``minimum`` seconds from when it is
        set; unset until ``at`` or ``after``. Ends with this incarnation.

        Raises:
            ValueError: ``minimum`` is negative or not finite.
        """
        check_delay("minimum", minimum)
        return Alarm(message, minimum, self.send_after)

    def waiting(self, message: Any = None) -> Waiting:
        """A ``Waiting``: one background wait at a time (``Waiting.start``)
        whose end is told to this actor, as what the wait returns or, if it
        returns None, ``message``. Ends with this incarnation."""
        return Waiting(message, self.start_soon, self.send_after)

    def _timer(self, message: Any, period: float | None) -> Timer:
        return Timer(message, period, self._timers, self._cell.mailbox, self._cell.system.timers,
                     self._tasks.start_soon)

    def at_end(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` when this incarnation ends, however it ends (a
        stop, a crash, cancelled): where a resource must never outlive the
        actor (``on_stop`` is not called after a crash). It must not block;
        an exception from it is logged and the others still run."""
        self._at_end.append(callback)

    def _end(self) -> None:
        """The incarnation is over: its timers with it, then ``at_end``."""
        for timer in list(self._timers):
            timer.cancel()
        callbacks, self._at_end = self._at_end, []
        for callback in callbacks:
            try:
                callback()
            except Exception:  # the incarnation is ending anyway: the others must run
                log.exception("%s: an at_end callback failed", self.path)

    def stop(self) -> None:
        """Stop this actor after the current message: a normal exit, so a
        ``transient`` or ``temporary`` actor terminates and a ``permanent`` one is
        restarted."""
        self._cell.stop_requested = True

    def watch(self, target: ActorRef) -> None:
        """Be told ``Terminated`` when ``target`` terminates (at once if it already
        has). Idempotent: watching twice still tells once."""
        target._cell.add_watcher(self._cell.ref)

    def unwatch(self, target: ActorRef) -> None:
        """Be told nothing more of ``target`` (nor crash with it, if linked)."""
        target._cell.remove_watcher(self._cell.ref)

    def link(self, target: ActorRef) -> None:
        """Die with ``target``: when it terminates abnormally (it crashed past
        its restarts, gave up, failed to start), this actor crashes with
        ``LinkedActorTerminated`` and its supervisor applies its restart type.
        A normal end or a shutdown is told as ``Terminated``, as ``watch`` does."""
        target._cell.add_watcher(self._cell.ref, link=True)


class Actor:
    """Subclass, implement ``handle``, and give a factory to an ``ActorSpec``.

    Hook contracts:
      * ``on_start`` runs in the actor's task before the first message. If it
        raises, the start fails: the supervisor counts a restart (or, for a
        first start, the parent's start fails).
      * ``handle(message)`` runs once per message, one at a time. Its return value
        answers ``ask`` (a ``Forward`` hands the message on, a ``Later`` answers when its work is done). If it raises one of the actor's declared ``refusals``,
        that exception is the answer: raised at the asker as it is, and the
        actor carries on (a refusal of a told message is logged at debug level).
        If it raises anything else, the actor crashes: the asker (if any) gets
        ``ActorFailed`` at once, the message is dropped and logged with the
        traceback, and the supervisor applies the restart type. Messages queued
        behind it are kept for the next incarnation.
      * ``on_idle`` runs each time the mailbox becomes empty after one or more
        messages: the place to publish work batched by ``handle``. Exceptions
        count as crashes.
      * ``on_stop`` runs in the actor's task when the incarnation ends by a stop
        request or a normal exit, after the last message. It is not called after
        a crash (the state may be inconsistent) nor when the actor is cancelled
        for exceeding its shutdown timeout. Exceptions are logged.
    """

    context: ActorContext
    """Set by the runtime before ``on_start``."""

    refusals: tuple[type[Exception], ...] = ()
    """Exceptions ``handle`` raises to refuse a request (bad input, a conflict,
    a quota): answers to the asker, not crashes."""

    async def on_start(self) -> None:
        """Acquire resources, start background tasks. Default: nothing."""

    async def handle(self, message: Any) -> Any:
        """Handle one message; the return value answers ``ask``."""
        raise UnhandledMessage(self.context.path, message)

    async def on_idle(self) -> None:
        """The mailbox just became empty. Default: nothing."""

    async def on_stop(self) -> None:
        """Release resources. Default: nothing."""
