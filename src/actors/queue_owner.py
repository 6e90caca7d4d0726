"""The owner of the deployments' queue actors (``/root/queue_owner``).

Every request for a deployment's command queue (a command to create, confirm
or cancel, an agent's poll or result) is one message to this actor,
``ForDeployment(hash, message)``. It starts the deployment's queue actor under
``/root/queues`` when none runs, and answers by forwarding the message to it
(``Forward``): the queue's answer, refusal or crash reaches the asker directly,
within the asker's deadline, and this actor goes on at once. So the HTTP edge
never starts a queue actor, and never retries one that stopped.

Queue actors stop when idle, and that is decided here too: a queue idle for
``IDLE_STOP`` tells its owner (``QueueIdle``), which asks it to stop if it is
still idle (``StopIfIdle``) and waits until it has. Forwarding and stopping are
done one message at a time, so nothing is ever forwarded to a queue that is
stopping (which would fail the request with ``ActorStopped``).

With replicas, a deployment's queue runs only on the replicas its requests
reached (usually one: the one holding its agent's poll), not on every
replica: a queue applying every change another replica made to a deployment
nobody asks it about cost each replica as much as following the whole
installation. The change feed hands this actor what other replicas committed
(``CommandsChanged``): a running queue takes it (``Refresh``); otherwise only
the command's next deadline is kept (``DeadlineWatch``), and should one pass
``FOLLOW_GRACE`` seconds unresolved (the replicas holding the queue are gone),
the deployment's queue is started here, reads the open commands and fires
it, compare-and-set, so once across replicas. A request for a deployment
whose queue is not running here starts one, which reads the open commands
(every change committed before is in the store; every later one reaches it
as ``Refresh``). ``ResyncQueues`` after the feed may have missed something.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import attrs
import trio

from trioscope.config import Settings
from trioscope.runtime import (
    Actor, ActorFailed, ActorRef, ActorStopped, AskTimeout, Backoff, Forward, MailboxFull, SupervisorRef,
)
from trioscope.domain.command_stats import CommandStats
from trioscope.store import StoreReader

from trioscope.domain.commands import Command, DeadlineWatch

from .deployment_queue import QueueIdle, Refresh, Reload, Snapshot, StopIfIdle, queue_spec

log = logging.getLogger(__name__)

STOP_WAIT = 5.0
"""Longest wait for an idle queue to stop (it has nothing to finish: at once, in practice)."""
FOLLOW_GRACE = 2.0
"""Seconds past a watched deadline before this replica starts the queue to fire
it: the replica holding the queue fires it at once, and its change arrives
well within this, so in the normal case no second queue starts."""


@attrs.frozen
class ForDeployment:
    """``message`` for the queue actor of deployment ``deployment_hash``:
    answered by that queue (started if it is not running)."""

    deployment_hash: str
    message: Any


@attrs.frozen
class CommandsChanged:
    """Other replicas committed changes of ``commands`` (as their notifications
    carried them, or read after them; one message per batch the feed read).
    Sent; each deployment's queue takes its own (``Refresh``)."""

    commands: tuple[Command, ...]


@attrs.frozen
class ResyncQueues:
    """The change feed (re)connected and may have missed changes: every running
    queue reloads its open commands, and the deadlines of every other
    deployment's open commands are watched. Answered with how many deployments
    have open commands."""


@attrs.frozen
class _WatchDue:
    """The watch's timer: a watched deadline passed ``FOLLOW_GRACE`` ago."""


@attrs.frozen
class GetCommandStats:
    """Answered with the ``CommandStats`` the queues record into (None if none)."""


class QueueOwnerActor(Actor):
    """Starts, routes to and stops the queue actors (see the module docstring)."""

    refusals = (MailboxFull, ActorStopped)
    """``/root/queues`` stopping (the server stops) or full: answered 503 at the edge."""

    def __init__(self, settings: Settings, reader: StoreReader, *, queues_path: str, store_path: str,
                 notifier_path: str | None = None, directory_path: str | None = None,
                 follows_path: str | None = None,
                 command_stats: CommandStats | None = None, clock: Callable[[], float] = time.time,
                 backoff: Backoff | None = None, backoff_on: Callable[[BaseException], bool] | None = None) -> None:
        """``backoff``, ``backoff_on``: the queues' (``queue_spec``)."""
        self.settings = settings
        self.backoff, self.backoff_on = backoff, backoff_on
        self.clock = clock
        """The queues' wall clock."""
        self.reader = reader
        self.queues_path = queues_path
        self.store_path = store_path
        self.notifier_path = notifier_path
        self.follows_path = follows_path
        self.directory_path = directory_path
        self.command_stats = command_stats
        """What the queues record finished commands and their load into (None: nothing recorded)."""
        c = settings.commands
        self.watch = DeadlineWatch(delivery_deadline=c.delivery_deadline, timeout_grace=c.timeout_grace)
        """Deadlines of other replicas' open commands of deployments with no queue running here."""

    async def on_start(self) -> None:
        # Never sooner than the runtime's MIN_TIMER: the wall clock and Trio's may disagree by a hair.
        self.watch_alarm = self.context.alarm(_WatchDue())
        system = self.context.system
        self.queues: SupervisorRef = system.lookup(self.queues_path)
        self.store: ActorRef = system.lookup(self.store_path)

    async def handle(self, message: Any) -> Any:
        if isinstance(message, ForDeployment):
            return Forward(self._queue(message.deployment_hash), message.message)
        if isinstance(message, GetCommandStats):
            return self.command_stats
        if isinstance(message, QueueIdle):
            await self._stop_if_idle(message.deployment_hash)
            return None
        if isinstance(message, CommandsChanged):
            for command in message.commands:
                running = self.queues.actor(command.deployment_hash)
                if running is not None:
                    _tell(running, Refresh(command))
                else:
                    self.watch.note(command)
            self._arm_watch()
            return None
        if isinstance(message, _WatchDue):
            for deployment_hash in self.watch.due(self.clock() - FOLLOW_GRACE):
                _tell(self._queue(deployment_hash), Snapshot())  # starting it loads its open commands
            self._arm_watch()
            return None
        if isinstance(message, ResyncQueues):
            for queue in self.queues.children():
                _tell(queue, Reload())
            open_hashes = await self.reader.deployments_with_open_commands()
            for deployment_hash in open_hashes:
                if self.queues.actor(deployment_hash) is None:
                    for command in await self.reader.open_commands(deployment_hash):
                        self.watch.note(command)
            self._arm_watch()
            return len(open_hashes)
        return await super().handle(message)

    def _arm_watch(self) -> None:
        """The watch's alarm set for its earliest deadline (plus ``FOLLOW_GRACE``),
        if that is earlier than the one set (a later one is found when it fires)."""
        deadline = self.watch.next_deadline()
        if deadline is not None:
            self.watch_alarm.after(deadline + FOLLOW_GRACE - self.clock())

    def _queue(self, deployment_hash: str) -> ActorRef:
        """The deployment's queue actor, started if it is not running."""
        running = self.queues.actor(deployment_hash)  # the common case: no spec to build
        if running is not None:
            return running
        self.watch.forget(deployment_hash)  # the queue reads its open commands, deadlines and all
        spec = queue_spec(deployment_hash, self.settings, store=self.store, reader=self.reader,
                          notifier_path=self.notifier_path, directory_path=self.directory_path,
                          follows_path=self.follows_path,
                          queue_owner=self.context.ref, stats=self.command_stats, clock=self.clock,
                          backoff=self.backoff, backoff_on=self.backoff_on)
        return self.queues.ensure_actor(spec)

    async def _stop_if_idle(self, deployment_hash: str) -> None:
        queue = self.queues.child(deployment_hash)
        if queue is None:
            return
        try:
            stopping = await queue.ask(StopIfIdle(), timeout=STOP_WAIT)
        except (AskTimeout, ActorFailed, ActorStopped, MailboxFull):
            return  # busy or gone: it tells us again when it is idle
        if stopping:
            # Until it has, a request for it waits here rather than reach it stopping.
            with trio.move_on_after(STOP_WAIT):
                await queue.wait_stopped()


def _tell(queue: ActorRef, message: Any) -> None:
    if not queue.offer(message):
        # Swamped or stopping: it reloads from the store when it starts again,
        # and its compare-and-set writes catch up with whatever it missed.
        log.warning("a queue missed a change from another replica (%s)", type(message).__name__)
