"""Supervisors: start children in order, restart them per strategy, stop them in
reverse order (a dynamic supervisor's all together, as OTP's simple_one_for_one).

A supervisor is a node whose incarnation runs an event loop. Children run in its
nursery and report their exits as events (they never raise into the nursery), so
every decision (restart, give up, start a dynamic child) is taken in one task,
one event at a time, as in OTP.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Union

import attrs
import trio

from . import _events as events
from ._exceptions import (
    ActorNotFound,
    ActorStopped,
    DuplicateChild,
    RestartIntensityExceeded,
    StartFailed,
    TooManyChildren,
)
from ._intensity import RestartHistory, intensity_exceeded, record_restart
from ._node import ASKED_TO_STOP, NORMAL_EXIT, ActorCell, Exit, ExitKind, Node, Status, first_error
from ._ref import ActorRef, Ask
from ._specs import ActorSpec, ChildSpec, IntensityScope, Strategy, SupervisorSpec
from ._stats import SupervisorStats

if TYPE_CHECKING:
    from ._system import ActorSystem

Ref = Union[ActorRef, "SupervisorRef"]


@attrs.frozen
class _Exited:
    child: Node
    incarnation: int


@attrs.frozen
class _RestartDue:
    targets: tuple[Node, ...]


@attrs.frozen
class _StartRequest:
    child: Node
    reply: Ask | None


@attrs.frozen
class _StopRequest:
    child: Node
    reply: Ask


@attrs.frozen
class _Stop:
    final: bool


class SupervisorNode(Node):
    kind = "supervisor"
    spec: SupervisorSpec

    @property
    def ref(self) -> SupervisorRef:
        return self._ref

    def __init__(self, system: ActorSystem, parent: SupervisorNode | None, spec: SupervisorSpec, path: str) -> None:
        super().__init__(system, parent, spec, path)
        self._ref = SupervisorRef(self)  # kept: a supervisor lives as long as its system
        self.children: dict[str, Node] = {}
        self._paced: dict[Node, RestartHistory] = {}
        """Restarts of children paced by their own backoff (``ActorSpec.backoff``), within the period."""
        for child_spec in spec.children:
            self._add(child_spec)
        # Unbounded on purpose: events are few (one per child exit or request)
        # and the children must never block while reporting.
        self._events, self._inbox = trio.open_memory_channel[Any](math.inf)
        self._nursery: trio.Nursery | None = None
        self._final = True

    # ---- called from other tasks ------------------------------------------------

    def child_exited(self, child: Node, incarnation: int) -> None:
        self._post(_Exited(child, incarnation))

    def request_stop(self, final: bool) -> None:
        self._post(_Stop(final))

    def ensure_child(self, spec: ChildSpec) -> Ref:
        """The live child named ``spec.name``, or a new one started from ``spec``.

        Returns at once: a new child's mailbox accepts messages before it runs, so
        the caller can ``tell`` right away. If it then fails to start, it
        terminates and its queued messages become dead letters.
        """
        existing = self.children.get(spec.name)
        if existing is not None and existing.status is not Status.TERMINATED:
            return existing.ref
        child = self._admit(spec)
        self._post(_StartRequest(child, None))
        return child.ref

    async def start_child(self, spec: ChildSpec) -> Ref:
        """Start a new child and return its ref once ``on_start`` has finished.

        Raises:
            DuplicateChild, TooManyChildren, StartFailed, ActorStopped.
        """
        return await self.request_start(spec).wait()  # type: ignore[no-any-return]  # an Ask's reply is untyped; _StartRequest resolves it with the child's ref

    def request_start(self, spec: ChildSpec) -> Ask:
        """``start_child`` without the wait: the child is registered under its
        name at once (whoever gives up waiting can stop it by name), and the
        returned ask's ``wait()`` answers its ref once it runs.

        Raises:
            DuplicateChild, TooManyChildren, ActorStopped.
        """
        existing = self.children.get(spec.name)
        if existing is not None and existing.status is not Status.TERMINATED:
            raise DuplicateChild(existing.path)
        child = self._admit(spec)
        reply = Ask(None)
        self._post(_StartRequest(child, reply))
        return reply

    async def stop_child(self, name: str) -> None:
        """Stop a child gracefully (it finishes its queue) and forget it."""
        child = self.children.get(name)
        if child is None or child.status is Status.TERMINATED:
            raise ActorNotFound(f"{self.path}/{name}")
        reply = Ask(None)
        self._post(_StopRequest(child, reply))
        await reply.wait()

    def _post(self, event: object) -> None:
        try:
            self._events.send_nowait(event)
        except trio.ClosedResourceError:
            if isinstance(event, (_StartRequest, _StopRequest)) and event.reply is not None:
                event.reply.fail(ActorStopped(self.path))

    def _admit(self, spec: ChildSpec) -> Node:
        if self.terminated.is_set():
            raise ActorStopped(self.path)
        limit = self.spec.max_children
        if limit is not None and self.live_children() >= limit:
            raise TooManyChildren(self.path, limit)
        return self._add(spec)

    def _add(self, spec: ChildSpec) -> Node:
        path = f"{self.path}/{spec.name}"
        node: Node
        if isinstance(spec, ActorSpec):
            node = ActorCell(self.system, self, spec, path)
        else:
            node = SupervisorNode(self.system, self, spec, path)
        self.children[spec.name] = node
        self.system.register(node)
        return node

    def live_children(self) -> int:
        if self.spec.remove_terminated:
            # Removed as they terminate (``_terminate``): no count per admission
            # of the thousands of clients a live-view supervisor holds.
            return len(self.children)
        return sum(1 for c in self.children.values() if c.status is not Status.TERMINATED)

    # ---- one incarnation -----------------------------------------------------------

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        incarnation = self.begin_incarnation()
        self.history = ()
        self._paced = {}
        self._final = True
        exit = NORMAL_EXIT
        started = False
        try:
            with trio.CancelScope() as scope:
                self.scope = scope
                try:
                    async with trio.open_nursery() as nursery:
                        self._nursery = nursery
                        await self._start_initial()
                        started = True
                        self.status = Status.RUNNING
                        events.started(self.path, self.kind, incarnation, quiet=self.comes_and_goes)
                        task_status.started()
                        gave_up = await self._serve()
                        await self._stop_children(final=self._final and gave_up is None)
                        nursery.cancel_scope.cancel()  # pending backoff timers
                    if gave_up is not None:
                        exit = Exit(ExitKind.CRASHED, gave_up)
                except BaseException as exc:
                    error = first_error(exc)
                    if isinstance(error, trio.Cancelled):
                        raise
                    if not started:
                        raise StartFailed(self.path, error) from error
                    events.crashed(self.path, self.kind, error)
                    exit = Exit(ExitKind.CRASHED, error)
            if scope.cancelled_caught and not started:
                raise StartFailed(self.path, trio.TooSlowError("cancelled while starting"))
        finally:
            self._nursery = None
            self.end_incarnation(exit, incarnation, started)

    async def _start_initial(self) -> None:
        """Start the static children in order; if one fails, stop the ones started
        (reverse order) and fail this supervisor's start."""
        started: list[Node] = []
        static = {spec.name for spec in self.spec.children}
        for child in list(self.children.values()):
            if child.name not in static or child.status is Status.TERMINATED:
                continue
            try:
                await self._start_child(child)
            except StartFailed as exc:
                events.start_failed(child.path, child.type_name, exc.cause, told_elsewhere=child.told_elsewhere(exc.cause))
                for done in reversed(started):
                    await self._stop(done, final=False)
                raise exc.cause from None
            started.append(child)

    async def _start_child(self, child: Node) -> None:
        assert self._nursery is not None
        try:
            await self._nursery.start(child.run)
        except BaseException as exc:
            error = first_error(exc)
            if isinstance(error, StartFailed):
                raise error from None
            raise

    async def _serve(self) -> BaseException | None:
        """Handle events until told to stop (returns None) or until the restart
        intensity is exceeded (returns the reason)."""
        held: Any = None
        """An event taken while gathering requests (``_together``), handled next."""
        while True:
            event, held = (held, None) if held is not None else (await self._inbox.receive(), None)
            if isinstance(event, _Stop):
                self._final = event.final
                return None
            if isinstance(event, _Exited):
                gave_up = await self._on_exit(event.child, event.incarnation)
                if gave_up is not None:
                    return gave_up
            elif isinstance(event, _RestartDue):
                await self._start_targets(event.targets)
            elif isinstance(event, (_StartRequest, _StopRequest)):
                # The requests queued behind it, of its kind, at once: each start
                # waits for its child's ``on_start``, each stop for its child to
                # finish, and one at a time, a burst of 500 live views on a busy
                # server took a turn of the event loop each, over a minute in all.
                held = await self._together(event)
            # Not kept while waiting for the next one: an exit names a stopped
            # child, whose state (a closed WebSocket's) would live on until then.
            del event

    async def _on_exit(self, child: Node, incarnation: int) -> BaseException | None:
        if (
            incarnation != child.incarnation  # a newer incarnation already runs
            or incarnation <= child.exit_handled  # an exit we caused by stopping it
            or child.status is Status.TERMINATED
        ):
            return None
        child.exit_handled = incarnation
        exit = child.last_exit or NORMAL_EXIT
        if not child.spec.restart.restarts_after(exit.crashed):
            self._terminate(child, exit.describe())
            return None
        return await self._restart(child, exit)

    async def _restart(self, child: Node, exit: Exit) -> BaseException | None:
        spec = self.spec
        now = trio.current_time()
        because = exit.describe()
        own = child.spec.paced(exit.error) if isinstance(child.spec, ActorSpec) else None
        if own is not None:
            # Its dependency's crash: paced by its own backoff, never escalated
            # (``ActorSpec.backoff``). Kept apart from ``child.history``, which
            # a per-child intensity counts.
            self._paced[child] = paced = record_restart(self._paced.get(child, ()), now, spec.period)
            await self._restart_targets(child, because, own.delay(paced))
            return None
        if spec.intensity_scope is IntensityScope.CHILD:
            child.history = history = record_restart(child.history, now, spec.period)
            if intensity_exceeded(history, spec.intensity):
                events.gave_up(child.path, f"more than {spec.intensity} restarts within {spec.period:g}s")
                self._terminate(child, "gave up")
                return None
        else:
            self.history = history = record_restart(self.history, now, spec.period)
            if intensity_exceeded(history, spec.intensity):
                reason = RestartIntensityExceeded(self.path, spec.intensity, spec.period)
                events.gave_up(self.path, f"more than {spec.intensity} restarts within {spec.period:g}s "
                               f"(last: {child.path} {because})")
                return reason
        await self._restart_targets(child, because, spec.backoff.delay(history) if spec.backoff is not None else 0.0)
        return None

    async def _restart_targets(self, child: Node, because: str, delay: float) -> None:
        """Restart ``child`` (and its siblings, per the strategy) after ``delay`` seconds."""
        targets = self._targets(child)
        for other in reversed(targets):
            if other is not child:
                await self._stop(other, final=False)
        for target in targets:
            target.status = Status.RESTARTING
            target.restarts += 1
            self.system.count_restart(target.type_name)
        events.restarting(child.path, child.restarts, delay, because)
        if delay > 0:
            assert self._nursery is not None
            self._nursery.start_soon(self._restart_later, delay, targets)
        else:
            await self._start_targets(targets)

    def _targets(self, child: Node) -> tuple[Node, ...]:
        live = [c for c in self.children.values() if c.status is not Status.TERMINATED]
        strategy = self.spec.strategy
        if strategy is Strategy.ONE_FOR_ALL:
            return tuple(live)
        if strategy is Strategy.REST_FOR_ONE:
            return tuple(live[live.index(child):])
        return (child,)

    async def _restart_later(self, delay: float, targets: tuple[Node, ...]) -> None:
        await trio.sleep(delay)
        self._post(_RestartDue(targets))

    async def _start_targets(self, targets: tuple[Node, ...]) -> None:
        """Start, in order, the targets still waiting for a restart. A start that
        fails is reported as that child's crash (an event), which counts against
        the intensity and applies the strategy again."""
        for target in targets:
            if target.status not in (Status.RESTARTING, Status.STOPPED):
                continue
            try:
                await self._start_child(target)
            except StartFailed as exc:
                events.start_failed(target.path, target.type_name, exc.cause, told_elsewhere=target.told_elsewhere(exc.cause))
                target.last_exit = Exit(ExitKind.CRASHED, exc.cause)
                target.status = Status.RESTARTING
                self._post(_Exited(target, target.incarnation))
                return

    async def _together(self, first: _StartRequest | _StopRequest) -> Any:
        """Handle ``first`` and the requests of its kind queued right behind
        it, all at once; returns the next event, of another kind, if one was
        taken (else None). (In a frame of its own: the requests, and through
        them the children, are let go when it returns.)"""
        requests: list[Any] = [first]
        taken: Any = None
        while taken is None:
            try:
                event = self._inbox.receive_nowait()
            except (trio.WouldBlock, trio.EndOfChannel):
                break
            if type(event) is type(first):
                requests.append(event)
            else:
                taken = event
        async with trio.open_nursery() as each:
            if isinstance(first, _StartRequest):
                for request in requests:
                    each.start_soon(self._on_start_request, request)
            else:
                # One stop per child, answering all who asked: a second one
                # beside the first found it stopping and cut its queue short.
                stops: dict[int, tuple[Node, list[Ask]]] = {}
                for request in requests:
                    stops.setdefault(id(request.child), (request.child, []))[1].append(request.reply)
                for child, replies in stops.values():
                    each.start_soon(self._on_stop_requests, child, replies)
        return taken

    async def _on_stop_requests(self, child: Node, replies: list[Ask]) -> None:
        await self._stop(child, final=True, reason=ASKED_TO_STOP)
        for reply in replies:
            reply.resolve(None)

    async def _on_start_request(self, request: _StartRequest) -> None:
        child, reply = request.child, request.reply
        if child.status is Status.TERMINATED:
            if reply is not None:
                reply.fail(ActorStopped(child.path))
            return
        if child.status is Status.STOPPED and child.incarnation == 0:
            try:
                await self._start_child(child)
            except StartFailed as exc:
                events.start_failed(child.path, child.type_name, exc.cause, told_elsewhere=child.told_elsewhere(exc.cause))
                self._terminate(child, f"start failed: {type(exc.cause).__name__}: {exc.cause}", exc.cause)
                if reply is not None:
                    reply.fail(exc)
                return
        if reply is not None:
            reply.resolve(child.ref)

    async def _stop(self, child: Node, final: bool, reason: str = "shutdown") -> None:
        """Stop one child: ask, wait its shutdown timeout, then cancel it.

        ``final`` stops it for good (it drains its mailbox first and is then
        terminated, for ``reason``); otherwise it stops after its current
        message and keeps its mailbox for its restart.
        """
        if child.status in (Status.RUNNING, Status.STARTING):
            child.exit_handled = child.incarnation
            child.status = Status.STOPPING
            child.request_stop(final)
            timeout = child.spec.shutdown_timeout
            with trio.move_on_after(timeout):
                await child.done.wait()
            if not child.done.is_set():
                events.killed(child.path, timeout)
                assert child.scope is not None
                child.scope.cancel()
                await child.done.wait()
        if final:
            self._terminate(child, reason)

    async def _stop_children(self, final: bool) -> None:
        if self.spec.remove_terminated:
            # Dynamic children do not survive their supervisor's restart, and
            # stop together, each within its own shutdown timeout (OTP): one
            # after another, a few hundred slow to stop (clients waiting on a
            # full hub) took the server's whole shutdown, and the store's last
            # commits were cut short with them.
            async with trio.open_nursery() as nursery:
                for child in list(self.children.values()):
                    nursery.start_soon(self._stop, child, True)
            return
        for child in reversed(list(self.children.values())):
            await self._stop(child, final=final)

    def _terminate(self, child: Node, reason: str, cause: BaseException | None = None) -> None:
        child.terminate(reason, cause)
        self._paced.pop(child, None)
        if self.spec.remove_terminated and self.children.get(child.name) is child:
            del self.children[child.name]

    def terminate(self, reason: str, cause: BaseException | None = None) -> None:
        if self.terminated.is_set():
            return
        for child in reversed(list(self.children.values())):
            self._terminate(child, reason, cause)
        self._events.close()
        # Requests still queued will never be served: fail them rather than hang.
        while True:
            try:
                event = self._inbox.receive_nowait()
            except (trio.WouldBlock, trio.EndOfChannel):
                break
            if isinstance(event, (_StartRequest, _StopRequest)) and event.reply is not None:
                event.reply.fail(ActorStopped(self.path))
        self.mark_terminated(reason)

    def stats(self) -> SupervisorStats:
        return SupervisorStats(
            path=self.path,
            strategy=self.spec.strategy.value,
            status=self.status.value,
            restarts=self.restarts,
            children=tuple(child.stats() for child in self.children.values()),
        )


class SupervisorRef:
    """Address of a supervisor: start, find and stop its children."""

    __slots__ = ("_node",)

    def __init__(self, node: SupervisorNode) -> None:
        self._node = node

    @property
    def path(self) -> str:
        return self._node.path

    @property
    def alive(self) -> bool:
        return not self._node.terminated.is_set()

    def ensure_child(self, spec: ChildSpec) -> Any:
        """See ``SupervisorNode.ensure_child``."""
        return self._node.ensure_child(spec)

    async def start_child(self, spec: ChildSpec) -> Any:
        """Start a child and wait until it runs; see ``SupervisorNode.start_child``."""
        return await self._node.start_child(spec)

    def request_start(self, spec: ChildSpec) -> Ask:
        """Register a child and have it started; see ``SupervisorNode.request_start``."""
        return self._node.request_start(spec)

    async def stop_child(self, name: str) -> None:
        """Stop a child gracefully and forget it."""
        await self._node.stop_child(name)

    def child(self, name: str) -> Any | None:
        """The live child of that name, or None."""
        node = self._node.children.get(name)
        if node is None or node.status is Status.TERMINATED:
            return None
        return node.ref

    def actor(self, name: str) -> ActorRef | None:
        """The live child of that name if it is an actor (not a supervisor), or None."""
        ref = self.child(name)
        return ref if isinstance(ref, ActorRef) else None

    def ensure_actor(self, spec: ActorSpec) -> ActorRef:
        """``ensure_child`` for an actor's spec, typed: the ref is an actor's."""
        ref = self._node.ensure_child(spec)
        assert isinstance(ref, ActorRef), "an ActorSpec makes an actor"
        return ref

    def children(self) -> list[Any]:
        return [n.ref for n in self._node.children.values() if n.status is not Status.TERMINATED]

    def __len__(self) -> int:
        return self._node.live_children()

    async def wait_stopped(self) -> None:
        await self._node.terminated.wait()

    def __repr__(self) -> str:
        return f"<SupervisorRef {self._node.path}>"
