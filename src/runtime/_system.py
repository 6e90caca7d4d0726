"""The actor system: the root supervisor, lookup by path, system-wide counters."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import trio

from ._cutoff import Cutoff
from ._exceptions import ActorNotFound, DuplicateChild, StartFailed
from ._node import ActorCell, Node, Status
from ._specs import SupervisorSpec
from ._stats import SystemStats
from ._supervisor import SupervisorNode, SupervisorRef
from ._timers import TimerService


class ActorSystem:
    """One supervision tree. Create it with ``open_actor_system``.

    There is no global system: code that needs one is handed it explicitly.
    """

    def __init__(self, root: SupervisorSpec, cutoff: Cutoff | None = None) -> None:
        self.cutoff = cutoff if cutoff is not None else Cutoff()
        """When the waits that actors shield from cancellation are given up
        (``ActorRef.shielded``, ``ActorContext.in_thread``): the end of the
        shutdown, set by whoever runs it. Killing an actor past its shutdown
        timeout cancels it, and the shield holds that off: a commit under way
        is still waited for, so that its caller learns whether it landed."""
        self._registry: dict[str, Node] = {}
        self._dead_letters: Counter[str] = Counter()
        self._restarts: Counter[str] = Counter()
        self._refused: Counter[str] = Counter()
        self.timers = TimerService()
        """Every actor's ``send_after`` and ``every``, fired by one task."""
        self._root = SupervisorNode(self, None, root, "/" + root.name)
        self.register(self._root)

    # ---- used by nodes ------------------------------------------------------------

    def register(self, node: Node) -> None:
        current = self._registry.get(node.path)
        if current is not None and current.status is not Status.TERMINATED:
            raise DuplicateChild(node.path)
        self._registry[node.path] = node

    def unregister(self, node: Node) -> None:
        if self._registry.get(node.path) is node:
            del self._registry[node.path]

    def count_dead_letter(self, actor_type: str) -> None:
        self._dead_letters[actor_type] += 1

    def count_refused(self, actor_type: str) -> None:
        self._refused[actor_type] += 1

    def count_restart(self, actor_type: str) -> None:
        self._restarts[actor_type] += 1

    # ---- public -------------------------------------------------------------------

    @property
    def root(self) -> SupervisorRef:
        return self._root.ref

    def lookup(self, path: str) -> Any:
        """The ``ActorRef`` or ``SupervisorRef`` at ``path`` (e.g. ``/root/topology``).

        Raises:
            ActorNotFound: nothing live has that path.
        """
        node = self._registry.get(path)
        if node is None or node.status is Status.TERMINATED:
            raise ActorNotFound(path)
        return node.ref

    @property
    def dead_letters(self) -> int:
        """Messages that reached no actor (told to a terminated actor, or left in
        its mailbox when it terminated)."""
        return sum(self._dead_letters.values())

    def snapshot(self) -> SystemStats:
        """The supervision tree with every node's counters, as of now."""
        return SystemStats(
            root=self._root.stats(),
            dead_letters=self.dead_letters,
            dead_letters_by_type=dict(self._dead_letters),
            restarts_by_type=dict(self._restarts),
            refused_by_type=dict(self._refused),
            actors=sum(1 for n in self._registry.values() if isinstance(n, ActorCell)),
        )

    async def stop(self) -> None:
        """Graceful shutdown: children stop in reverse start order, each finishing
        its queued messages within its shutdown timeout. Idempotent."""
        root = self._root
        if root.status is Status.RUNNING:
            root.request_stop(final=True)
        await root.done.wait()
        root.terminate("shutdown")

    async def _run_root(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        root = self._root
        try:
            await root.run(task_status=task_status)
        finally:
            exit = root.last_exit
            if exit is None:
                reason = "cancelled"
            elif exit.crashed:
                reason = exit.describe()
            else:
                reason = "shutdown"
            root.terminate(reason)
        if exit is not None and exit.crashed:
            assert exit.error is not None
            raise exit.error


@asynccontextmanager
async def open_actor_system(root: SupervisorSpec, *, cutoff: Cutoff | None = None) -> AsyncIterator[ActorSystem]:
    """Start the tree (children in order, each ``on_start`` completed) and yield
    the system; on leaving the block, shut it down gracefully. ``cutoff``:
    the system's (``ActorSystem.cutoff``; its own when None), for a caller
    that may have to cut its shutdown short before the system exists.

    Raises ``StartFailed`` if a child cannot start (those started are stopped).
    If the root supervisor gives up (its restart intensity is exceeded), the block
    is cancelled and the reason (``RestartIntensityExceeded``) is raised, inside an
    exception group as trio nurseries do.
    """
    system = ActorSystem(root, cutoff)
    failed_start: StartFailed | None = None
    async with trio.open_nursery() as nursery:
        # Started first and cancelled last: actors set timers from on_start to on_stop.
        timers = trio.CancelScope()
        nursery.start_soon(_run_in, timers, system.timers.run)
        try:
            await nursery.start(system._run_root)
        except StartFailed as exc:
            failed_start = exc  # raised below, outside the nursery's exception group
        else:
            try:
                yield system
            finally:
                await system.stop()
        finally:
            timers.cancel()
    if failed_start is not None:
        raise failed_start


async def _run_in(scope: trio.CancelScope, fn: Callable[[], Awaitable[None]]) -> None:
    with scope:
        await fn()
