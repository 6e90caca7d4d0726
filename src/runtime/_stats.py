"""Point-in-time statistics of the supervision tree (``ActorSystem.snapshot``)."""

from __future__ import annotations

import attrs


@attrs.frozen(kw_only=True)
class ActorStats:
    """One actor's counters."""

    path: str
    """Where it lives in the tree, e.g. ``/root/topology``."""
    actor_type: str
    """Class name of the actor object."""
    status: str
    """``running``, ``restarting``, ``stopping``, ``stopped`` or ``terminated``."""
    restarts: int
    """Times this actor has been restarted."""
    processed: int
    """Messages handled without raising, over all incarnations."""
    failed: int
    """Crashes: messages (or hooks, or background tasks) that raised."""
    dead_letters: int
    """Messages addressed to it that no incarnation will ever handle."""
    mailbox_depth: int
    """Messages queued right now."""
    mailbox_capacity: int
    """Most messages the mailbox accepts before ``MailboxFull``."""
    mailbox_high_water: int
    """Most messages ever queued at once."""
    message_rate: float = 0.0
    """Messages handled per second, over the last few seconds (``RateMeter``)."""
    kind: str = "actor"


@attrs.frozen(kw_only=True)
class SupervisorStats:
    """A supervisor and, recursively, its children."""

    path: str
    strategy: str
    """``one_for_one``, ``one_for_all`` or ``rest_for_one``."""
    status: str
    restarts: int
    """Times this supervisor itself has been restarted by its parent."""
    children: tuple[ActorStats | SupervisorStats, ...]
    kind: str = "supervisor"


@attrs.frozen(kw_only=True)
class SystemStats:
    """The whole tree plus system-wide counters."""

    root: SupervisorStats
    dead_letters: int
    """Messages that reached no actor, over the system's life."""
    dead_letters_by_type: dict[str, int]
    """The same, by the actor type they were addressed to."""
    restarts_by_type: dict[str, int]
    """Restarts over the system's life, by actor type (``supervisor`` for supervisors)."""
    actors: int
    """Live actors in the tree."""
    refused_by_type: dict[str, int] = attrs.field(factory=dict)
    """Messages refused for a full mailbox (``MailboxFull``) when asked or
    told through an ``ActorRef``, over the system's life, by the actor type
    they were addressed to (not a timer's firing skipped for a full mailbox)."""


class RateMeter:
    """Events per second over a window of about ``window`` seconds: the count in
    the current window, and the rate of the one before it. Two additions per
    event; the clock is read by the caller (trio's, on the actor's path)."""

    __slots__ = ("window", "_start", "_count", "_previous")

    def __init__(self, now: float, window: float = 5.0) -> None:
        self.window = window
        self._start = now
        self._count = 0
        self._previous: float | None = None
        """The rate of the last finished window; None before the first one ends."""

    def tick(self, now: float) -> None:
        if now - self._start >= self.window:
            self._roll(now)
        self._count += 1

    def _roll(self, now: float) -> None:
        elapsed = now - self._start
        # A window with nothing after it counts as quiet: the rate decays to 0.
        self._previous = self._count / elapsed if elapsed < 2 * self.window else 0.0
        self._start, self._count = now, 0

    def rate(self, now: float) -> float:
        if now - self._start >= self.window:
            self._roll(now)
        elapsed = now - self._start
        if elapsed <= 0:
            return self._previous or 0.0
        current = self._count / elapsed
        if self._previous is None:
            return current
        # Blend the finished window with the one under way, weighted by time.
        share = elapsed / self.window
        return (1 - share) * self._previous + share * current
