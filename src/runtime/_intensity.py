"""Restart intensity and backoff: small pure functions, tested directly.

OTP's rule: a supervisor may restart children at most ``intensity`` times within
any ``period`` seconds; one more restart than that and it gives up, stopping its
children and exiting so that its own supervisor decides what to do.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import attrs

RestartHistory = tuple[float, ...]
"""Times (trio clock seconds) of the restarts still inside the period, oldest first."""


def record_restart(history: RestartHistory, now: float, period: float) -> RestartHistory:
    """Return ``history`` with a restart at ``now`` added and those older than
    ``period`` seconds forgotten."""
    horizon = now - period
    return (*(t for t in history if t > horizon), now)


def intensity_exceeded(history: RestartHistory, intensity: int) -> bool:
    """True when ``history`` holds more restarts than ``intensity`` allows."""
    return len(history) > intensity


@attrs.frozen(kw_only=True)
class Backoff:
    """Exponential delay before a restart: ``initial * factor**(n-1)`` for the n-th
    restart within the intensity period, capped at ``maximum``; or before the n-th
    attempt of any run of failures (``delay_for``, ``delays``: reconnecting to a
    database, a feed). ``initial == maximum`` is a fixed wait.

    Why: a child failing on a dependency that is down (a database, a socket) would
    otherwise burn its whole restart intensity in milliseconds.
    """

    initial: float = attrs.field(default=0.1)
    maximum: float = attrs.field(default=10.0)
    factor: float = attrs.field(default=2.0)

    @initial.validator
    def _check_initial(self, _attribute: object, value: float) -> None:
        if not value >= 0:
            raise ValueError(f"invalid backoff initial delay: {value!r}")

    @maximum.validator
    def _check_maximum(self, _attribute: object, value: float) -> None:
        if not value >= self.initial:
            raise ValueError(f"invalid backoff maximum: {value!r} (below initial {self.initial!r})")

    @factor.validator
    def _check_factor(self, _attribute: object, value: float) -> None:
        if not value >= 1:
            raise ValueError(f"invalid backoff factor: {value!r}")

    def delay(self, history: RestartHistory) -> float:
        """Seconds to wait before the restart just recorded in ``history``."""
        return self.delay_for(len(history))

    def delay_for(self, attempt: int) -> float:
        """Seconds to wait before the ``attempt``-th attempt of a run of failures (1: the first)."""
        # min() before ** would still overflow for huge attempts; cap the exponent instead.
        exponent = min(max(attempt, 1) - 1, 64)
        return min(self.maximum, self.initial * self.factor**exponent)

    def delays(self) -> Iterator[float]:
        """The waits before each attempt of one run of failures, without end:
        ``delay_for(1)``, ``delay_for(2)``, ... (a new run: call again)."""
        return map(self.delay_for, itertools.count(1))
