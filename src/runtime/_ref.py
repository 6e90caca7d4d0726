"""Handles to actors: the only way callers reach one (they never hold the object)."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Any

import outcome
import trio

from ._exceptions import ActorStopped, AskTimeout, MailboxFull

if TYPE_CHECKING:
    from ._cutoff import Cutoff, CutoffScope
    from ._node import ActorCell


class Ask:
    """A message that wants a reply, as it sits in a mailbox.

    The asker parks its task directly (no Event, no channel): the actor's loop
    reschedules it with the outcome. Settling twice is a no-op, so a late reply
    after a timeout, or a failure after a reply, cannot confuse anyone.

    An asker that gives up (timeout, cancellation) before the actor takes the
    message abandons it: the actor then drops it unhandled. Once taken, the
    message is handled whatever the asker does, and a reply nobody waits for
    is discarded.

    A handler may answer by forwarding (``Forward``): the same ask then goes
    to another actor's mailbox as not yet taken, so its asker waits for that
    actor's answer, and ``taken`` speaks of the actor that answers.
    """

    __slots__ = ("message", "_task", "_outcome", "_taken", "_abandoned")

    def __init__(self, message: Any) -> None:
        self.message = message
        self._task: trio.lowlevel.Task | None = None
        self._outcome: outcome.Outcome[Any] | None = None
        self._taken = False
        self._abandoned = False

    def take(self) -> bool:
        """The actor starts on the message: False if the asker gave up (drop it)."""
        if self._abandoned:
            return False
        self._taken = True
        return True

    def forward(self, message: Any) -> None:
        """Hand the ask on with ``message``, not taken yet: the next actor takes
        it (or drops it, if the asker gives up first) as if it were asked."""
        self.message = message
        self._taken = False

    def abandon(self) -> bool:
        """The asker gives up waiting: True if the actor had not taken the
        message (it never will), False if it is being handled."""
        if self._taken:
            return False
        self._abandoned = True
        return True

    def resolve(self, value: Any) -> None:
        self._settle(outcome.Value(value))

    def fail(self, error: BaseException) -> None:
        self._settle(outcome.Error(error))

    def _settle(self, result: outcome.Outcome[Any]) -> None:
        if self._outcome is not None:
            return
        self._outcome = result
        task, self._task = self._task, None
        if task is not None:
            trio.lowlevel.reschedule(task, result)

    async def wait(self) -> Any:
        try:
            if self._outcome is not None:
                await trio.lowlevel.checkpoint()
                return self._outcome.unwrap()
            self._task = trio.lowlevel.current_task()

            def abort(_raise_cancel: object) -> trio.lowlevel.Abort:
                self._task = None
                self.abandon()
                return trio.lowlevel.Abort.SUCCEEDED

            return await trio.lowlevel.wait_task_rescheduled(abort)
        finally:
            if self._outcome is not None:
                # Delivered: not kept. A refusal raised here has this frame
                # in its traceback, and this frame has the ask: holding the
                # refusal still, the two would hold each other (and the
                # message) until the collector's next full pass, rare in the
                # server. Settled for good all the same (``_settle``).
                self._outcome = _DELIVERED


_DELIVERED: outcome.Outcome[Any] = outcome.Value(None)
"""What an ask keeps once its outcome was delivered to its asker."""


class ActorRef:
    """Address of one actor. Stays valid across restarts (it names the mailbox,
    which the supervisor keeps); after the actor terminates for good, every
    method raises ``ActorStopped`` and counts a dead letter."""

    __slots__ = ("_cell",)

    def __init__(self, cell: ActorCell) -> None:
        self._cell = cell

    @property
    def path(self) -> str:
        return self._cell.path

    @property
    def alive(self) -> bool:
        """False once the actor has terminated for good."""
        return not self._cell.terminated.is_set()

    def tell(self, message: Any) -> None:
        """Queue ``message`` without waiting.

        Raises:
            MailboxFull: the mailbox is at capacity (shed the load or use ``send``).
            ActorStopped: the actor has terminated (counted as a dead letter).
        """
        self._queued(self._cell.mailbox.put_nowait, message)

    def tell_keyed(self, key: Hashable, message: Any) -> None:
        """Queue ``message`` without waiting, in place of the message of the
        same ``key`` if one still waits (it is then never handled): for values
        that supersede each other, so that a busy actor's mailbox holds one a
        key (at most the spec's ``keyed_capacity`` keys) rather than refusing
        them once full.

        Raises:
            MailboxFull: ``keyed_capacity`` other keys wait already.
            ActorStopped: the actor has terminated (counted as a dead letter).
        """
        self._queued(functools.partial(self._cell.mailbox.put_keyed_nowait, key), message)

    def offer(self, message: Any) -> bool:
        """``tell``, or drop ``message`` quietly: whether it was queued.

        For what may be lost (a courtesy, a hint the receiver also learns
        otherwise): False if the mailbox is full or the actor has stopped, both
        counted as ``tell`` counts them, so nothing is dropped unseen.
        """
        try:
            self.tell(message)
        except (MailboxFull, ActorStopped):
            return False
        return True

    def offer_keyed(self, key: Hashable, message: Any) -> bool:
        """``tell_keyed``, or drop ``message`` quietly (as ``offer``): whether it was queued."""
        try:
            self.tell_keyed(key, message)
        except (MailboxFull, ActorStopped):
            return False
        return True

    def _queued(self, put: Callable[[Any], None], message: Any) -> None:
        """``put(message)``: a terminated actor's refusal counted as a dead
        letter, a full mailbox's by actor type (``refused_by_type``)."""
        try:
            put(message)
        except ActorStopped:
            self._cell.dead_letter(message)
            raise
        except MailboxFull:
            self._cell.system.count_refused(self._cell.type_name)
            raise

    async def send(self, message: Any) -> None:
        """Queue ``message``, waiting for room: back-pressure between actors."""
        try:
            await self._cell.mailbox.put(message)
        except ActorStopped:
            self._cell.dead_letter(message)
            raise

    async def ask(self, message: Any, timeout: float | None = 5.0, *, cutoff: Cutoff | None = None) -> Any:
        """Send ``message`` and wait for the actor's ``handle`` return value.

        A full mailbox fails at once (``MailboxFull``) rather than waiting: asks
        come from request handlers, which should shed load, not queue it.

        ``timeout`` is a deadline for the whole exchange: the wait in the
        mailbox and the handling. Given up before the actor took the message,
        the message is dropped unhandled (a dead letter); given up while it is
        being handled, the handling finishes and its reply is discarded.
        ``AskTimeout.taken`` tells the two apart, so a caller can say "not done,
        retry" or "outcome unknown" truthfully. An actor that answers with
        ``Forward`` hands the ask on to another actor: the deadline covers both,
        and ``taken`` says whether the actor it was forwarded to (the one that
        answers) had started on it; forwarding itself must be safe to repeat.
        ``cutoff`` may bring the deadline forward (``Cutoff.cut``), also
        while the ask waits: an asker that shields its ask (a poll whose
        command may be being handed out) still learns ``taken`` then.

        Raises:
            AskTimeout: no reply within ``timeout`` seconds (None waits forever),
                or by the cutoff.
            ActorFailed: ``handle`` raised on this message.
            ActorStopped: the actor terminated before handling it (or the actor
                it was forwarded to had).
            MailboxFull: no room in the mailbox (or in the forwarded-to one).
        """
        ask = Ask(message)
        self.tell(ask)
        if timeout is None and cutoff is None:
            return await ask.wait()
        limit = math.inf if timeout is None else timeout
        with trio.move_on_after(limit) if cutoff is None else cutoff.scope(limit):
            return await ask.wait()
        raise AskTimeout(self._cell.path, limit, taken=not ask.abandon())

    def shielded(self) -> CutoffScope:
        """A cancel scope shielded from every cancellation but the system's
        cutoff (``ActorSystem.cutoff``: the end of a shutdown), for waiting on
        this actor's work to its end, whatever cancels the waiter (a commit:
        its caller must learn whether it landed). ``cancelled_caught`` once
        the cutoff ended it: what the work did is unknown."""
        return self._cell.system.cutoff.scope(shield=True)

    async def wait_stopped(self) -> None:
        """Return once the actor has terminated for good."""
        await self._cell.terminated.wait()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ActorRef) and other._cell is self._cell

    def __hash__(self) -> int:
        return id(self._cell)

    def __repr__(self) -> str:
        return f"<ActorRef {self._cell.path}>"
