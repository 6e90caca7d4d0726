"""How to start, restart and stop children: the supervision tree as data."""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from ._intensity import Backoff

if TYPE_CHECKING:
    from ._actor import Actor


class Restart(enum.Enum):
    """When a supervisor restarts a child that exited (OTP's restart types).

    ===========  ===================  ===============================
    type         exited normally      crashed (raised)
    ===========  ===================  ===============================
    PERMANENT    restarted            restarted
    TRANSIENT    terminated for good  restarted
    TEMPORARY    terminated for good  terminated for good
    ===========  ===================  ===============================
    """

    PERMANENT = "permanent"
    TRANSIENT = "transient"
    TEMPORARY = "temporary"

    def restarts_after(self, crashed: bool) -> bool:
        return _RESTARTS[self][crashed]


_RESTARTS = {
    Restart.PERMANENT: {False: True, True: True},
    Restart.TRANSIENT: {False: False, True: True},
    Restart.TEMPORARY: {False: False, True: False},
}


class Strategy(enum.Enum):
    """Which children a supervisor restarts when one of them must be restarted."""

    ONE_FOR_ONE = "one_for_one"
    """Only the child that exited."""
    ONE_FOR_ALL = "one_for_all"
    """Every child: the others are stopped (in reverse start order) and all are
    started again in order. For children that cannot work without each other."""
    REST_FOR_ONE = "rest_for_one"
    """The child that exited and every child started after it."""


class IntensityScope(enum.Enum):
    """What a restart-intensity limit counts."""

    SUPERVISOR = "supervisor"
    """All restarts of all children together (OTP). Exceeding it makes the
    supervisor give up and escalate to its parent."""
    CHILD = "child"
    """Each child's restarts separately. A child that exceeds it is terminated on
    its own; its siblings are untouched and nothing escalates. For dynamic
    supervisors of independent children (one per agent, one per browser), where
    one bad child must not take its thousand siblings down with it."""


def _check_name(_instance: object, _attribute: object, name: str) -> None:
    if not name or len(name) > 200 or "/" in name or not name.isprintable():
        raise ValueError(f"invalid child name: {name!r} (1-200 printable characters, no '/')")


def _children(children: Iterable[ChildSpec]) -> tuple[ChildSpec, ...]:
    return tuple(children)


def _check_positive(_instance: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if not value > 0:
        raise ValueError(f"invalid {attribute.name}: {value!r}")


def _check_non_negative(_instance: object, attribute: attrs.Attribute[Any], value: int) -> None:
    if not value >= 0:
        raise ValueError(f"invalid {attribute.name}: {value!r}")


@attrs.frozen(kw_only=True)
class ActorSpec:
    """One actor child.

    ``factory`` builds a fresh actor object for every (re)start, so a restarted
    actor starts from clean state, but for what it takes from a ``Kept``; its
    mailbox, owned by the supervisor, is kept.
    """

    name: str = attrs.field(validator=_check_name)
    factory: Callable[[], Actor]
    restart: Restart = Restart.PERMANENT
    mailbox_size: int = attrs.field(default=1000, validator=_check_positive)
    keyed_capacity: int = attrs.field(default=0, validator=_check_non_negative)
    """Messages told with a key (``ActorRef.tell_keyed``) that may wait at
    once, beside ``mailbox_size`` others: one per key (0: none may be told so)."""
    shutdown_timeout: float = attrs.field(default=5.0, validator=_check_positive)
    """Seconds a graceful stop may take (finishing the queue, ``on_stop``) before
    the actor is cancelled."""
    backoff: Backoff | None = None
    """This actor's own restart pacing, for one that depends on something outside
    the process (a database server): after a crash ``backoff_on`` accepts, the
    restart waits ``backoff.delay`` of such restarts within its supervisor's
    period and does not count against the supervisor's intensity, so a
    dependency away for minutes is waited out (one start attempt per delay)
    instead of making the supervisor give up in milliseconds. Any other crash
    (a bug) restarts and counts as the supervisor's spec says, and may make it
    give up. None: every restart as the supervisor's spec says."""
    backoff_on: Callable[[BaseException], bool] | None = attrs.field(default=None)
    """Whether a crash (the exception that ended the actor, or failed its
    start) is its dependency's, to be paced by ``backoff``. Given with
    ``backoff``, never alone: pacing every crash would hide bugs behind
    restarts for ever."""

    @backoff_on.validator
    def _check_backoff_on(self, _attribute: object, value: Callable[[BaseException], bool] | None) -> None:
        if (value is None) != (self.backoff is None):
            raise ValueError(f"invalid backoff for {self.name}: backoff and backoff_on go together")

    def paced(self, error: BaseException | None) -> Backoff | None:
        """The backoff for a restart after ``error`` (None: the supervisor's rules)."""
        if self.backoff is None or self.backoff_on is None or error is None or not self.backoff_on(error):
            return None
        return self.backoff


@attrs.frozen(kw_only=True)
class SupervisorSpec:
    """A supervisor with a fixed, ordered list of children (more may be added at
    run time with ``start_child``)."""

    name: str = attrs.field(validator=_check_name)
    children: Sequence[ChildSpec] = attrs.field(default=(), converter=_children)
    strategy: Strategy = Strategy.ONE_FOR_ONE
    intensity: int = attrs.field(default=5, validator=_check_non_negative)
    period: float = attrs.field(default=30.0, validator=_check_positive)
    backoff: Backoff | None = None
    intensity_scope: IntensityScope = IntensityScope.SUPERVISOR
    restart: Restart = Restart.PERMANENT
    shutdown_timeout: float = attrs.field(default=math.inf, validator=_check_positive)
    """A supervisor's own stop is bounded by its children's timeouts (OTP's infinity)."""
    max_children: int | None = None
    remove_terminated: bool = False
    """Forget children that terminated for good (dynamic supervisors)."""

    @children.validator
    def _check_children(self, _attribute: object, children: tuple[ChildSpec, ...]) -> None:
        names = [child.name for child in children]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"duplicate child names in {self.name}: {', '.join(duplicates)}")


def dynamic_supervisor(
    name: str,
    *,
    max_children: int | None = None,
    intensity: int = 5,
    period: float = 30.0,
    intensity_scope: IntensityScope = IntensityScope.CHILD,
    backoff: Backoff | None = None,
    restart: Restart = Restart.PERMANENT,
) -> SupervisorSpec:
    """A one_for_one supervisor that starts empty and gets children on demand
    (one per agent, per WebSocket client, per deployment queue).

    Restart intensity is counted per child by default (see ``IntensityScope``).
    Its children stop together, in no order, each within its shutdown timeout.
    """
    return SupervisorSpec(
        name=name,
        strategy=Strategy.ONE_FOR_ONE,
        intensity=intensity,
        period=period,
        intensity_scope=intensity_scope,
        backoff=backoff,
        restart=restart,
        max_children=max_children,
        remove_terminated=True,
    )


ChildSpec = ActorSpec | SupervisorSpec
