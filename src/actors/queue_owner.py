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

With replicas, the change feed hands it what other replicas committed:
``CommandChanged`` goes to the deployment's queue, started if the command is
open (every replica holds a queue for each deployment with open commands, so
a deadline fires even when the replica that set it is gone), and
``ResyncQueues`` after the feed may have missed something.
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
    Actor, ActorFailed, ActorRef, ActorStopped, AskTimeout, Forward, MailboxFull, SupervisorRef,
)
from trioscope.domain.command_stats import CommandStats
from trioscope.store import StoreReader

from trioscope.domain.commands import Command

from .deployment_queue import QueueIdle, Refresh, Reload, Snapshot, StopIfIdle, queue_spec

log = logging.getLogger(__name__)

STOP_WAIT = 5.0
"""Longest wait for an idle queue to stop (it has nothing to finish: at once, in practice)."""


@attrs.frozen
class ForDeployment:
    """``message`` for the queue actor of deployment ``deployment_hash``:
    answered by that queue (started if it is not running)."""

    deployment_hash: str
    message: Any


@attrs.frozen
class CommandChanged:
    """Another replica committed a change of ``command`` (as its notification
    carried it, or read after it). Told; the deployment's queue takes it (``Refresh``)."""

    command: Command


@attrs.frozen
class ResyncQueues:
    """The change feed (re)connected and may have missed changes: every running
    queue reloads its open commands, and a queue starts for every deployment
    with open commands. Answered with how many deployments have open commands."""


@attrs.frozen
class GetCommandStats:
    """Answered with the ``CommandStats`` the queues record into (None if none)."""


class QueueOwnerActor(Actor):
    """Starts, routes to and stops the queue actors (see the module docstring)."""

    refusals = (MailboxFull, ActorStopped)
    """``/root/queues`` stopping (the server stops) or full: answered 503 at the edge."""

    def __init__(self, settings: Settings, reader: StoreReader, *, queues_path: str, store_path: str,
                 notifier_path: str | None = None, directory_path: str | None = None,
                 command_stats: CommandStats | None = None, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.clock = clock
        """The queues' wall clock."""
        self.reader = reader
        self.queues_path = queues_path
        self.store_path = store_path
        self.notifier_path = notifier_path
        self.directory_path = directory_path
        self.command_stats = command_stats
        """What the queues record finished commands and their load into (None: nothing recorded)."""

    async def on_start(self) -> None:
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
        if isinstance(message, CommandChanged):
            command = message.command
            running = self.queues.actor(command.deployment_hash)
            if running is None and command.status.terminal:
                return None  # nothing holds it here: nothing to update
            _tell(running or self._queue(command.deployment_hash), Refresh(command))
            return None
        if isinstance(message, ResyncQueues):
            for queue in self.queues.children():
                _tell(queue, Reload())
            open_hashes = await self.reader.deployments_with_open_commands()
            for deployment_hash in open_hashes:
                if self.queues.actor(deployment_hash) is None:
                    _tell(self._queue(deployment_hash), Snapshot())  # starting it loads its open commands
            return len(open_hashes)
        return await super().handle(message)

    def _queue(self, deployment_hash: str) -> ActorRef:
        """The deployment's queue actor, started if it is not running."""
        running = self.queues.actor(deployment_hash)  # the common case: no spec to build
        if running is not None:
            return running
        spec = queue_spec(deployment_hash, self.settings, store=self.store, reader=self.reader,
                          notifier_path=self.notifier_path, directory_path=self.directory_path,
                          queue_owner=self.context.ref, stats=self.command_stats, clock=self.clock)
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
    try:
        queue.tell(message)
    except (MailboxFull, ActorStopped):
        # Swamped or stopping: it reloads from the store when it starts again,
        # and its compare-and-set writes catch up with whatever it missed.
        log.warning("a queue missed a change from another replica (%s)", type(message).__name__)
