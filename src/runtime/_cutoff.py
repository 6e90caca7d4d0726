"""One deadline, set later, for cancel scopes opened now: the end of a shutdown.

Some waits are shielded on purpose: a write to a socket is never cut halfway,
a commit is waited for to its end so that its caller knows whether it
landed. A shield keeps out every cancellation, the one of a process that
has to end included: a client that reads nothing, or a database another
program keeps locked, then held the process past its shutdown budget, and
a second signal did not reach them either. Each such wait is opened with a
``Cutoff`` (``scope``); whoever runs the shutdown sets its deadline
(``cut``), which ends every scope still open at that time, and every one
opened after, shield or not.
"""

from __future__ import annotations

import math
from types import TracebackType

import trio


class Cutoff:
    """A deadline for every scope opened with ``scope``, brought forward
    (never back) by ``cut``; ``math.inf`` until then."""

    __slots__ = ("at", "cut_short", "_open")

    def __init__(self) -> None:
        self.at = math.inf
        """When every scope of this cutoff ends (Trio's clock; inf: not cut)."""
        self.cut_short = 0
        """Scopes that this cutoff ended: open before ``at``, and cancelled
        then, before their own timeout (not those opened after, ended at once)."""
        self._open: set[trio.CancelScope] = set()

    def scope(self, timeout: float = math.inf, *, shield: bool = False) -> CutoffScope:
        """A cancel scope that ends ``timeout`` seconds from now or at the
        cutoff, whichever comes first (``cancelled_caught`` then, as for
        ``trio.move_on_after``); ``shield``: no other cancellation reaches
        inside it."""
        return CutoffScope(self, timeout, shield)

    def cut(self, deadline: float) -> None:
        """End every scope open at ``deadline`` (Trio's clock), and every one
        opened from then on at once; a later deadline than the one set
        already changes nothing."""
        self.at = min(self.at, deadline)
        for scope in self._open:
            scope.deadline = min(scope.deadline, self.at)

    @property
    def reached(self) -> bool:
        """The cutoff has come: a scope of it that ended now was ended by it."""
        return trio.current_time() >= self.at


class CutoffScope:
    """``Cutoff.scope``'s context manager: entered, the ``trio.CancelScope``."""

    __slots__ = ("_cutoff", "_scope", "_opened", "_own")

    def __init__(self, cutoff: Cutoff, timeout: float, shield: bool) -> None:
        self._cutoff = cutoff
        self._opened = trio.current_time()
        self._own = self._opened + timeout
        self._scope = trio.CancelScope(deadline=min(self._own, cutoff.at), shield=shield)

    def __enter__(self) -> trio.CancelScope:
        self._cutoff._open.add(self._scope)
        return self._scope.__enter__()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> bool:
        cutoff, scope = self._cutoff, self._scope
        cutoff._open.discard(scope)
        swallowed = scope.__exit__(kind, error, traceback)
        if scope.cancelled_caught and self._opened < cutoff.at < self._own:
            cutoff.cut_short += 1
        return swallowed
