"""A node of the supervision tree: what outlives restarts, and one actor's run.

A node is created once, when its parent first learns of it, and keeps its path,
mailbox, counters and watchers until it terminates for good. Each (re)start is an
*incarnation*: one call of ``run`` in the parent's nursery, with a fresh actor
object and a fresh cancel scope.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Any

import attrs
import trio

from . import _events as events
from ._actor import Actor, ActorContext, Forward, Later, LinkDown, Terminated
from ._exceptions import ActorFailed, ActorStopped, LinkedActorTerminated, MailboxFull, StartFailed
from ._intensity import RestartHistory
from ._mailbox import Mailbox, MailboxClosed
from ._ref import ActorRef, Ask
from ._specs import ActorSpec, ChildSpec
from ._timers import Fire
from ._stats import ActorStats, RateMeter

if TYPE_CHECKING:
    from ._stats import SupervisorStats
    from ._supervisor import Ref, SupervisorNode
    from ._system import ActorSystem

# An actor handling a long run of synchronous messages yields to others this often.
_BURST = 64
_EMPTY = object()
"""``_serve``: the mailbox had nothing."""
_CLOSED = object()
"""``_serve``: the mailbox is closed."""


ASKED_TO_STOP = "asked to stop"
"""The end of a dynamic child its owner had stopped (a client gone, an agent forgotten)."""
QUIET_ENDS = frozenset({"normal", "shutdown", ASKED_TO_STOP})
"""How a linked actor may end without taking its links down (OTP's normal exits)."""


def _forward_ask(ask: Ask, forward: Forward) -> None:
    """Move a pending ask to ``forward.target``: it answers the asker from there."""
    ask.forward(forward.message)
    try:
        forward.target.tell(ask)
    except (MailboxFull, ActorStopped) as exc:
        ask.fail(exc)


class Status(enum.Enum):
    STOPPED = "stopped"
    """Not running; will be started (first start pending, or between restarts)."""
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    RESTARTING = "restarting"
    """Waiting for its restart (backoff, or queued behind siblings)."""
    TERMINATED = "terminated"
    """Gone for good: mailbox closed, path free for reuse."""


class ExitKind(enum.Enum):
    NORMAL = "normal"
    CRASHED = "crashed"
    KILLED = "killed"


@attrs.frozen
class Exit:
    """How an incarnation ended."""

    kind: ExitKind
    error: BaseException | None = None

    @property
    def crashed(self) -> bool:
        return self.kind is ExitKind.CRASHED

    def describe(self) -> str:
        if self.error is None:
            return self.kind.value
        return f"{self.kind.value}: {type(self.error).__name__}: {self.error}"


NORMAL_EXIT = Exit(ExitKind.NORMAL)
KILLED_EXIT = Exit(ExitKind.KILLED)


def first_error(exc: BaseException) -> BaseException:
    """The first non-Cancelled exception inside (possibly nested) exception groups;
    a ``Cancelled`` from inside if the groups hold nothing else; or ``exc`` itself
    if it is no group: nurseries wrap everything in groups, and logs and askers
    want the actual error (and a group of cancellations is a cancellation, not a
    crash: an outer scope, e.g. a second SIGINT's, is stopping everything)."""
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = first_error(inner)
            if not isinstance(found, trio.Cancelled):
                return found
        return first_error(exc.exceptions[0])  # every one is a Cancelled
    return exc


class Node:
    """State shared by actor and supervisor nodes."""

    kind = "node"

    @property
    def ref(self) -> Ref:
        """The node's address: each kind of node gives its kind of ref."""
        raise NotImplementedError

    def __init__(self, system: ActorSystem, parent: SupervisorNode | None, spec: ChildSpec, path: str) -> None:
        self.system = system
        self.parent = parent
        self.spec = spec
        self.path = path
        self.status = Status.STOPPED
        self.incarnation = 0
        #: Highest incarnation whose exit the parent has dealt with.
        self.exit_handled = 0
        self.scope: trio.CancelScope | None = None
        self.done = trio.Event()
        self.last_exit: Exit | None = None
        self.restarts = 0
        self.history: RestartHistory = ()
        self.terminated = trio.Event()
        self.watchers: dict[ActorRef, bool] = {}
        """Who is told when this node terminates (each once, however often it
        asked), and whether it is linked (``True``: it crashes with an abnormal end)."""

    @property
    def name(self) -> str:
        return self.spec.name

    def told_elsewhere(self, error: BaseException) -> bool:
        """Whether the crash (or failed start) ``error`` needs no traceback:
        another actor's crash (``ActorFailed``: that actor logged its own), or
        its dependency's that the spec paces (``backoff_on``: a database away,
        which the store says, or refusing statements for now; an operational
        condition, not a bug, which the line names). Said in one line then
        (``events``); a database that came back wrote ~100 lines of tracebacks
        of actors that met it still away."""
        backoff_on = getattr(self.spec, "backoff_on", None)
        return isinstance(error, ActorFailed) or (backoff_on is not None and backoff_on(error))

    @property
    def comes_and_goes(self) -> bool:
        """A child of a dynamic supervisor (one per agent, per WebSocket client,
        per deployment queue): its starts and stops are logged at debug level,
        since clients make as many as they like (``events``)."""
        return self.parent is not None and self.parent.spec.remove_terminated

    def stats(self) -> ActorStats | SupervisorStats:
        raise NotImplementedError  # each kind of node reports its own

    def begin_incarnation(self) -> int:
        self.incarnation += 1
        self.done = trio.Event()
        self.status = Status.STARTING
        return self.incarnation

    def end_incarnation(self, exit: Exit, incarnation: int, started: bool) -> None:
        self.scope = None
        self.last_exit = exit
        if self.status is not Status.TERMINATED:
            self.status = Status.STOPPED
        self.done.set()
        if started and self.parent is not None:
            self.parent.child_exited(self, incarnation)

    def add_watcher(self, watcher: ActorRef, *, link: bool = False) -> None:
        """Tell ``watcher`` when this node terminates; idempotent per watcher (a
        link, once made, stays a link until ``remove_watcher``)."""
        if self.terminated.is_set():
            self._notify(watcher, "already terminated", link)
        else:
            self.watchers[watcher] = self.watchers.get(watcher, False) or link

    def remove_watcher(self, watcher: ActorRef) -> None:
        self.watchers.pop(watcher, None)

    def _notify(self, watcher: ActorRef, reason: str, link: bool) -> None:
        notice = (LinkDown if link and reason not in QUIET_ENDS else Terminated)(path=self.path, reason=reason)
        watcher.offer(notice)  # a full watcher counts it refused, a stopped one as a dead letter

    def mark_terminated(self, reason: str) -> None:
        """Common end of ``terminate``: free the path, tell the watchers, log."""
        self.status = Status.TERMINATED
        self.system.unregister(self)
        self.terminated.set()
        watchers, self.watchers = self.watchers, {}
        for watcher, link in watchers.items():
            self._notify(watcher, reason, link)
        events.stopped(self.path, self.type_name, reason, quiet=self.comes_and_goes)

    @property
    def type_name(self) -> str:
        return self.kind

    # Implemented by ActorCell and SupervisorNode.
    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        raise NotImplementedError

    def request_stop(self, final: bool) -> None:
        raise NotImplementedError

    def terminate(self, reason: str, cause: BaseException | None = None) -> None:
        raise NotImplementedError


class ActorCell(Node):
    """An actor's node: its mailbox and counters, and the message loop."""

    kind = "actor"
    spec: ActorSpec

    def __init__(self, system: ActorSystem, parent: SupervisorNode | None, spec: ActorSpec, path: str) -> None:
        super().__init__(system, parent, spec, path)
        self.mailbox = Mailbox(spec.mailbox_size, path, spec.keyed_capacity)
        self.actor_type: str | None = None
        self.processed = 0
        self.failed = 0
        self.dead_letters = 0
        self.stop_requested = False
        self._current: Any = None
        self._failed_later: tuple[BaseException, Any] | None = None
        """The failure of a ``Later`` work and the message it answered: the
        crash is that message's, not the one being handled when it failed."""
        self._cut_short: list[tuple[Ask | None, Any]] = []
        """What was being handled (asks, with their message; told messages,
        None and the message) when the incarnation's other tasks cancelled it:
        answered once its end is known (``_settle_cut_short``)."""
        self.rate = RateMeter(trio.current_time())

    @property
    def ref(self) -> ActorRef:
        """The actor's address. A new one each time (they compare equal): a
        cell keeping its own would be a reference cycle, and a stopped actor
        (its mailbox, its spec's captured state) would then wait for the cyclic
        collector instead of being freed when the last reference goes."""
        return ActorRef(self)

    @property
    def type_name(self) -> str:
        return self.actor_type or "actor"

    def dead_letter(self, message: Any) -> None:
        self.dead_letters += 1
        self.system.count_dead_letter(self.type_name)

    def request_stop(self, final: bool) -> None:
        """Graceful stop. ``final``: accept nothing more, finish what is queued, then
        stop (shutdown). Otherwise stop after the current message and keep the queue
        for the next incarnation (a sibling's restart)."""
        if final:
            self.mailbox.close()
        else:
            self.stop_requested = True
            self.mailbox.interrupt()

    def terminate(self, reason: str, cause: BaseException | None = None) -> None:
        """``cause``: the exception the start failed with, if that is why (``ActorStopped.cause``)."""
        if self.terminated.is_set():
            return
        self.mailbox.close()
        for item in self.mailbox.take_all():
            if type(item) is Ask:
                item.fail(ActorStopped(self.path, cause))
            self.dead_letter(item)
        self.mark_terminated(reason)

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """One incarnation. Raises ``StartFailed`` (to the starter) if ``on_start``
        fails; afterwards every exit is reported to the parent, never raised."""
        incarnation = self.begin_incarnation()
        self.stop_requested = False
        exit = NORMAL_EXIT
        started = False
        context: ActorContext | None = None
        try:
            with trio.CancelScope() as scope:
                self.scope = scope
                try:
                    async with trio.open_nursery() as tasks:
                        actor = self.spec.factory()
                        self.actor_type = type(actor).__name__
                        actor.context = context = ActorContext(self, tasks)
                        await actor.on_start()
                        started = True
                        self.status = Status.RUNNING
                        events.started(self.path, self.type_name, incarnation, quiet=self.comes_and_goes)
                        task_status.started()
                        await self._serve(actor)
                        await self._call_on_stop(actor)
                        tasks.cancel_scope.cancel()
                except BaseException as exc:
                    error = first_error(exc)
                    if isinstance(error, trio.Cancelled):
                        raise
                    if not started:
                        raise StartFailed(self.path, error) from error
                    self.failed += 1
                    culprit = self._current
                    cut = self._settle_cut_short(error)
                    if self._failed_later is not None and self._failed_later[0] is error:
                        culprit = self._failed_later[1]
                    elif any(culprit is message for message in cut):
                        culprit = None  # cancelled by the crash of another task, which is not its
                    message = culprit.message if type(culprit) is Ask else culprit
                    events.crashed(self.path, self.type_name, error, message, told_elsewhere=self.told_elsewhere(error))
                    exit = Exit(ExitKind.CRASHED, error)
            if scope.cancelled_caught:
                exit = KILLED_EXIT
                if not started:
                    raise StartFailed(self.path, trio.TooSlowError("cancelled while starting"))
        finally:
            self._settle_cut_short(None)
            self._current = self._failed_later = None
            if context is not None:
                context._end()
            self.end_incarnation(exit, incarnation, started)

    async def _serve(self, actor: Actor) -> None:
        mailbox = self.mailbox
        has_idle_hook = type(actor).on_idle is not Actor.on_idle
        since_idle = 0
        burst = 0
        while not self.stop_requested:
            if burst >= _BURST:
                burst = 0
                await trio.lowlevel.checkpoint()
                continue
            try:
                item = mailbox.get_nowait()
            except trio.WouldBlock:
                item = _EMPTY
            except MailboxClosed:
                item = _CLOSED
            # Waited for outside the except clauses: a coroutine suspended in one
            # keeps the exception, its traceback and frame alive (every idle actor).
            if item is _EMPTY:
                if since_idle and has_idle_hook:
                    since_idle = 0
                    await actor.on_idle()
                else:
                    burst = 0
                    await mailbox.wait()
                continue
            if item is _CLOSED:
                if since_idle and has_idle_hook:
                    await actor.on_idle()
                return
            burst += 1
            since_idle += 1
            await self._deliver(actor, item)
            # Drop our reference before waiting for the next message: an idle
            # actor must not keep its last message (and all it refers to) alive.
            item = None

    async def _deliver(self, actor: Actor, item: Any) -> None:
        if type(item) is Ask and not item.take():
            self.dead_letter(item)  # its asker gave up before we got to it
            return
        if type(item) is Fire:
            due, item = item.take()
            if not due:
                return  # its timer was cancelled meanwhile (or ended with an earlier incarnation)
        if type(item) is LinkDown:
            raise LinkedActorTerminated(item.path, item.reason)
        self._current = item
        if type(item) is Ask:
            try:
                value = await actor.handle(item.message)
            except actor.refusals as refusal:
                # An answer, raised at the asker: the actor carries on. Without
                # its traceback and context: they hold this frame, whose item
                # holds the refusal (a cycle, and the message in it, freed only
                # by the collector's rare full pass), and an answer is not logged.
                refusal.__context__ = None
                item.fail(refusal.with_traceback(None))
            except Exception as exc:
                item.fail(ActorFailed(self.path, exc))
                raise
            except BaseException:
                self._cut_short.append((item, item))
                raise
            else:
                if type(value) is Forward:
                    _forward_ask(item, value)
                elif type(value) is Later:
                    actor.context.start_soon(self._answer_later, actor, item, value, item)
                else:
                    item.resolve(value)
        else:
            try:
                value = await actor.handle(item)
            except actor.refusals as refusal:
                events.refused(self.path, self.type_name, refusal, item)  # told, not asked: nobody to answer
            except Exception:
                raise  # its own crash (as the ask's above: logged as this message's)
            except BaseException:
                self._cut_short.append((None, item))
                raise
            else:
                if type(value) is Forward:
                    value.target.offer(value.message)  # a tell promises nothing; a stopped target counts it
                elif type(value) is Later:
                    actor.context.start_soon(self._answer_later, actor, None, value, item)
        self._current = None
        self.processed += 1
        self.rate.tick(trio.current_time())

    async def _answer_later(self, actor: Actor, ask: Ask | None, later: Later, item: Any) -> None:
        """``later``'s work, its outcome the answer to ``ask`` (None: told) as
        ``_deliver`` answers from ``handle``: a refusal raised at the asker, a
        failure raised here too (the incarnation's nursery crashes the actor,
        and the crash is logged as ``item``'s: the message the work answers)."""
        try:
            value = await later.work()
        except actor.refusals as refusal:
            refusal.__context__ = None  # as in ``_deliver``
            if ask is None:
                events.refused(self.path, self.type_name, refusal, item)
            else:
                ask.fail(refusal.with_traceback(None))
        except Exception as exc:
            if ask is not None:
                ask.fail(ActorFailed(self.path, exc))
            if self._failed_later is None:
                self._failed_later = (exc, item)
            raise
        except BaseException:
            self._cut_short.append((ask, item))
            raise
        else:
            if ask is not None:
                ask.resolve(value)

    def _settle_cut_short(self, crash: BaseException | None) -> list[Any]:
        """Answer what was being handled when the incarnation ended under it:
        the ``crash`` of another of its tasks (``ActorFailed``: it may have been
        partly done, and the actor is restarted at once), else that the actor
        stopped (cancelled: a stop, a kill). The messages the crash cut short,
        each counted as a dead letter if told (nobody else hears of them)."""
        cut, self._cut_short = self._cut_short, []
        for ask, message in cut:
            if ask is not None:
                ask.fail(ActorStopped(self.path) if crash is None else ActorFailed(self.path, crash))
            elif crash is not None:
                self.dead_letter(message)
        return [message for _, message in cut]

    async def _call_on_stop(self, actor: Actor) -> None:
        try:
            await actor.on_stop()
        except Exception as exc:  # noqa: BLE001 - a failing on_stop is reported, and the stop goes on
            events.crashed(self.path, self.type_name, exc, None)

    def stats(self) -> ActorStats:
        return ActorStats(
            path=self.path,
            actor_type=self.type_name,
            status=self.status.value,
            restarts=self.restarts,
            processed=self.processed,
            failed=self.failed,
            dead_letters=self.dead_letters,
            mailbox_depth=len(self.mailbox),
            mailbox_capacity=self.mailbox.capacity,
            mailbox_high_water=self.mailbox.high_water,
            message_rate=round(self.rate.rate(trio.current_time()), 3),
        )

