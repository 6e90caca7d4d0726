"""An agent's poll for its next command, held alike for the HTTP long-poll and
the agent socket: one hand-off with the deployment's queue, safe both ways, so
that a command is never lost between them nor handed to a retired agent."""

from __future__ import annotations

import logging

import trio

from trioscope.actors.deployment_queue import Poll, PollRetired, Undeliverable, Withdraw, open_poll
from trioscope.actors.queue_owner import ForDeployment
from trioscope.domain.commands import POLL_CLOSED, Command, Delivery
from trioscope.runtime import AskTimeout, Handoff

from ._command_queues import ask_queue
from ._errors import RETRY_AFTER_SECONDS, ApiError
from ._quart_app import requests_cutoff, work_under_way
from ._services import services

log = logging.getLogger(__name__)


class AgentRetired(Exception):
    """The polling agent was decommissioned or replaced while its poll waited."""


async def wait_for_command(deployment_hash: str, timeout: float, min_rank: int, skip: str | None,
                           agent_id: str | None = None) -> Delivery | None:
    """Hold a poll of agent ``agent_id`` until a command is handed to it or
    ``timeout`` passes (or the server stops: None at once).

    The poll is one ``Poll`` message to the deployment's queue actor; a later
    answer comes on the poll's own ``Handoff``, on which only this function
    waits. The hand-off is safe both ways: the queue actor commits
    ``sent`` before it hands a command over, and looks whether the poll is
    still open (the handoff not closed) just before; however this poll
    ends (answered, cancelled because the client went away, its ask timed
    out), the handoff is closed at once, with no checkpoint after the
    last look at it, so the actor gives it nothing later, and a command it
    was given but could not pass on is queued again. Nothing is handed over
    once the agent is no longer the deployment's active agent.

    Raises:
        AgentRetired: the agent was decommissioned or replaced (before the poll
            reached the queue or while it waited).
        ApiError: 503 ``shutting_down``, the server stops (the polls waiting
            when it began to were answered None; a later one was held until
            the graceful timeout, then cut off with an empty 500).
        AskTimeout: the queue did not answer in time; ``taken``: a command
            may have been handed out meanwhile (given back, but the agent
            cannot know: 504 ``outcome_unknown``). Cut by the server's
            shutdown, the request is answered so (``work_under_way``), and a
            poll the queue had not taken 503 ``shutting_down``.
    """
    if services().health.stopping:
        raise ApiError(503, "shutting_down", "the server is stopping; poll again shortly (another replica, or this "
                       "one once it is back)", headers={"Retry-After": str(RETRY_AFTER_SECONDS)})
    poll, answers = open_poll(agent_id=agent_id, min_rank=min_rank, skip=skip)
    answer: Delivery | PollRetired | None = None
    taken = False
    try:
        try:
            with trio.CancelScope(shield=True):
                # A poll is willing to wait its whole timeout, also for a queue actor
                # that is still starting (many agents reconnecting at once); not past
                # the cut of the server's shutdown, which a queue whose hand-out waits
                # for the store (held up by another program's lock) would outlast.
                answer = await ask_queue(deployment_hash, poll, timeout=max(10.0, timeout), cutoff=requests_cutoff())
        except AskTimeout as exc:
            if exc.taken:
                work_under_way()
            # Ended by the cut, the request is cut with it: this raises, and it is
            # answered so (``_quart_app``), not with whatever answers the timeout.
            await trio.lowlevel.checkpoint()
            raise
        if answer is None and not services().health.stopping:  # (it began to during the ask: None at once)
            # Cancelled when the server stops: the poll answers (204) rather than
            # hold the graceful shutdown up.
            waiting = trio.move_on_after(timeout)
            polls = services().polls
            polls.add(waiting)
            try:
                with waiting:
                    answer = await answers.receive()
            except trio.EndOfChannel:
                pass  # the queue actor stopped: nothing for this poll
            finally:
                polls.discard(waiting)
        # The shielded ask may have answered after the client went away (a
        # request cancelled meanwhile): the command goes back rather than to
        # nobody (it stayed ``sent`` until it timed out, never run).
        await trio.lowlevel.checkpoint_if_cancelled()
        taken = True
    finally:
        # From the last look to the close, no checkpoint: the actor cannot hand
        # the poll anything in between.
        if answer is None:
            answer = _sent_meanwhile(answers)
        answers.close()
        if not taken and answer is not None and not isinstance(answer, PollRetired):
            give_back(deployment_hash, answer)
        elif answer is None:
            _forget(deployment_hash, poll)
    if isinstance(answer, PollRetired):
        raise AgentRetired()
    return answer


def _sent_meanwhile(answers: Handoff[Delivery | PollRetired]) -> Delivery | PollRetired | None:
    """What the actor sent after the wait ended (a timeout, a cancellation)."""
    try:
        return answers.receive_nowait()
    except (trio.WouldBlock, trio.EndOfChannel):
        return None


def _forget(deployment_hash: str, poll: Poll) -> None:
    """Tell the queue to drop the poll now rather than at its next hand-out
    (straight to a running queue: one that stopped holds no polls)."""
    ref = services().queues.actor(deployment_hash)
    if ref is not None:
        ref.offer(Withdraw(poll))  # dropped: it is skipped as ended anyway


def give_back(deployment_hash: str, delivery: Delivery, reason: str = POLL_CLOSED) -> None:
    """A delivered command did not reach the agent: queue it again (``reason`` goes in its history).
    Through the queue owner, like every request for a queue: never lost to a queue stopping."""
    if not services().queue_owner.offer(ForDeployment(deployment_hash, Undeliverable(delivery, reason))):
        # It times out instead, and is reported so.
        what = delivery.id if isinstance(delivery, Command) else delivery.notice_id
        log.warning("could not return undelivered command %s to the queue of deployment %s: it times out there",
                    what, deployment_hash, extra={"event": "command_not_returned", "command_id": what,
                                                  "deployment_hash": deployment_hash})
